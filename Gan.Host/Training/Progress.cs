using System.Diagnostics;
using System.Globalization;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace Gan.Host.Training;

/// <summary>Live numbers of the epoch in progress.</summary>
internal readonly record struct StepStats(int Step, int Steps, double ItPerSecond, double ImagesPerSecond, double D, double G, double Real, double Fake)
{
    public TimeSpan? Eta => ItPerSecond > 0 ? TimeSpan.FromSeconds((Steps - Step) / ItPerSecond) : null;

    /// <summary>"12/235 9.7 it/s 621 img/s D 1.324 G 0.692 D(x) 0.60 D(G(z)) 0.55".</summary>
    public string Compact() =>
        string.Create(CultureInfo.InvariantCulture, $"{Step}/{Steps} {ItPerSecond:0.0} it/s {ImagesPerSecond:0} img/s D {D:0.000} G {G:0.000} D(x) {Real:0.00} D(G(z)) {Fake:0.00}");

    public string Describe(int epoch, int epochs)
    {
        var c = CultureInfo.InvariantCulture;
        return string.Create(c, $"epoch {epoch}/{epochs}  step {Step}/{Steps}  {ItPerSecond:0.00} it/s  {ImagesPerSecond:0} img/s  D {D:0.0000}  G {G:0.0000}  D(x) {Real:0.000}  D(G(z)) {Fake:0.000}");
    }
}

/// <summary>Where training reports progress: a live Spectre.Console display on a terminal, plain lines otherwise.</summary>
internal abstract class ProgressSink
{
    /// <summary>Runs the training loop inside the display.</summary>
    public abstract T Run<T>(Func<T> body);

    public abstract void Line(string text);

    public abstract void StartEpoch(int epoch, int epochs, int steps, int firstStep);

    public abstract void Step(StepStats stats);

    public abstract void EndEpoch();
}

/// <summary>Plain lines, for logs and CI: one every 10 seconds within an epoch, one per epoch from the loop.</summary>
internal sealed class PlainProgress(TextWriter output) : ProgressSink
{
    private readonly Stopwatch sinceLine = new();
    private int epoch;
    private int epochs;

    public override T Run<T>(Func<T> body) => body();

    public override void Line(string text) => output.WriteLine(text);

    public override void StartEpoch(int epoch, int epochs, int steps, int firstStep)
    {
        this.epoch = epoch;
        this.epochs = epochs;
        sinceLine.Restart();
    }

    public override void Step(StepStats stats)
    {
        if (sinceLine.Elapsed.TotalSeconds >= 10 && stats.Step < stats.Steps)
        {
            var eta = stats.Eta is { } e ? $"  ETA {Format(e)}" : "";
            output.WriteLine(stats.Describe(epoch, epochs) + eta);
            sinceLine.Restart();
        }
    }

    public override void EndEpoch()
    {
    }

    public static string Format(TimeSpan t) => t.TotalHours >= 1
        ? t.ToString(@"h\:mm\:ss", CultureInfo.InvariantCulture)
        : t.ToString(@"m\:ss", CultureInfo.InvariantCulture);
}

/// <summary>A Spectre.Console progress bar per epoch: step, it/s, D and G loss, D(x), D(G(z)), ETA.</summary>
internal sealed class SpectreProgress(IAnsiConsole console) : ProgressSink
{
    private ProgressContext? context;
    private ProgressTask? task;
    private volatile string stats = "";

    /// <summary>The live numbers of the epoch in progress (set by <see cref="Step"/>).</summary>
    private sealed class StatsColumn(SpectreProgress owner) : ProgressColumn
    {
        public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
            new Text(task.IsFinished ? "" : owner.stats);
    }

    public override T Run<T>(Func<T> body)
    {
        T result = default!;
        var narrow = console.Profile.Width < 120;
        console.Progress()
            .AutoClear(false)
            .HideCompleted(true)
            .Columns(
                new TaskDescriptionColumn { Alignment = Justify.Left },
                new ProgressBarColumn { Width = narrow ? 8 : 30 },
                new StatsColumn(this),
                new RemainingTimeColumn(),
                new SpinnerColumn())
            .Start(ctx =>
            {
                context = ctx;
                result = body();
                task?.StopTask();
            });
        return result;
    }

    public override void Line(string text) => console.MarkupLine(Markup.Escape(text));

    public override void StartEpoch(int epoch, int epochs, int steps, int firstStep)
    {
        task = context?.AddTask($"epoch {epoch}/{epochs}", maxValue: steps);
        if (task is not null)
        {
            task.Value = firstStep;
            stats = $"{firstStep}/{steps}";
        }
    }

    public override void Step(StepStats stats)
    {
        if (task is null)
        {
            return;
        }

        task.Value = stats.Step;
        this.stats = stats.Compact();
    }

    public override void EndEpoch()
    {
        task?.StopTask();
    }
}
