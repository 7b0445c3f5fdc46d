using System.Diagnostics;
using System.Globalization;
using Gan.Functional.CSharp;
using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Training;

/// <summary>
/// The epoch loop around the engine's pure training step: data order, logs, sample grids,
/// checkpoints, Ctrl-C and divergence. Every random choice derives from the run's seed and the
/// position in the run, so a resumed run repeats exactly what an uninterrupted one does.
/// </summary>
internal sealed class TrainLoop(TrainOptions config, RunDirectory run, BatchSource data, GanTrainer trainer, HostContext ctx, ProgressSink sink, Eval.Scorer? scorer = null)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    public string? LastCheckpoint { get; private set; }

    /// <summary>The metrics of the last evaluation of this run's process, if any.</summary>
    public Eval.EvalResult? LastMetrics { get; private set; }

    /// <summary>Steps after which the whole run's time is estimated (the first steps run slower: JIT, buffer pools).</summary>
    private const int EstimateAfterSteps = 10;

    /// <summary>Seconds of stepping after which the whole run's time is estimated.</summary>
    private const double EstimateAfterSeconds = 5;

    private StreamWriter? stepsLog;

    public int Run(LoadedCheckpoint? from)
    {
        var n = data.Count;
        var batch = config.BatchSize;
        var stepsPerEpoch = (n + batch - 1) / batch;
        var epoch = from?.CompletedEpochs ?? 0;
        var step = from?.StepInEpoch ?? 0;
        var sums = from?.Sums ?? EpochSums.Empty;
        LastCheckpoint = from?.Path;

        CheckPosition(from, trainer, n, batch);

        var loader = data;
        var fixedNoise = trainer.Noise(config.SampleCount, RunRandom.SampleNoiseSeed(config.Seed));

        Directory.CreateDirectory(run.SamplesDir);
        Directory.CreateDirectory(run.CheckpointsDir);
        using var stepsLog = OpenStepsLog();
        this.stepsLog = stepsLog;
        using var textLog = new StreamWriter(run.TrainLog, append: true, new System.Text.UTF8Encoding(false)) { NewLine = "\n" };

        void Log(string line)
        {
            sink.Line(line);
            textLog.WriteLine(line);
            textLog.Flush();
        }

        var world = ctx.World;
        var buffer = new float[world.Slice(batch).Count * loader.ImageSize];
        var runSteps = ((long)(config.Epochs - epoch) * stepsPerEpoch) - step;
        var runWatch = Stopwatch.StartNew();
        var stepsDone = 0L;
        var estimated = false;
        for (; epoch < config.Epochs; epoch++, step = 0, sums = EpochSums.Empty)
        {
            var order = RunRandom.Permutation(n, config.Seed, epoch);
            sink.StartEpoch(epoch + 1, config.Epochs, stepsPerEpoch, step);
            var watch = Stopwatch.StartNew();
            var firstStep = step;
            for (; step < stepsPerEpoch; step++)
            {
                // under MPI every rank learns of an interrupt here (one tiny allreduce)
                if (world.Any(ctx.Cancel.IsCancellationRequested))
                {
                    stepsLog.Flush();
                    var path = SaveCheckpoint(epoch, step, sums);
                    Log($"interrupted: saved {Rel(path)} ({epoch} epochs + {step} steps)");
                    sink.EndEpoch();
                    return ExitCodes.Interrupted;
                }

                var count = Math.Min(batch, n - (step * batch));
                // this rank's rows of the global batch (all of them in a run of one process)
                var (offset, local) = world.Slice(count);
                var images = local * loader.ImageSize == buffer.Length ? buffer : new float[local * loader.ImageSize];
                loader.Fill(order.AsSpan((step * batch) + offset, local), images);
                var t0 = Stopwatch.GetTimestamp();
                var r = world.Step(trainer, images, local, offset, count, epoch);
                var seconds = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                if (!double.IsFinite(r.DiscriminatorLoss) || (r.GeneratorUpdated && !double.IsFinite(r.GeneratorLoss)))
                {
                    stepsLog.Flush();
                    var which = !double.IsFinite(r.DiscriminatorLoss)
                        ? $"the discriminator loss became {r.DiscriminatorLoss.ToString(C)}"
                        : $"the generator loss became {r.GeneratorLoss.ToString(C)}";
                    throw Diverged($"{which} at epoch {epoch + 1}, step {step + 1} (step {trainer.StepCount} of the run)");
                }

                sums = sums.Add(r, r.GeneratorUpdated, seconds);
                stepsLog.WriteLine(string.Join(",",
                    trainer.StepCount.ToString(C),
                    (epoch + 1).ToString(C),
                    r.DiscriminatorLoss.ToString("G7", C),
                    r.GeneratorUpdated ? r.GeneratorLoss.ToString("G7", C) : "",
                    r.RealScore.ToString("G7", C),
                    r.FakeScore.ToString("G7", C),
                    seconds.ToString("0.0000", C)));
                var rate = (step + 1 - firstStep) / Math.Max(1e-9, watch.Elapsed.TotalSeconds);
                sink.Step(new StepStats(step + 1, stepsPerEpoch, rate, rate * batch, sums.MeanD, sums.MeanG, sums.MeanReal, sums.MeanFake));
                stepsDone++;
                if (!estimated && stepsDone >= EstimateAfterSteps && runWatch.Elapsed.TotalSeconds >= EstimateAfterSeconds && stepsDone < runSteps)
                {
                    estimated = true;
                    var perStep = runWatch.Elapsed.TotalSeconds / stepsDone;
                    Log(string.Create(C,
                        $"estimate from the first {stepsDone} steps: {perStep * 1000:0} ms a step ({batch / perStep:0} images/s), about {PlainProgress.Format(TimeSpan.FromSeconds(perStep * runSteps))} for the run's {runSteps:N0} steps{(scorer is not null ? ", plus the metrics at the end" : "")}"));
                }

                ctx.AfterStep?.Invoke(trainer.StepCount);
                CrashPoint.Hit("step", "");
            }

            stepsLog.Flush();
            sink.EndEpoch();
            EndEpoch(epoch, sums, fixedNoise, Log);
        }

        return ExitCodes.Ok;
    }

    /// <summary>
    /// Refuses a checkpoint whose position (epochs, steps, the engine's step count) does not fit
    /// <paramref name="n"/> examples at batch <paramref name="batch"/>; called before anything in
    /// the run directory is rewritten.
    /// </summary>
    public static void CheckPosition(LoadedCheckpoint? from, GanTrainer trainer, int n, int batch)
    {
        var stepsPerEpoch = (n + batch - 1) / batch;
        var epoch = from?.CompletedEpochs ?? 0;
        var step = from?.StepInEpoch ?? 0;
        if (trainer.StepCount != ((long)epoch * stepsPerEpoch) + step || step >= stepsPerEpoch || (from is not null && from.TrainStep != trainer.StepCount))
        {
            throw new UserError(
                $"The checkpoint {from?.Path} was written {trainer.StepCount} steps into the run ({epoch} epochs + {step} steps), "
                + $"which does not fit {n:N0} images at batch size {batch} ({stepsPerEpoch} steps per epoch): the dataset is not the one this run was trained on. "
                + "Point --data-dir at the original data, or start a new run.");
        }
    }

    private void EndEpoch(int epoch, EpochSums sums, float[] fixedNoise, Action<string> log)
    {
        var number = epoch + 1;
        try
        {
            RunDirectory.AppendLine(run.LossCsv, RunDirectory.LossHeader, string.Join(",",
                number.ToString(C),
                sums.MeanReal.ToString("G7", C),
                sums.MeanFake.ToString("G7", C),
                sums.MeanG.ToString("G7", C),
                sums.MeanD.ToString("G7", C)));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", run.LossCsv);
        }

        var shape = trainer.Model.ImageShape;
        var generated = trainer.Generate(fixedNoise, config.SampleCount, useEma: true);
        var grid = shape.Length == 1
            ? Scatter.Plot(generated, config.SampleCount, Mixture.Means(config.Dataset))
            : Grid.Make(generated, config.SampleCount, shape[0], shape[1], shape[2], trainer.Model.OutputsZeroToOne);
        var samplePath = run.SamplePath(number);
        try
        {
            AtomicFile.WriteAllBytes(samplePath, ImageCodec.EncodePng(grid));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", samplePath);
        }

        var line = string.Create(C, $"epoch {number}/{config.Epochs}  D {sums.MeanD:0.0000}  G {sums.MeanG:0.0000}  D(x) {sums.MeanReal:0.000}  D(G(z)) {sums.MeanFake:0.000}  {sums.Seconds:0.0} s in steps  → {Rel(samplePath)}");
        // the metrics row before the checkpoint, so every row up to a checkpoint exists once it does
        // (a crash between them would otherwise lose the row for good: resume starts after it)
        var metrics = scorer is not null && ((config.EvalEvery > 0 && number % config.EvalEvery == 0) || number == config.Epochs)
            ? Evaluate(number)
            : null;
        if (number % config.CheckpointEvery == 0 || number == config.Epochs)
        {
            line += $", {Rel(SaveCheckpoint(number, 0, EpochSums.Empty))}";
        }

        log(line);
        if (metrics is not null)
        {
            log(metrics);
        }
    }

    /// <summary>Scores the generator on a fixed noise batch and appends a row to metrics.csv; returns the line to log.</summary>
    private string Evaluate(int number)
    {
        var n = config.EvalSamples ?? scorer!.DefaultTrainingSamples;
        var seed = RunRandom.EvalSeed(config.Seed);
        var watch = Stopwatch.StartNew();
        var output = Eval.Scorer.Generate(trainer, n, seed, useEma: true);
        var result = scorer!.ScoreGenerated(output, n, trainer.Model.ImageShape, trainer.Model.OutputsZeroToOne, seed);
        LastMetrics = result;
        var columns = result.Columns().ToList();
        try
        {
            RunDirectory.AppendLine(
                run.MetricsCsv,
                "epoch," + string.Join(",", columns.Select(c => c.Key)),
                number.ToString(C) + "," + string.Join(",", columns.Select(c => c.Value.ToString("G7", C))));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", run.MetricsCsv);
        }

        return string.Create(C, $"metrics after epoch {number} ({n:N0} samples, {watch.Elapsed.TotalSeconds:0.0} s): ")
            + string.Join("  ", columns.Where(c => !c.Key.EndsWith("_std", StringComparison.Ordinal)).Select(c => $"{c.Key} {Eval.EvalResult.Show(c.Value)}"));
    }

    private string SaveCheckpoint(int completedEpochs, int stepInEpoch, EpochSums sums)
    {
        var path = run.CheckpointPath(completedEpochs, stepInEpoch);
        if (path == LastCheckpoint && File.Exists(path))
        {
            return path;
        }

        if (!trainer.IsFinite())
        {
            throw Diverged($"the weights are no longer finite at epoch {completedEpochs + (stepInEpoch > 0 ? 1 : 0)} (step {trainer.StepCount} of the run)");
        }

        try
        {
            stepsLog?.Flush();
            run.SyncLogs();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "flush the logs in", run.Root);
        }

        CheckpointFile.Write(path, trainer, config, completedEpochs, stepInEpoch, sums);
        LastCheckpoint = path;
        try
        {
            run.Prune(config.KeepCheckpoints);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "delete old checkpoints in", run.CheckpointsDir);
        }

        return path;
    }

    private UserError Diverged(string what)
    {
        var last = LastCheckpoint is null
            ? "No checkpoint had been written yet."
            : $"The last good checkpoint, {Rel(LastCheckpoint)}, is intact.";
        return new UserError(
            $"Training diverged: {what}, so the run stopped without saving this state. {last} "
            + "Resuming would repeat the same steps; start a new run with a lower --lr or another --seed.",
            ExitCodes.Diverged);
    }

    private StreamWriter OpenStepsLog()
    {
        var isNew = !File.Exists(run.StepsCsv) || new FileInfo(run.StepsCsv).Length == 0;
        var w = new StreamWriter(run.StepsCsv, append: true, new System.Text.UTF8Encoding(false)) { NewLine = "\n" };
        if (isNew)
        {
            w.WriteLine(RunDirectory.StepsHeader);
        }

        return w;
    }

    private string Rel(string path) => Path.GetRelativePath(run.Root, path).Replace('\\', '/');
}
