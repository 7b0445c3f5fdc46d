using Gan.Functional;
using Gan.Functional.CSharp;

namespace Gan.Host.Commands;

/// <summary>
/// --device: selects where the engine's kernels run (and where new tensors live) through the
/// library's <see cref="Engine.UseDevice(string, int)"/>; a device that is not here is a usage error
/// naming those that are.
/// </summary>
internal static class DeviceSelection
{
    /// <summary>Selects <paramref name="spec"/> with <paramref name="threads"/> CPU threads; returns the line saying what runs where.</summary>
    public static string Use(string spec, int threads, HostContext ctx)
    {
        ctx.Device = spec;
        if (ctx.World.Distributed)
        {
            // the ranks exchange host buffers; a device per rank is not built yet
            if (spec is not ("auto" or "cpu"))
            {
                throw new UserError(
                    $"--device {spec}: under mpirun every rank trains on the CPU backend (devices per rank are not supported yet); drop --device or give --device cpu.",
                    ExitCodes.Usage);
            }

            return Engine.ConfigureCpu(threads);
        }

        try
        {
            return Engine.UseDevice(spec, threads);
        }
        catch (DeviceUnavailableException e)
        {
            throw new UserError(e.Message, ExitCodes.Usage);
        }
    }

    /// <summary>
    /// The paragraph for a device that ran out of memory: the device (as --device named it and by
    /// its own name), its free memory, the request that failed and what the command was doing
    /// (the model and batch size), with what to change.
    /// </summary>
    public static string OutOfMemory(DeviceOutOfMemoryException e, HostContext ctx)
    {
        var free = e.FreeBytes < 0 ? "its free memory unknown" : $"{DeviceOutOfMemoryException.Show(e.FreeBytes)} free";
        var work = ctx.DeviceWork.Length > 0 ? $" while {ctx.DeviceWork}" : "";
        return $"The device ran out of memory{work}: --device {ctx.Device} is {e.DeviceName}, which could not allocate "
            + $"{DeviceOutOfMemoryException.Show(e.RequestedBytes)} ({free}). Use a smaller --batch-size (or fewer samples), "
            + "free the device of other processes (nvidia-smi lists them), or train with --device cpu.";
    }
}
