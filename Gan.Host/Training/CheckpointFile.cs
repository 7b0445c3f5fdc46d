using System.Globalization;
using Gan.Functional.CSharp;
using Gan.Host.Io;

namespace Gan.Host.Training;

/// <summary>Running sums over the steps of the epoch in progress (for loss.csv).</summary>
internal sealed record EpochSums(double D, double G, int GCount, double Real, double Fake, int Count, double Seconds)
{
    public static readonly EpochSums Empty = new(0, 0, 0, 0, 0, 0, 0);

    public EpochSums Add(StepResult r, bool generatorUpdated, double seconds) => new(
        D + r.DiscriminatorLoss,
        G + (generatorUpdated ? r.GeneratorLoss : 0),
        GCount + (generatorUpdated ? 1 : 0),
        Real + r.RealScore,
        Fake + r.FakeScore,
        Count + 1,
        Seconds + seconds);

    public double MeanD => Count == 0 ? double.NaN : D / Count;
    public double MeanG => GCount == 0 ? double.NaN : G / GCount;
    public double MeanReal => Count == 0 ? double.NaN : Real / Count;
    public double MeanFake => Count == 0 ? double.NaN : Fake / Count;

    public string Serialize() => string.Join(" ", new[] { D, G, GCount, Real, Fake, Count, Seconds }.Select(v => v.ToString("R", CultureInfo.InvariantCulture)));

    /// <summary>Parses <see cref="Serialize"/>'s form; a FormatException when it is not 7 numbers with whole, non-negative counts.</summary>
    public static EpochSums Parse(string text)
    {
        var v = text.Split(' ').Select(s => double.Parse(s, NumberStyles.Float, CultureInfo.InvariantCulture)).ToArray();
        static int Count(double c) => c is >= 0 and <= int.MaxValue && c == Math.Floor(c) ? (int)c : throw new FormatException($"bad count {c}");
        return v.Length == 7
            ? new EpochSums(v[0], v[1], Count(v[2]), v[3], v[4], Count(v[5]), v[6])
            : throw new FormatException($"{v.Length} numbers, not 7");
    }
}

/// <summary>A checkpoint read back: the engine tensors plus where the run was.</summary>
internal sealed record LoadedCheckpoint(
    string Path,
    IReadOnlyList<NamedTensor> Tensors,
    TrainOptions Config,
    int CompletedEpochs,
    int StepInEpoch,
    int TrainStep,
    EpochSums Sums);

/// <summary>
/// Checkpoints as safetensors: the engine's named tensors (G and D parameters and BatchNorm
/// statistics under "generator."/"discriminator." with PyTorch names and layouts, optimizer
/// moments, EMA weights, step counts and the RNG key), and in the header's metadata the run
/// configuration and position (epoch, step) a resume needs.
/// </summary>
internal static class CheckpointFile
{
    public const string Format = "gan-functional-checkpoint/1";

