using System.Globalization;
using Gan.Functional.CSharp;

namespace Gan.Host.Commands;

/// <summary>`models` and `devices`.</summary>
internal static class InfoCommands
{
    /// <summary>One line per zoo model: name, G and D parameter counts, output shape, then a summary.</summary>
    public static int Models(int channels, HostContext ctx)
    {
        var c = CultureInfo.InvariantCulture;
        foreach (var m in Engine.Models(channels))
        {
            var shape = string.Join("x", m.ImageShape);
            ctx.Out.WriteLine(string.Create(c,
                $"{m.Name,-8} G {m.GeneratorParameters,10:N0}  D {m.DiscriminatorParameters,10:N0}  output {shape,-8}  z {m.NoiseDim,-3}  batch {m.DefaultBatchSize,-3}  epochs {m.DefaultEpochs,-3} (quick look {m.QuickEpochs,2})  {m.Summary}"));
        }

        return ExitCodes.Ok;
    }

    /// <summary>What can run here: the CPU with its cores and kernels; GPUs: none, and why.</summary>
    public static int Devices(int threads, HostContext ctx)
    {
        var kernels = Engine.ConfigureCpu(threads);
        var cores = Environment.ProcessorCount;
        ctx.Out.WriteLine($"cpu   available  {cores} core(s) usable by this process; {kernels}");
        var gpuHint = File.Exists("/dev/nvidia0") || Directory.Exists("/dev/dri")
            ? " (a GPU device node exists on this machine, but nothing here can drive it)"
            : "";
        ctx.Out.WriteLine($"gpu   none       Gan.Functional's tensor engine has CPU kernels only (managed code and BLAS); there is no CUDA, ROCm or Metal backend{gpuHint}");
        var world = ctx.World;
        if (world.Mpi is { } mpi)
        {
            var hosts = world.HostNames();
            var ranks = string.Join(", ", hosts.Select((h, r) => $"rank {r} on {h}"));
            ctx.Out.WriteLine($"mpi   world      {world.Size} rank(s) (Open MPI, libmpi.so.40): {ranks}; train and bench split each batch over them");
        }
        else
        {
            ctx.Out.WriteLine("mpi   not started  run under mpirun (Open MPI) to train data-parallel over processes and machines (docs/distributed.md)");
        }

        ctx.Out.WriteLine($"--device accepts: {string.Join(", ", Zoo.Devices)} (auto = cpu)");
        return ExitCodes.Ok;
    }
}
