using Gan.Functional.CSharp;
using Gan.Host.Cli;
using Gan.Host.Data;
using Gan.Host.Eval;
using Gan.Host.Io;

namespace Gan.Host.Commands;

/// <summary>`evaluate`: the sample-quality metrics of a run's generator or of a folder of images, as a table and optionally JSON.</summary>
internal static class EvaluateCommand
{
    public static int Run(EvaluateRequest req, HostContext ctx)
    {
        string? json = req.Json is { } j ? ctx.Resolve(j) : null;
        if (json is not null && Directory.Exists(json))
        {
            throw new UserError($"--json {json} is a directory; give a file name for the metrics.", ExitCodes.Usage);
        }

        ctx.Info(DeviceSelection.Use(req.Device, req.Threads, ctx));
        ctx.DeviceWork = "generating and scoring samples (--samples sets how many)";
        var dataDir = req.DataDir is { } d ? ctx.Resolve(d) : null;
        EvalResult result;
        if (req.Real)
        {
            result = ScoreReal(req.Dataset!, req.Samples, req.Seed, dataDir, ctx);
        }
        else if (req.Images is { } colourImages && req.Dataset is { } colour && DatasetInfo.Parse(colour).Kind == DatasetKind.Emoji)
        {
            var (pixels, count, root) = LoadColourFolder(ctx.Resolve(colourImages));
            using var scorer = Scorer.For(req.Dataset, dataDir, ctx);
            ctx.Info($"scoring {count:N0} images from {root} against emoji's held-out images on ImageNet ResNet-18 features");
            result = scorer.ScoreColour(i => pixels[i], count, Emoji.Size, Emoji.Size, req.Seed);
        }
        else if (req.Images is { } images)
        {
            var (pixels, count, root) = LoadFolder(ctx.Resolve(images));
            using var scorer = Scorer.For(req.Dataset!, dataDir, ctx);
            ctx.Info($"scoring {count:N0} images from {root} with the {req.Dataset} classifier");
            result = scorer.ScoreImages(pixels, count, req.Seed);
        }
        else
        {
            var gen = LoadedGenerator.Load(req.Run, req.Checkpoint, ctx);
            var config = gen.Checkpoint.Config;
            if (req.Features is { } f && config.DatasetInfo.Kind != DatasetKind.Emoji)
            {
                throw new UserError($"--features {f} scores colour data (emoji); this run trained on {config.Dataset}, which is scored with its own metrics.", ExitCodes.Usage);
            }

            using var scorer = Scorer.For(config.Dataset, dataDir ?? ClassifierDataDir(config.Dataset, config.DataDir), ctx);
            var n = req.Samples ?? scorer.DefaultSamples;
            ctx.Info($"scoring {n:N0} samples (seed {req.Seed}) of {gen.Describe(req.UseEma)} on {config.Dataset}");
            var output = Scorer.Generate(gen.Trainer, n, req.Seed, req.UseEma);
            result = scorer.ScoreGenerated(output, n, gen.Info.ImageShape, gen.Info.OutputsZeroToOne, req.Seed);
        }

        foreach (var line in result.Table())
        {
            ctx.Info(line);
        }

        if (json is not null)
        {
            try
            {
                AtomicFile.WriteAllText(json, result.ToJson());
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw IoErrors.Describe(e, "write", json);
            }

            ctx.Info($"wrote {json}");
        }

        return ExitCodes.Ok;
    }

