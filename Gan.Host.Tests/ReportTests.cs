using System.Diagnostics;
using System.Text.RegularExpressions;

namespace Gan.Host.Tests;

/// <summary>Headless Chromium, when installed (Debian's `chromium` package).</summary>
internal static class Chromium
{
    public static readonly string? Path = Gan.Host.HostContext.FindOnPath(["chromium", "chromium-browser", "google-chrome"]);

    /// <summary>Renders <paramref name="html"/> to a screenshot; returns Chromium's console lines (errors, CSP violations, …).</summary>
    public static List<string> Render(string html, string screenshot, TempDir sandbox)
    {
        var psi = new ProcessStartInfo(Path!)
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var a in new[]
        {
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
            $"--user-data-dir={sandbox["chromium-profile"]}", $"--screenshot={screenshot}", "--window-size=1400,2400",
            "--enable-logging=stderr", "--v=0", new Uri(html).AbsoluteUri,
        })
        {
            psi.ArgumentList.Add(a);
        }

        using var p = Process.Start(psi)!;
        var err = p.StandardError.ReadToEndAsync();
        var output = p.StandardOutput.ReadToEndAsync();
        if (!p.WaitForExit(TimeSpan.FromSeconds(90)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException("chromium did not finish rendering within 90 s");
        }

        // Chromium logs a page's console messages as "…:INFO:CONSOLE:12] "text", source: …" (older: CONSOLE(12)).
        return err.Result.Split('\n').Concat(output.Result.Split('\n')).Where(l => Regex.IsMatch(l, @":CONSOLE[:(]")).ToList();
    }
}

/// <summary>A fact that needs Chromium: skipped, with the reason, where it is not installed.</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public ChromiumFactAttribute()
    {
        if (Chromium.Path is null)
        {
            Skip = "chromium is not installed (Debian: apt-get install chromium), so the report cannot be rendered headless here.";
        }
    }
}

/// <summary>`report`: the run's self-contained HTML page.</summary>
public class ReportTests
{
    /// <summary>The repository's TestResults/ folder, which CI archives.</summary>
    private static string TestResults()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gan.sln")))
        {
            dir = dir.Parent;
        }

        var path = Path.Combine(dir?.FullName ?? Path.GetTempPath(), "TestResults");
        Directory.CreateDirectory(path);
        return path;
    }

    private static string TinyRunWithMetrics(TempDir sandbox)
    {
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var run = sandbox["run"];
        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "2", "--eval-every", "1", "--eval-samples", "20"));
        Assert.True(r.Code == 0, r.Err + r.Out);
        return run;
    }

    [Fact]
    public void Report_is_one_self_contained_page_with_every_chart_and_every_epochs_samples()
    {
        using var sandbox = new TempDir();
        var run = TinyRunWithMetrics(sandbox);

        var r = Host.Run(sandbox, "report", "--run", run);

        Assert.True(r.Code == 0, r.Err + r.Out);
        var html = File.ReadAllText(Path.Combine(run, "report.html"));
        foreach (var title in new[] { "Loss per step", "Mean loss per epoch", "D(x) and D(G(z)) per step", "Mean D(x) and D(G(z)) per epoch", "inception_score", "fcd", "kid", "class_kl" })
        {
            Assert.Contains($"aria-label=\"{System.Net.WebUtility.HtmlEncode(title)}\"", html);
        }

        Assert.Equal(2, Regex.Matches(html, "<img alt=\"epoch \\d\" src=\"data:image/png;base64,").Count);
        // nothing to fetch: no URL, no script, and a policy that would block either
        Assert.DoesNotContain("http:", html);
        Assert.DoesNotContain("https:", html);
        Assert.DoesNotContain("src=\"//", html);
        Assert.DoesNotContain("<script", html);
        Assert.Contains("default-src 'none'; img-src data:", html);
    }

    [Fact]
    public void Report_writes_where_out_says_and_refuses_what_is_not_a_run()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["empty"]);

        var missing = Host.Run(sandbox, "report", "--run", sandbox["nope"]);
        var notRun = Host.Run(sandbox, "report", "--run", sandbox["empty"]);
        var noRun = Host.Run(sandbox, "report");

        Assert.Equal((1, $"The run directory {sandbox["nope"]} (--run) does not exist."), (missing.Code, missing.Error));
        Assert.Equal(1, notRun.Code);
        Assert.Contains("is not a run directory: it has neither config.json nor loss.csv", notRun.Error);
        Assert.Equal(2, noRun.Code);
        Assert.Contains("report needs --run DIR", noRun.Error);

        File.WriteAllText(sandbox["empty/loss.csv"], "epoch,Real_P,Fake_P,Gen_loss,Dis_loss\n1,0.6,0.4,0.9,1.2\n");
        var partial = Host.Run(sandbox, "report", "--run", sandbox["empty"], "--out", sandbox["r.html"]);
        Assert.True(partial.Code == 0, partial.Err);
        Assert.Contains("No metrics.csv", File.ReadAllText(sandbox["r.html"]));
    }

    [ChromiumFact]
    public void Report_renders_in_headless_chromium_without_console_errors_and_leaves_a_screenshot()
    {
        using var sandbox = new TempDir();
        var run = TinyRunWithMetrics(sandbox);
        Assert.Equal(0, Host.Run(sandbox, "report", "--run", run).Code);
        var screenshot = Path.Combine(TestResults(), "report-screenshot.png");
        File.Delete(screenshot);

        var console = Chromium.Render(Path.Combine(run, "report.html"), screenshot, sandbox);

        Assert.Empty(console);
        var png = Gan.Host.Io.ImageCodec.Read(screenshot);
        Assert.Equal((1400, 2400), (png.Width, png.Height));
        // not a blank page: the charts and samples put plenty of non-white pixels on it
        var dark = 0;
        for (var i = 0; i < png.Pixels.Length; i += png.Channels)
        {
            dark += png.Pixels[i] < 128 ? 1 : 0;
        }

        Assert.True(dark > 10_000, $"only {dark} dark pixels");
    }

    [ChromiumFact]
    public void The_console_check_catches_a_page_that_reaches_for_the_network()
    {
        using var sandbox = new TempDir();
        var page = sandbox["bad.html"];
        File.WriteAllText(page, "<!doctype html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\"></head>"
            + "<body><img src=\"https://example.invalid/x.png\"></body></html>");

        var console = Chromium.Render(page, sandbox["bad.png"], sandbox);

        Assert.Contains(console, l => l.Contains("Content Security Policy", StringComparison.Ordinal));
    }
}
