using Gan.Host;
using Spectre.Console;

using var cancel = new CancellationTokenSource();
var interactive = !Console.IsOutputRedirected
    && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("CI"))
    && Environment.GetEnvironmentVariable("TERM") != "dumb"
    && AnsiConsole.Profile.Capabilities.Interactive;
var ctx = new HostContext
{
    Out = Console.Out,
    Err = Console.Error,
    Interactive = interactive,
    Cancel = cancel.Token,
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