    public static void Write(string path, GanTrainer trainer, TrainOptions config, int completedEpochs, int stepInEpoch, EpochSums sums)
    {
        var meta = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["model"] = config.Model,
            ["channels"] = RunConfig.Str(config.Channels),
            ["completed_epochs"] = RunConfig.Str(completedEpochs),
            ["step_in_epoch"] = RunConfig.Str(stepInEpoch),
            ["train_step"] = RunConfig.Str(trainer.StepCount),
            ["epoch_sums"] = sums.Serialize(),
            ["config"] = config.ToJson(),
        };
        try
        {
            Safetensors.WriteFile(path, trainer.ExportState(), meta);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write the checkpoint", path);
        }
    }

    public static LoadedCheckpoint Read(string path)
    {
        byte[] bytes;
        try
        {
            var length = new FileInfo(path).Length;
            if (length > Safetensors.MaxFileBytes)
            {
                throw new UserError(
                    $"The checkpoint {path} is {length:N0} bytes, larger than any checkpoint this version reads ({Safetensors.MaxFileBytes:N0} bytes); it is not a checkpoint of a zoo model.");
            }

            bytes = File.ReadAllBytes(path);
        }
        catch (FileNotFoundException)
        {
            throw new UserError($"The checkpoint {path} does not exist.");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "read the checkpoint", path);
        }

        SafetensorsFile file;
        try
        {
            file = Safetensors.Read(bytes);
        }
        catch (SafetensorsException e)
        {
            throw new UserError(
                $"The checkpoint {path} cannot be read: it is {e.Message}. It was probably cut short (a full disk or a copy that did not finish); "
                + "delete it to fall back to the one before, or use another checkpoint.");
        }

        var m = file.Metadata;
        if (!m.TryGetValue("format", out var format) || format != Format || !m.TryGetValue("config", out var configJson))
        {
            throw new UserError(
                $"{path} is a safetensors file but not a Gan.Functional checkpoint (its metadata has no \"format\": \"{Format}\"), "
                + "so the model it belongs to is unknown.");
        }

        var config = RunConfig.FromJson(configJson, $"the configuration inside {path}");
        int completed, step, trainStep;
        EpochSums sums;
        try
        {
            completed = int.Parse(m["completed_epochs"], NumberStyles.None, CultureInfo.InvariantCulture);
            step = int.Parse(m["step_in_epoch"], NumberStyles.None, CultureInfo.InvariantCulture);
            trainStep = int.Parse(m["train_step"], NumberStyles.None, CultureInfo.InvariantCulture);
            sums = EpochSums.Parse(m["epoch_sums"]);
        }
        catch (Exception e) when (e is KeyNotFoundException or FormatException or OverflowException)
        {
            throw new UserError(
                $"The checkpoint {path} has damaged metadata: its position in the run (completed_epochs, step_in_epoch, train_step, epoch_sums) "
                + "is missing or not a whole number of at least 0. Delete it to fall back to the one before, or use another checkpoint.");
        }

        // a position the loop can reach: the steps of the epoch in progress are counted in its sums
        if (sums.Count != step || completed > RunConfig.MaxEpochs || (long)trainStep < completed + (long)step)
        {
            throw new UserError(
                $"The checkpoint {path} has damaged metadata: its position ({completed} epochs + {step} steps, step {trainStep} of the run, "
                + $"{sums.Count} steps summed) is not one a run reaches. Delete it to fall back to the one before, or use another checkpoint.");
        }

        return new LoadedCheckpoint(path, file.Tensors, config, completed, step, trainStep, sums);
    }

    /// <summary>Restores a trainer, with a clear error when the tensors do not fit the model.</summary>
    public static GanTrainer Restore(LoadedCheckpoint ckpt, TrainOptions config)
    {
        if (ckpt.Config.Model != config.Model || ckpt.Config.Channels != config.Channels)
        {
            throw new UserError(
                $"The checkpoint {ckpt.Path} belongs to model {ckpt.Config.Model} ({ckpt.Config.Channels} channel(s)), "
                + $"but this run trains {config.Model} ({config.Channels} channel(s)). Use a checkpoint of this run, or start a new run.");
        }

        // every setting that decides the weights, not only the model: a checkpoint continued with
        // another seed, learning rate or loss would give weights no uninterrupted run gives
        var changed = ckpt.Config.WeightDifferences(config)
            .Select(d => $"{d.Key} ({d.Flag}) {d.First} in the checkpoint, {d.Second} in the run's configuration")
            .ToList();
        if (changed.Count > 0)
        {
            throw new UserError(
                $"The checkpoint {ckpt.Path} was written with other settings than this run has: {string.Join("; ", changed)}. "
                + "Restore the run's config.json, or delete that checkpoint to fall back to the one before, or start a new run.");
        }

        try
        {
            return GanTrainer.Restore(config, ckpt.Tensors);
        }
        catch (Gan.Functional.Gan.Checkpoint.CheckpointMismatchException e)
        {
            throw new UserError(
                $"The checkpoint {ckpt.Path} does not fit model {config.Model}: {e.Data0}. It comes from another model or other settings; "
                + "use a checkpoint of this run, or start a new run.");
        }
    }
}
