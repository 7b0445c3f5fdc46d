using Gan.Functional.CSharp;
using Gan.Host.Cli;
using Gan.Host.Io;
using Gan.Host.Training;

namespace Gan.Host.Commands;

/// <summary>`sample`: a PNG grid of generated images from a run's newest checkpoint or a given checkpoint.</summary>
internal static class SampleCommand
{
    public static int Run(SampleRequest req, HostContext ctx)
    {
        string path;
        if (req.Run is { } r)
        {
            var run = new RunDirectory(ctx.Resolve(r));
            if (!Directory.Exists(run.Root))
            {
                throw new UserError($"The run directory {run.Root} (--run) does not exist.");
            }

            var all = run.Checkpoints();
            path = all.Count > 0
                ? all[^1].Path
                : throw new UserError($"The run {run.Root} has no checkpoint yet (checkpoints/ is empty); train it first, or pass --checkpoint FILE.");
        }
        else
        {
            path = ctx.Resolve(req.Checkpoint!);
        }

        var outPath = ctx.Resolve(req.Out);
        if (!outPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
        {
            throw new UserError($"--out {req.Out} must name a .png file: sample writes PNG.", ExitCodes.Usage);
        }

        var kernels = DeviceSelection.Use(req.Device, req.Threads, ctx);
        ctx.DeviceWork = $"generating {req.Count} samples";
        var ckpt = CheckpointFile.Read(path);
        var trainer = CheckpointFile.Restore(ckpt, ckpt.Config);
        var info = trainer.Model;
        var z = trainer.Noise(req.Count, req.Seed);
        var images = trainer.Generate(z, req.Count, req.UseEma);
        var grid = info.ImageShape.Length == 1
            ? Scatter.Plot(images, req.Count, Mixture.Means(ckpt.Config.Dataset))
            : Grid.Make(images, req.Count, info.ImageShape[0], info.ImageShape[1], info.ImageShape[2], info.OutputsZeroToOne);
        try
        {
            AtomicFile.WriteAllBytes(outPath, ImageCodec.EncodePng(grid));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", outPath);
        }

        var ema = req.UseEma && ckpt.Config.EmaDecay > 0 ? ", EMA weights" : "";
        ctx.Info(kernels);
        ctx.Info($"wrote {outPath}: {req.Count} {info.Name} samples (seed {req.Seed}{ema}) from {path} ({ckpt.CompletedEpochs} epochs + {ckpt.StepInEpoch} steps)");
        return ExitCodes.Ok;
    }
}
