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
        RunConfig config;
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

        var kernels = Engine.ConfigureCpu(config.Threads);

        var trainer = resumeFrom is not null ? CheckpointFile.Restore(resumeFrom, config) : GanTrainer.Create(config.ToTrainOptions());
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
            string.Create(c, $"model {config.Model} ({info.Summary}); data {config.Dataset}: {usable.Count:N0} {(IsMixture(config.Dataset) ? "points drawn from seed " + config.Seed : "images from " + config.DataDir)}"),
            string.Create(c, $"{config.Epochs} epoch(s) of {steps} steps at batch {config.BatchSize}; lr {config.LearningRate} (G ×{config.GeneratorLrScale}), β1 {config.Beta1}, loss {config.Loss}, seed {config.Seed}"),
            $"run directory: {run.Root}",
        };
        if (world.Distributed)
        {
            header.Add(world.Describe(config.BatchSize, world.HostNames()));
        }

        if (resumeFrom is not null)
        {
            header.Add($"resuming from {resumeFrom.Path} ({resumeFrom.CompletedEpochs} epochs + {resumeFrom.StepInEpoch} steps)");
        }
        else if (IsFirstRun(req, config.Dataset))
        {
            var seed = Zoo.Model(config.Model, config.Channels);
            header.Add(string.Create(c,
                $"(the first run: {config.Model} for a quick look, at lr {config.LearningRate} with an EMA of G's weights ({config.Ema}); its seed recipe is --model {config.Model}: lr {seed.DefaultLearningRate}, no EMA, {seed.DefaultEpochs} epochs)"));
        }
        else if (req.Epochs is null && !req.Resume)
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
        ctx.Info(IsMixture(config.Dataset)
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
            ctx.Info($"The final generator{(config.Ema > 0 ? " (EMA weights)" : "")}, scored as `evaluate` does:");
            foreach (var row in metrics.Table())
            {
                ctx.Info("  " + row);
            }
        }

        ctx.Info($"Look at: {last} (the latest samples){(report is not null ? $" and {report} (losses, metrics and every epoch's samples; open it in a browser)" : "")}");
        ctx.Info($"More epochs: {self} train --resume --out {run.Root} --epochs {config.Epochs * 2}");
        ctx.Info($"New samples: {self} sample --run {run.Root} --count {(IsMixture(config.Dataset) ? Mixture.DefaultSamples : 64)} --out samples.png");
        return code;
    }

    /// <summary>
    /// The scorer of the run's metrics: asked for with --eval-every (an error where the dataset has
    /// none), or by default after the last epoch wherever the dataset has metrics; a default one that
    /// cannot be had (e.g. no labelled test set for the classifier) is a note, not a failure.
    /// </summary>
    private static Eval.Scorer? LoadScorer(RunConfig config, HostContext ctx)
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
    private static bool IsFirstRun(TrainRequest req, string dataset) => !req.Resume && req.Model is null && !IsMixture(dataset);

    /// <summary>The settings of a new run: the request over the model's SEEDS.md defaults.</summary>
    public static RunConfig Resolve(TrainRequest req, HostContext ctx)
    {
        var dataset = req.Dataset ?? "mnist";
        var firstRun = IsFirstRun(req, dataset);
        var model = req.Model ?? (IsMixture(dataset) ? "toy2d" : Engine.FirstRunModel);
        var isImages = dataset.StartsWith("images:", StringComparison.Ordinal);
        var stacked = dataset == "stacked-mnist";
        if (isImages)
        {
            dataset = "images:" + ctx.Resolve(dataset["images:".Length..]);
        }

        var fixedInfo = Zoo.Model(model, 3);
        var pointModel = fixedInfo.ImageShape.Length == 1;
        if (pointModel != IsMixture(dataset))
        {
            var points = Zoo.ModelNames.Where(m => Zoo.Model(m, 3).ImageShape.Length == 1).ToList();
            throw new UserError(
                pointModel
                    ? $"{model} generates 2-D points, so it trains on the mixtures ring8 and grid25 only, not {dataset}; pick an image model for images (`Gan.Host models` lists them)."
                    : $"{dataset} is a mixture of 2-D points; {model} generates images. Train it with {(points.Count > 0 ? string.Join(" or ", points) : "a 2-D model (none is in this build's zoo)")}.",
                ExitCodes.Usage);
        }

        if (pointModel && (req.Channels is not null || req.ImageSize is not null))
        {
            throw new UserError($"--channels and --image-size describe images; {model} generates 2-D points.", ExitCodes.Usage);
        }

        int channels;
        if (pointModel)
        {
            channels = 1;
        }
        else if (Zoo.TakesChannels(model))
        {
            channels = req.Channels ?? (isImages || stacked || dataset == "emoji" ? 3 : 1);
            if (stacked && channels != 3)
            {
                throw new UserError("stacked-mnist has 3 channels (one digit each); drop --channels 1 or pass --channels 3.", ExitCodes.Usage);
            }
        }
        else
        {
            channels = fixedInfo.ImageShape[0];
            if (stacked && channels != 3)
            {
                throw new UserError(
                    $"stacked-mnist has 3 channels (one digit each), but {model} generates {channels}-channel images. No zoo model makes 3×28×28 images; "
                    + "dcgan64 (--channels 3) and valid64 train on Stacked MNIST resized to 64×64.",
                    ExitCodes.Usage);
            }

            if (req.Channels is { } asked && asked != channels)
            {
                throw new UserError(
                    $"--channels {asked} does not fit {model}, which generates {channels}-channel images; only dcgan64 takes either 1 or 3.",
                    ExitCodes.Usage);
            }
        }

        var info = Zoo.Model(model, channels);
        var size = pointModel ? 0 : info.ImageShape[1];
        if (req.ImageSize is { } s && s != size)
        {
            throw new UserError(
                $"--image-size {s} does not fit {model}, whose layers are built for {size}×{size} images; data is resized to {size} automatically.",
                ExitCodes.Usage);
        }

        if (req.NoiseDim is { } z && z != info.NoiseDim)
        {
            throw new UserError(
                $"--noise-dim {z} does not fit {model}, whose generator takes z of length {info.NoiseDim} (fixed by SEEDS.md).",
                ExitCodes.Usage);
        }

        string? bbox = null;
        if (req.BoundingBoxes is { } b)
        {
            bbox = ctx.Resolve(b);
            if (!File.Exists(bbox))
            {
                throw new UserError($"The bounding-box file {bbox} (--bbox) does not exist.");
            }
        }

        var device = Zoo.Device(req.Device ?? "auto");
        var defaultDataDir = isImages ? Path.Combine(ctx.CacheRoot, "images") : Path.Combine(ctx.CacheRoot, stacked ? "mnist" : dataset);
        return new RunConfig
        {
            Model = model,
            Dataset = dataset,
            Channels = channels,
            ImageSize = size,
            NoiseDim = info.NoiseDim,
            Epochs = req.Epochs ?? (firstRun ? Engine.FirstRunEpochs : info.QuickEpochs),
            BatchSize = req.BatchSize ?? info.DefaultBatchSize,
            LearningRate = req.LearningRate ?? (firstRun ? Engine.FirstRunLearningRate : info.DefaultLearningRate),
            GeneratorLrScale = req.GeneratorLrScale ?? info.DefaultGeneratorLrScale,
            Beta1 = req.Beta1 ?? info.DefaultBeta1,
            Loss = Zoo.Loss(req.Loss ?? "bce"),
            DSteps = req.DSteps ?? 1,
            GpWeight = req.GradientPenaltyWeight ?? 0,
            R1Weight = req.R1Weight ?? 0,
            Ema = req.EmaDecay ?? (firstRun ? Engine.FirstRunEmaDecay : 0),
            LrDecayEpochs = req.LrDecayEpochs ?? info.DefaultLrDecayEpochs,
            Bbox = bbox,
            TrainSize = req.TrainSize,
            CheckpointEvery = req.CheckpointEvery ?? info.DefaultCheckpointEvery,
            KeepCheckpoints = req.KeepCheckpoints ?? 3,
            Seed = req.Seed ?? 0,
            Threads = req.Threads ?? 0,
            Device = device,
            DataDir = req.DataDir is { } d ? ctx.Resolve(d) : dataset == "fashion-mnist" || IsMixture(dataset) ? "" : defaultDataDir,
            SampleCount = pointModel ? Mixture.DefaultSamples : 16,
            EvalEvery = req.EvalEvery ?? 0,
            Evaluate = !req.NoEval,
            SyncBatchNorm = req.SyncBatchNorm,
            EvalSamples = req.EvalSamples,
        };
    }

    private static RunDirectory NewRunDirectory(TrainRequest req, RunConfig config, HostContext ctx, WriterLock.Holder writer)
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
        var stem = $"{config.Model}-{config.DatasetLabel}-{DateTime.Now.ToString("yyyyMMdd-HHmmss", CultureInfo.InvariantCulture)}";
        var path = Path.Combine(runs, stem);
        for (var i = 2; Directory.Exists(path); i++)
        {
            path = Path.Combine(runs, $"{stem}-{i}");
        }

        return new RunDirectory(path);
    }

    private static (RunConfig, RunDirectory, LoadedCheckpoint?) PrepareResume(TrainRequest req, HostContext ctx, WriterLock.Holder writer)
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
        var asked = Resolve(req, ctx, stored);
        var conflicts = stored.Fixed().Zip(asked.Fixed())
            .Where(p => p.First.Value != p.Second.Value)
            .Select(p => $"{p.First.Flag} {p.Second.Value} (the run has {p.First.Value})")
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

    /// <summary>The stored settings with what --resume may change (epochs, checkpoints, threads, device, data dir).</summary>
    private static RunConfig Resolve(TrainRequest req, HostContext ctx, RunConfig stored)
    {
        // The result-deciding settings as asked: the stored ones, overridden by what the request gives.
        var over = new TrainRequest
        {
            Model = req.Model ?? stored.Model,
            Dataset = req.Dataset ?? stored.Dataset,
            // points have no channels: passing the stored 1 would read as a --channels flag
            Channels = req.Channels ?? (IsMixture(stored.Dataset) ? null : stored.Channels),
            ImageSize = req.ImageSize,
            NoiseDim = req.NoiseDim,
            Epochs = req.Epochs ?? stored.Epochs,
            BatchSize = req.BatchSize ?? stored.BatchSize,
            LearningRate = req.LearningRate ?? stored.LearningRate,
            GeneratorLrScale = req.GeneratorLrScale ?? stored.GeneratorLrScale,
            Beta1 = req.Beta1 ?? stored.Beta1,
            Loss = req.Loss ?? stored.Loss,
            DSteps = req.DSteps ?? stored.DSteps,
            GradientPenaltyWeight = req.GradientPenaltyWeight ?? stored.GpWeight,
            R1Weight = req.R1Weight ?? stored.R1Weight,
            EmaDecay = req.EmaDecay ?? stored.Ema,
            LrDecayEpochs = req.LrDecayEpochs ?? stored.LrDecayEpochs,
            BoundingBoxes = req.BoundingBoxes ?? stored.Bbox,
            TrainSize = req.TrainSize ?? stored.TrainSize,
            CheckpointEvery = req.CheckpointEvery ?? stored.CheckpointEvery,
            KeepCheckpoints = req.KeepCheckpoints ?? stored.KeepCheckpoints,
            Seed = req.Seed ?? stored.Seed,
            Threads = req.Threads ?? stored.Threads,
            Device = req.Device ?? stored.Device,
            DataDir = req.DataDir ?? stored.DataDir,
            EvalEvery = req.NoEval ? 0 : req.EvalEvery ?? stored.EvalEvery,
            NoEval = req.NoEval || (!stored.Evaluate && req.EvalEvery is null),
            EvalSamples = req.EvalSamples ?? stored.EvalSamples,
            SyncBatchNorm = req.SyncBatchNorm || stored.SyncBatchNorm,
        };
        var resolved = Resolve(over, ctx);
        if (req.DataDir is null)
        {
            resolved.DataDir = stored.DataDir;
        }

        resolved.SampleCount = stored.SampleCount;
        return resolved;
    }

    /// <summary>True for the 2-D mixtures (ring8, grid25).</summary>
    public static bool IsMixture(string dataset) => Mixture.IsMixture(dataset);

    /// <summary>The training examples as batches of the model's shape: points as they are, images converted and resized.</summary>
    public static BatchSource LoadSource(RunConfig config, ImageSet? images, ModelInfo info, HostContext ctx)
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
    public static ImageSet? LoadData(RunConfig config, HostContext ctx)
    {
        switch (config.Dataset)
        {
            case "ring8" or "grid25":
                return null;
            case "mnist":
                return Mnist.LoadMnist(config.DataDir, ctx);
            case "stacked-mnist":
                return StackedMnist.Build(Mnist.LoadMnist(config.DataDir, ctx), config.TrainSize ?? StackedImages, RunRandom.DatasetSeed(config.Seed));
            case "emoji":
                return Emoji.Load(config.DataDir, heldOut: false, ctx);
            case "fashion-mnist":
                config.DataDir = Mnist.LocateFashion(config.DataDir.Length > 0 ? config.DataDir : null, ctx);
                return Mnist.Read(Mnist.FindTrainImages(config.DataDir)!);
            default:
                var root = config.Dataset["images:".Length..];
                return ImageFolder.Load(root, config.Channels, config.ImageSize, config.Bbox, config.DataDir, ctx);
        }
    }
}