    /// <summary>
    /// Real data scored as if generated, the ceiling of the metrics: training images (against the
    /// test set's features), points of the mixture itself, or Stacked MNIST built from real digits.
    /// </summary>
    private static EvalResult ScoreReal(string dataset, int? samples, ulong seed, string? dataDir, HostContext ctx)
    {
        using var scorer = Scorer.For(dataset, dataDir, ctx);
        var n = samples ?? scorer.DefaultSamples;
        ctx.Info($"scoring {n:N0} real samples of {dataset} (seed {seed}) as if generated: the ceiling of the metrics");
        switch (DatasetInfo.Parse(dataset).Kind)
        {
            case DatasetKind.Mixture:
                return scorer.ScoreGenerated(Mixture.Sample(dataset, seed, n), n, [2], false, seed);
            case DatasetKind.Emoji:
                // training images (a random subset from the seed) against the held-out ones
                using (var emoji = Emoji.Load(dataDir ?? Path.Combine(ctx.CacheRoot, "emoji"), heldOut: false, ctx))
                {
                    var order = Enumerable.Range(0, emoji.Count).ToArray();
                    new Random(unchecked((int)seed)).Shuffle(order);
                    var pick = order.Take(Math.Min(n, emoji.Count)).ToArray();
                    return scorer.ScoreColour(i => emoji.Image(pick[i]).ToArray(), pick.Length, Emoji.Size, Emoji.Size, seed);
                }

            case DatasetKind.StackedMnist:
                var dir = LabeledDigits.Locate("mnist", dataDir, ctx);
                using (var digits = Mnist.Read(Mnist.FindTrainImages(dir)!))
                using (var stacked = StackedMnist.Build(digits, n, seed))
                {
                    var pixels = new float[n * 3 * 784];
                    for (var i = 0; i < n; i++)
                    {
                        LabeledDigits.ToUnit(stacked.Image(i)).CopyTo(pixels, i * 3 * 784);
                    }

                    return scorer.ScoreGenerated(pixels, n, [3, 28, 28], true, seed);
                }

            default:
                var train = LabeledDigits.Read(LabeledDigits.Locate(dataset, dataDir, ctx), "train").Take(n);
                return scorer.ScoreImages(train.Pixels, train.Count, seed);
        }
    }

    /// <summary>The run's data directory when it holds the labelled files the classifier needs (MNIST's cache, or a --data-dir given to train).</summary>
    public static string? ClassifierDataDir(string dataset, string runDataDir)
    {
        var info = DatasetInfo.Parse(dataset);
        return info.Kind == DatasetKind.Emoji && runDataDir.Length > 0 ? runDataDir
            : info.ClassifierBackbone is not null && runDataDir.Length > 0 && LabeledDigits.Find(runDataDir, "t10k-labels-idx1-ubyte") is not null
                ? runDataDir
                : null;
    }

    /// <summary>Every PNG/JPEG under <paramref name="root"/> (in path order) as RGB 64×64 images, planar (central square, resized).</summary>
    public static (byte[][] Pixels, int Count, string Root) LoadColourFolder(string root)
    {
        var files = ImageFolder.List(root, $"The image folder {root} (--images) does not exist.",
            $"The image folder {root} (--images) holds no PNG or JPEG files (.png, .jpg, .jpeg), so there is nothing to score.");
        var pixels = new byte[files.Count][];
        Parallel.For(0, files.Count, i => pixels[i] = ImageFolder.Decode(files[i].Full, files[i].Rel, 3, Emoji.Size, null, null));
        return (pixels, files.Count, root);
    }

    /// <summary>Every PNG/JPEG under <paramref name="root"/> (in path order) as grey 28×28 images in [0, 1].</summary>
    public static (float[] Pixels, int Count, string Root) LoadFolder(string root)
    {
        var files = ImageFolder.List(root, $"The image folder {root} (--images) does not exist.",
            $"The image folder {root} (--images) holds no PNG or JPEG files (.png, .jpg, .jpeg), so there is nothing to score.");

        var pixels = new float[files.Count * 784];
        Parallel.For(0, files.Count, i =>
        {
            var bytes = ImageFolder.DecodeNamed(files[i].Full, files[i].Rel, 1, 28, null, null);
            LabeledDigits.ToUnit(bytes).CopyTo(pixels, i * 784);
        });
        return (pixels, files.Count, root);
    }
}
