using Gan.Host;
using Gan.Host.Distributed;
using Spectre.Console;

using var cancel = new CancellationTokenSource();

// under mpirun (or srun with PMIx) this process is one rank of an MPI job; alone, MPI is not started
using var world = new World(Mpi.StartIfLaunched());
var interactive = world.IsRoot
    && !Console.IsOutputRedirected
    && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"))
    && Environment.GetEnvironmentVariable("TERM") != "dumb"
    && AnsiConsole.Profile.Capabilities.Interactive;
var ctx = new HostContext
{
    // only rank 0 talks; the others report errors only
    Out = world.IsRoot ? Console.Out : TextWriter.Null,
    Err = Console.Error,
    Interactive = interactive,
    Cancel = cancel.Token,
    World = world,
};

// Ctrl-C during training: finish the step, save a checkpoint, exit 130. A second Ctrl-C, or one
// outside training, ends the process at once (every file is written atomically, so nothing is left half-written).
Console.CancelKeyPress += (_, e) =>
{
    if (ctx.TrainingActive && !cancel.IsCancellationRequested)
    {
        e.Cancel = true;
        cancel.Cancel();
        Console.Error.WriteLine("Ctrl-C: saving a checkpoint after this step (press again to quit at once) …");
    }
};

return App.Run(args, ctx);
