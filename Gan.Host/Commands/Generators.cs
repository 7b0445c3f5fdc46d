using Gan.Functional.CSharp;
using Gan.Host.Training;

namespace Gan.Host.Commands;

/// <summary>A generator restored from a checkpoint, for the commands that draw from one.</summary>
internal sealed record LoadedGenerator(GanTrainer Trainer, LoadedCheckpoint Checkpoint)
{
    public ModelInfo Info => Trainer.Model;

    /// <summary>True when the model draws images (C × H × W), not 2-D points.</summary>
    public bool MakesImages => Info.ImageShape.Length == 3;

    /// <summary>
    /// The checkpoint given by --checkpoint (with --run, a bare name is looked for in the run's
    /// checkpoints/ too), else the newest of --run; its trainer restored.
    /// </summary>
    public static LoadedGenerator Load(string? run, string? checkpoint, HostContext ctx)
    {
        var path = checkpoint is null ? NewestCheckpoint(run!, ctx) : ctx.Resolve(checkpoint);
        if (checkpoint is not null && run is not null && !File.Exists(path))
        {
            var inRun = Path.Combine(new RunDirectory(ctx.Resolve(run)).CheckpointsDir, checkpoint);
            path = File.Exists(inRun) ? inRun : path;
        }

        var ckpt = CheckpointFile.Read(path);
        return new LoadedGenerator(CheckpointFile.Restore(ckpt, ckpt.Config), ckpt);
    }

    public static string NewestCheckpoint(string runDir, HostContext ctx)
    {
        var run = new RunDirectory(ctx.Resolve(runDir));
        if (!Directory.Exists(run.Root))
        {
            throw new UserError($"The run directory {run.Root} (--run) does not exist.");
        }

        var all = run.Checkpoints();
        return all.Count > 0
            ? all[^1].Path
            : throw new UserError($"The run {run.Root} has no checkpoint yet (checkpoints/ is empty); train it first, or pass --checkpoint FILE.");
    }

    /// <summary>"(12 epochs, EMA weights)" for messages.</summary>
    public string Describe(bool useEma)
    {
        var ema = useEma && Checkpoint.Config.EmaDecay > 0 ? ", EMA weights" : "";
        return $"{Info.Name} from {Checkpoint.Path} ({Checkpoint.CompletedEpochs} epochs + {Checkpoint.StepInEpoch} steps{ema})";
    }
}
