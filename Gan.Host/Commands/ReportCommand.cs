using Gan.Host.Cli;
using Gan.Host.Io;
using Gan.Host.Report;
using Gan.Host.Training;

namespace Gan.Host.Commands;

/// <summary>`report`: writes the run's self-contained HTML page.</summary>
internal static class ReportCommand
{
    public static int Run(ReportRequest req, HostContext ctx)
    {
        var run = new RunDirectory(ctx.Resolve(req.Run));
        if (!Directory.Exists(run.Root))
        {
            throw new UserError($"The run directory {run.Root} (--run) does not exist.");
        }

        if (!run.HasConfig && !File.Exists(run.LossCsv))
        {
            throw new UserError($"{run.Root} (--run) is not a run directory: it has neither config.json nor loss.csv. Point --run at a directory made by train.");
        }

        var outPath = req.Out is { } o ? ctx.Resolve(o) : Path.Combine(run.Root, "report.html");
        if (Directory.Exists(outPath))
        {
            throw new UserError($"--out {outPath} is a directory; give a file name for the report, e.g. report.html.", ExitCodes.Usage);
        }

        string html;
        try
        {
            html = ReportPage.Build(run);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new UserError($"{run.ConfigPath} is not valid JSON ({e.Message.TrimEnd('.')}); restore it or delete it to report the logs alone.");
        }

        try
        {
            AtomicFile.WriteAllText(outPath, html);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", outPath);
        }

        ctx.Info($"wrote {outPath} ({html.Length / 1024:N0} KiB, self-contained: open it in any browser, offline)");
        return ExitCodes.Ok;
    }

    /// <summary>
    /// Writes <c>report.html</c> at the end of a training run and returns its path; a report that
    /// cannot be written is a warning there (the run itself is saved), not a failure.
    /// </summary>
    public static string? TryWrite(RunDirectory run, HostContext ctx)
    {
        var path = Path.Combine(run.Root, "report.html");
        try
        {
            AtomicFile.WriteAllText(path, ReportPage.Build(run));
            return path;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Text.Json.JsonException)
        {
            ctx.Info($"warning: could not write {path} ({e.Message.TrimEnd('.')}); `report --run {run.Root}` tries again.");
            return null;
        }
    }
}
