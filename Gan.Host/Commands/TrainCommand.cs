using System.Diagnostics;
using System.Globalization;
using Gan.Functional.CSharp;
using Gan.Host.Cli;
using Gan.Host.Data;
using Gan.Host.Io;
using Gan.Host.Training;

namespace Gan.Host.Commands;

/// <summary>`train`: resolves the settings, prepares the run directory and data, and runs the loop.</summary>
internal static class TrainCommand
{
    public static int Run(TrainRequest req, HostContext ctx, ProgressSink sink)
    {
        TrainOptions config;
        RunDirectory run;
        LoadedCheckpoint? resumeFrom = null;
        using var writer = new WriterLock.Holder();
        if (req.Resume)
        {
            (config, run, resumeFrom) = PrepareResume(req, ctx, writer);
        }
        else
        {
            config = Resolve(req, ctx);
            run = NewRunDirectory(req, config, ctx, writer);
        }

        var kernels = DeviceSelection.Use(config.Device, config.Threads, ctx);
        ctx.DeviceWork = string.Create(CultureInfo.InvariantCulture, $"training {config.Model} at batch size {config.BatchSize}");

        var trainer = resumeFrom is not null ? CheckpointFile.Restore(resumeFrom, config) : GanTrainer.Create(config);
        using var data = LoadData(config, ctx);
        var usable = LoadSource(config, data, trainer.Model, ctx);
        var world = ctx.World;
        if (world.Distributed)
        {
            world.SyncBatchNorm = config.SyncBatchNorm;
            Distributed.DistributedTrain.Share(world, config, trainer, resumeFrom, usable.Count);
        }

        using var scorer = LoadScorer(config, ctx);

        TrainLoop.CheckPosition(resumeFrom, trainer, usable.Count, config.BatchSize);

        // Only now, with data and model ready and every check passed, does the run directory get written.
        try
        {
            Directory.CreateDirectory(run.Root);
            writer.Lock ??= run.TakeLock(ctx);
            AtomicFile.CleanTemporaries(run.Root);
            AtomicFile.CleanTemporaries(run.CheckpointsDir);
            AtomicFile.CleanTemporaries(run.SamplesDir);
            AtomicFile.WriteAllText(run.ConfigPath, config.ToJson());
            if (resumeFrom is not null)
            {
                RunDirectory.TruncateCsv(run.LossCsv, resumeFrom.CompletedEpochs);
                RunDirectory.TruncateCsv(run.StepsCsv, resumeFrom.TrainStep);
                RunDirectory.TruncateCsv(run.MetricsCsv, resumeFrom.CompletedEpochs);
            }
            else if (req.Resume)
            {
                RunDirectory.TruncateCsv(run.LossCsv, 0);
                RunDirectory.TruncateCsv(run.StepsCsv, 0);
                RunDirectory.TruncateCsv(run.MetricsCsv, 0);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write to the run directory", run.Root);
        }

        var info = trainer.Model;
        var steps = (usable.Count + config.BatchSize - 1) / config.BatchSize;
        var c = CultureInfo.InvariantCulture;
        var header = new List<string>
        {
            kernels,
            string.Create(c, $"model {config.Model} ({info.Summary}); data {config.Dataset}: {usable.Count:N0} {(config.DatasetInfo.IsMixture ? "points drawn from seed " + config.Seed : "images from " + config.DataDir)}"),
            string.Create(c, $"{config.Epochs} epoch(s) of {steps} steps at batch {config.BatchSize}; lr {config.LearningRate} (G ×{config.GeneratorLrScale}), β1 {config.Beta1}, loss {config.Loss}, seed {config.Seed}"),
            $"run directory: {run.Root}",
        };
        if (trainer.Placement != "the host")
        {
            header.Insert(1, $"model state and batches on {trainer.Placement}; the host gets copies for checkpoints, samples, metrics and the logged losses");
        }

        if (world.Distributed)
        {
            header.Add(world.Describe(config.BatchSize, world.HostNames()));
        }

        if (resumeFrom is not null)
        {
            header.Add($"resuming from {resumeFrom.Path} ({resumeFrom.CompletedEpochs} epochs + {resumeFrom.StepInEpoch} steps)");
        }
        else if (IsFirstRun(req))
        {
            var seed = Zoo.Model(config.Model, config.Channels);
            header.Add(string.Create(c,
                $"(the first run: {config.Model} for a quick look, at lr {config.LearningRate} with an EMA of G's weights ({config.EmaDecay}); its seed recipe is --model {config.Model}: lr {seed.DefaultLearningRate}, no EMA, {seed.DefaultEpochs} epochs)"));
        }
        else if (!req.IsGiven("epochs") && !req.Resume)
        {
            var full = Zoo.Model(config.Model, config.Channels).DefaultEpochs;
            header.Add($"(a quick look of {config.Epochs} epoch(s); the seed's full schedule is --epochs {full})");
        }

        foreach (var line in header)
        {
            ctx.Info(line);
        }

        try
        {
            File.AppendAllText(run.TrainLog, string.Join("\n", header.Prepend($"--- {DateTime.Now:yyyy-MM-dd HH:mm:ss} train {(req.Resume ? "--resume" : "")}")) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", run.TrainLog);
        }

        var startEpoch = resumeFrom?.CompletedEpochs ?? 0;
        if (startEpoch >= config.Epochs)
        {
            run.Prune(config.KeepCheckpoints); // a run killed between its last checkpoint and the pruning
            ctx.Info($"The run already has {startEpoch} epoch(s), which meets --epochs {config.Epochs}; nothing to do. Ask for more with --epochs N.");
            return ExitCodes.Ok;
        }

        var loop = new TrainLoop(config, run, usable, trainer, ctx, sink, scorer);
        var watch = Stopwatch.StartNew();
        int code;
        ctx.TrainingActive = true;
        try
        {
            code = sink.Run(() => loop.Run(resumeFrom));
        }
        finally
        {
            ctx.TrainingActive = false;
        }

        var self = "dotnet run --project Gan.Host --";
        if (code == ExitCodes.Interrupted)
        {
            ctx.Info($"Stopped by Ctrl-C. Continue with: {self} train --resume --out {run.Root}");
            return code;
        }

        var last = run.SamplePath(config.Epochs);
        ctx.Info(string.Create(c, $"done: {config.Epochs - startEpoch} epoch(s) in {PlainProgress.Format(watch.Elapsed)}. Outputs in {run.Root}:"));
        ctx.Info(config.DatasetInfo.IsMixture
            ? $"  samples/    a scatter plot of {config.SampleCount:N0} points per epoch from fixed noise over the modes (latest: {last})"
            : $"  samples/    a {Math.Ceiling(Math.Sqrt(config.SampleCount))}×{Math.Ceiling(Math.Sqrt(config.SampleCount))} grid per epoch from fixed noise (latest: {last})");
        if (scorer is not null)
        {
            ctx.Info(config.EvalEvery > 0
                ? $"  metrics.csv the metrics every {config.EvalEvery} epoch(s) and after the last (evaluate's, on fixed noise)"
                : "  metrics.csv the metrics after the last epoch (evaluate's, on fixed noise)");
        }

        ctx.Info("  loss.csv    epoch,Real_P,Fake_P,Gen_loss,Dis_loss;  steps.csv  one row per step;  train.log  this output");
        ctx.Info($"  checkpoints/  {(loop.LastCheckpoint is { } ck ? Path.GetFileName(ck) : "none")} (safetensors);  config.json  every setting");
        var report = ReportCommand.TryWrite(run, ctx);
        if (loop.LastMetrics is { } metrics)
        {
            ctx.Info($"The final generator{(config.EmaDecay > 0 ? " (EMA weights)" : "")}, scored as `evaluate` does:");
            foreach (var row in metrics.Table())
            {
                ctx.Info("  " + row);
            }
        }

        ctx.Info($"Look at: {last} (the latest samples){(report is not null ? $" and {report} (losses, metrics and every epoch's samples; open it in a browser)" : "")}");
        ctx.Info($"More epochs: {self} train --resume --out {run.Root} --epochs {config.Epochs * 2}");
        ctx.Info($"New samples: {self} sample --run {run.Root} --count {(config.DatasetInfo.IsMixture ? Mixture.DefaultSamples : 64)} --out samples.png");
        return code;
    }

    /// <summary>
    /// The scorer of the run's metrics: asked for with --eval-every (an error where the dataset has
    /// none), or by default after the last epoch wherever the dataset has metrics; a default one that
    /// cannot be had (e.g. no labelled test set for the classifier) is a note, not a failure.
    /// </summary>
    private static Eval.Scorer? LoadScorer(TrainOptions config, HostContext ctx)
    {
        var dataDir = EvaluateCommand.ClassifierDataDir(config.Dataset, config.DataDir);
        if (config.EvalEvery > 0)
        {
            return Eval.Scorer.For(config.Dataset, dataDir, ctx);
        }

        if (!config.Evaluate || !Eval.Scorer.CanScore(config.Dataset))
        {
            return null;
        }

        try
        {
            return Eval.Scorer.For(config.Dataset, dataDir, ctx);
        }
        catch (UserError e)
        {
            ctx.Info($"note: this run ends without metrics: {e.Message}");
            return null;
        }
    }

    /// <summary>
    /// True for a new run that names no model on image data: it gets the library's first-run
    /// settings (model, epochs, learning rate, EMA) wherever the command line gives none.
    /// </summary>
    private static bool IsFirstRun(TrainRequest req) => !req.Resume && TrainOptions.IsFirstRun(req.Given);

    /// <summary>The settings of a new run: the request over the model's SEEDS.md defaults.</summary>
    public static TrainOptions Resolve(TrainRequest req, HostContext ctx)
    {
        TrainOptions config;
        try
        {
            config = TrainOptions.Resolve(req.Given.MapPaths(ctx.Resolve), ctx.CacheRoot);
        }
        catch (InvalidSettingsException e)
        {
            throw new UserError(e.Message, ExitCodes.Usage);
        }

        CheckBoundingBoxes(config);
        return config;
    }

    /// <summary>The bounding-box list, when there is one, must exist.</summary>
    private static void CheckBoundingBoxes(TrainOptions config)
    {
        if (config.BoundingBoxes is { } bbox && !File.Exists(bbox))
        {
            throw new UserError($"The bounding-box file {bbox} (--bbox) does not exist.");
        }
    }

    private static RunDirectory NewRunDirectory(TrainRequest req, TrainOptions config, HostContext ctx, WriterLock.Holder writer)
    {
        if (req.Out is { } o)
        {
            var dir = new RunDirectory(ctx.Resolve(o));
            if (File.Exists(dir.Root))
            {
                throw new UserError($"--out {dir.Root} is a file; give a directory for the run.", ExitCodes.Usage);
            }

            if (Directory.Exists(dir.Root))
            {
                // first, so a directory another run is writing is refused naming that process
                writer.Lock = dir.TakeLock(ctx);
            }

            if (dir.HasConfig)
            {
                string what;
                try
                {
                    var other = RunConfig.Load(dir.ConfigPath);
                    what = $"a run of {other.Model} on {other.Dataset}";
                }
                catch (UserError)
                {
                    what = "a run";
                }

                throw new UserError(
                    $"The output directory {dir.Root} already holds {what} (it has a config.json). Continue that run with --resume, "
                    + "or choose another --out for a new one.");
            }

            if (Directory.Exists(dir.Root) && !dir.HoldsOnlyLeftovers())
            {
                throw new UserError(
                    $"The output directory {dir.Root} is not empty and is not a run directory; choose a new or empty directory for --out, so nothing in it is overwritten.");
            }

            return dir;
        }

        var runs = Path.Combine(ctx.WorkingDirectory, "runs");
        var stem = $"{config.Model}-{config.DatasetInfo.Label}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}";
        var path = Path.Combine(runs, stem);
        for (var i = 2; Directory.Exists(path); i++)
        {
            path = Path.Combine(runs, $"{stem}-{i}");
        }

        return new RunDirectory(path);
    }

    private static (TrainOptions, RunDirectory, LoadedCheckpoint?) PrepareResume(TrainRequest req, HostContext ctx, WriterLock.Holder writer)
    {
        RunDirectory run;
        if (req.Out is { } o)
        {
            run = new RunDirectory(ctx.Resolve(o));
            if (!run.HasConfig)
            {
                throw new UserError($"There is no run to resume in {run.Root}: it has no config.json. Check --out, or drop --resume to start a new run there.");
            }
        }
        else
        {
            var runs = Path.Combine(ctx.WorkingDirectory, "runs");
            var newest = Directory.Exists(runs)
                ? Directory.EnumerateDirectories(runs)
                    .Select(d => new RunDirectory(d))
                    .Where(r => r.HasConfig)
                    .OrderByDescending(r => File.GetLastWriteTimeUtc(r.ConfigPath))
                    .FirstOrDefault()
                : null;
            run = newest ?? throw new UserError($"There is no run to resume under {runs}; pass --out DIR with the run directory to continue.");
        }

        // before anything is read: a run directory another process is writing is refused at once
        writer.Lock = run.TakeLock(ctx);
        var stored = RunConfig.Load(run.ConfigPath);
        TrainOptions asked;
        try
        {
            asked = TrainOptions.Resume(stored, req.Given.MapPaths(ctx.Resolve), ctx.CacheRoot);
        }
        catch (InvalidSettingsException e)
        {
            throw new UserError(e.Message, ExitCodes.Usage);
        }

        CheckBoundingBoxes(asked);
        var conflicts = stored.WeightDifferences(asked)
            .Select(d => $"{d.Flag} {d.Second} (the run has {d.First})")
            .ToList();
        if (conflicts.Count > 0)
        {
            throw new UserError(
                $"--resume continues the run in {run.Root} with its own settings, but the command line changes {string.Join("; ", conflicts)}. "
                + "Drop those flags to continue the run, or start a new run with another --out.",
                ExitCodes.Usage);
        }

        var checkpoints = run.Checkpoints();
        LoadedCheckpoint? from = checkpoints.Count > 0 ? CheckpointFile.Read(checkpoints[^1].Path) : null;
        if (from is null)
        {
            ctx.Info($"No checkpoint in {run.CheckpointsDir}; the run starts again from the beginning.");
        }

        return (asked, run, from);
    }

    /// <summary>The training examples as batches of the model's shape: points as they are, images converted and resized.</summary>
    public static BatchSource LoadSource(TrainOptions config, ImageSet? images, ModelInfo info, HostContext ctx)
    {
        if (images is null)
        {
            var n = config.TrainSize ?? MixturePoints;
            return new PointSource(Mixture.Sample(config.Dataset, RunRandom.DatasetSeed(config.Seed), n), n);
        }

        var usable = config.TrainSize is { } limit ? images.Take(limit) : images;
        var shape = info.ImageShape;
        return new BatchLoader(usable, shape[0], shape[1], shape[2], info.OutputsZeroToOne);
    }

    /// <summary>The size of a mixture's training set: 500 steps per epoch at the toy models' batch of 100.</summary>
    public const int MixturePoints = 50_000;

    /// <summary>The size of the Stacked MNIST training set built from MNIST (--train-size changes it).</summary>
    public const int StackedImages = 60_000;

    /// <summary>Loads the run's training images (fetching MNIST on first use); null for the point mixtures.</summary>
    public static ImageSet? LoadData(TrainOptions config, HostContext ctx)
    {
        var dataset = config.DatasetInfo;
        switch (dataset.Kind)
        {
            case DatasetKind.Mixture:
                return null;
            case DatasetKind.Mnist:
                return Mnist.LoadMnist(config.DataDir, ctx);
            case DatasetKind.StackedMnist:
                return StackedMnist.Build(Mnist.LoadMnist(config.DataDir, ctx), config.TrainSize ?? StackedImages, RunRandom.DatasetSeed(config.Seed));
            case DatasetKind.Emoji:
                return Emoji.Load(config.DataDir, heldOut: false, ctx);
            case DatasetKind.FashionMnist:
                config.DataDir = Mnist.LocateFashion(config.DataDir.Length > 0 ? config.DataDir : null, ctx);
                return Mnist.Read(Mnist.FindTrainImages(config.DataDir)!);
            default:
                return ImageFolder.Load(dataset.ImageFolder!, config.Channels, config.ImageSize, dataset.BoundingBoxes, config.DataDir, ctx);
        }
    }
}
