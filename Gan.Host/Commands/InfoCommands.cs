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

    /// <summary>
    /// What can run here: the CPU backend with its cores and kernels, then the devices ILGPU finds
    /// (CUDA, OpenCL, its CPU accelerator), with the reason where there is no CUDA device.
    /// </summary>
    public static int Devices(int threads, HostContext ctx)
    {
        var kernels = Engine.ConfigureCpu(threads);
        var cores = Environment.ProcessorCount;
        ctx.Out.WriteLine($"{"cpu",-10} available  {cores} core(s) usable by this process; {kernels}");
        DeviceDescription[] devices;
        try
        {
            devices = Engine.Devices();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // ILGPU itself failed to start: the CPU backend still works
            ctx.Out.WriteLine($"{"ilgpu",-10} failed     ILGPU could not list the devices ({e.GetType().Name}: {e.Message.TrimEnd('.')}); only cpu is usable");
            devices = [];
        }

        foreach (var d in devices)
        {
            ctx.Out.WriteLine($"{d.Spec,-10} available  {d.Summary}");
        }

        if (!devices.Any(d => d.Kind == "cuda"))
        {
            ctx.Out.WriteLine($"{"cuda",-10} none       {Engine.NoCudaReason}");
        }

        if (!devices.Any(d => d.Kind == "opencl"))
        {
            ctx.Out.WriteLine($"{"opencl",-10} none       ILGPU found no OpenCL platform with a device (an OpenCL driver, its ICD and libOpenCL.so.1 are needed)");
        }

        ctx.Out.WriteLine($"{"cublas",-10} {Engine.CuBlasState,-10} {Engine.CuBlasSummary}");

        var world = ctx.World;
        if (world.Mpi is { } mpi)
        {
            var hosts = world.HostNames();
            var ranks = string.Join(", ", hosts.Select((h, r) => $"rank {r} on {h}"));
            ctx.Out.WriteLine($"{"mpi",-10} world      {world.Size} rank(s) (Open MPI, libmpi.so.40): {ranks}; train and bench split each batch over them");
        }
        else
        {
            ctx.Out.WriteLine($"{"mpi",-10} not started  run under mpirun (Open MPI) to train data-parallel over processes and machines (docs/distributed.md)");
        }

        var auto = devices.Any(d => d.Kind == "cuda")
            ? "auto = the first CUDA device that opens and runs a test kernel, else cpu"
            : "auto = cpu here";
        ctx.Out.WriteLine($"--device accepts: {string.Join(", ", Zoo.Devices)} ({auto})");
        return ExitCodes.Ok;
    }
}
