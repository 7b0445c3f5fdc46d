using System.Diagnostics;
using System.Globalization;
using Xunit.Abstractions;

namespace Gan.Host.Tests;

/// <summary>
/// kill -9 anywhere (issue 15): a small run is killed with SIGKILL many times, at random moments
/// (start-up, the first epoch before any checkpoint, later epochs) and at named points inside
/// atomic writes (a checkpoint's temporary file complete but not renamed; renamed but the directory
/// not yet flushed and old checkpoints not yet pruned), resumed after each kill (or started afresh
/// when there is no run yet), and must end bit-identical to an uninterrupted run.
/// </summary>
public class CrashTests(ITestOutputHelper output)
{
    private const int Epochs = 32;

    private static readonly string[] Settings =
    [
        "--dataset", "ring8", "--train-size", "1000", "--epochs", Epochs.ToString(CultureInfo.InvariantCulture), "--checkpoint-every", "1", "--keep-checkpoints", "2",
        "--eval-every", "2", "--eval-samples", "200", "--threads", "1", "--seed", "11",
    ];

    private static string DotnetHost() =>
        Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";

    /// <summary>Starts Gan.Host as a child process in <paramref name="dir"/>.</summary>
    private static Process Start(TempDir sandbox, string? crashAt, IEnumerable<string> args) => Start(sandbox, crashAt, args, new System.Text.StringBuilder());

    private static Process Start(TempDir sandbox, string? crashAt, IEnumerable<string> args, System.Text.StringBuilder errors, Action<string>? line = null)
    {
        var psi = new ProcessStartInfo(DotnetHost())
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = sandbox.Path,
        };
        psi.ArgumentList.Add(typeof(App).Assembly.Location);
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment["CI"] = "true";
        psi.Environment["XDG_CACHE_HOME"] = sandbox["cache"];
        if (crashAt is not null)
        {
            psi.Environment["GAN_HOST_CRASH_AT"] = crashAt;
        }

        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) =>
        {
            if (e.Data is { } l)
            {
                line?.Invoke(l);
            }
        };
        p.ErrorDataReceived += (_, e) =>
        {
            lock (errors)
            {
                errors.AppendLine(e.Data);
            }
        };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        return p;
    }

    private static string[] StepsWithoutSeconds(string run) =>
        File.ReadAllLines(Path.Combine(run, "steps.csv")).Select(l => string.Join(",", l.Split(',')[..^1])).ToArray();

    private static string[] Names(string dir) =>
        Directory.GetFiles(dir).Select(f => Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray();

    [Fact]
    public void A_run_killed_with_SIGKILL_many_times_and_resumed_ends_bit_identical_to_an_uninterrupted_one()
    {
        using var sandbox = new TempDir();
        var straight = sandbox["straight"];
        var crashed = sandbox["crashed"];
        var watch = Stopwatch.StartNew();

        var firstEpoch = TimeSpan.Zero;
        using (var reference = Start(sandbox, null, ["train", .. Settings, "--out", straight], new System.Text.StringBuilder(), l =>
        {
            if (l.StartsWith("epoch 1/", StringComparison.Ordinal))
            {
                firstEpoch = watch.Elapsed;
            }
        }))
        {
            reference.WaitForExit();
            Assert.Equal(0, reference.ExitCode);
        }

        // The plan. Kills at named points land where they must however slow or busy the machine is:
        // inside atomic writes (GAN_HOST_CRASH_AT=before-rename.EXT:N / after-rename.EXT:N, the N-th
        // such write of the process) and after the N-th training step of the process (step:N). Kills
        // at random times come from outside (SIGKILL after a random delay from the start, or from the
        // run's j-th epoch line); on a busy machine they land later than aimed, so the test counts
        // on the named ones and reports the random ones.
        var full = watch.Elapsed;
        var epochMs = (full - firstEpoch).TotalMilliseconds / (Epochs - 1);
        var rng = new Random(15);
        var plan = new Queue<string?>(
        [
            "before-rename.json:1", // before config.json exists: the next start is a fresh one
            "step:3", // in the first epoch, no checkpoint yet
            null, // at a random time, no checkpoint yet
            "step:7",
            "before-rename.safetensors:1", // the first checkpoint's temporary file complete, not renamed
            "after-rename.safetensors:1", // renamed, the directory not flushed, nothing pruned
            "before-rename.safetensors:2",
            "after-rename.safetensors:2",
            "after-rename.json:1",
            "before-rename.png:1",
            "after-rename.csv:1", // a log repaired on resume
        ]);
        for (var i = 0; i < 8; i++)
        {
            // anywhere in the next 2½ epochs (10 steps each), next to a checkpoint or not; short enough
            // that the planned kills cannot carry the run to its end before the last of them
            plan.Enqueue($"step:{rng.Next(1, 26)}");
        }

        for (var i = 0; i < 4; i++)
        {
            plan.Enqueue(null);
        }

        int killed = 0, randomKills = 0, beforeCheckpoint = 0, beforeConfig = 0, attempts = 0;
        var done = false;
        while (!done && plan.Count > 0)
        {
            attempts++;
            var crashAt = plan.Dequeue();
            var early = attempts == 3 || rng.Next(4) == 0;
            var j = rng.Next(3);
            var delay = TimeSpan.FromMilliseconds(early ? rng.NextDouble() * 1500 : rng.NextDouble() * epochMs);
            var hasConfig = File.Exists(Path.Combine(crashed, "config.json"));
            var checkpoints = Directory.Exists(Path.Combine(crashed, "checkpoints")) ? Names(Path.Combine(crashed, "checkpoints")).Count(n => n.EndsWith(".safetensors", StringComparison.Ordinal)) : 0;
            string[] args = hasConfig ? ["train", "--resume", "--out", crashed] : ["train", .. Settings, "--out", crashed];
            var errors = new System.Text.StringBuilder();
            using var reached = new ManualResetEventSlim(early);
            var epochsSeen = 0;
            using var p = Start(sandbox, crashAt, args, errors, l =>
            {
                if (l.StartsWith("run directory:", StringComparison.Ordinal) && j == 0)
                {
                    reached.Set();
                }
                else if (l.StartsWith("epoch ", StringComparison.Ordinal) && Interlocked.Increment(ref epochsSeen) == j)
                {
                    reached.Set();
                }
            });
            if (crashAt is null)
            {
                while (!reached.Wait(50) && !p.HasExited)
                {
                }

                if (!p.WaitForExit(delay))
                {
                    p.Kill();
                }
            }

            p.WaitForExit();
            Assert.True(p.ExitCode is 0 or 128 + 9, $"a run failed with exit {p.ExitCode} ({crashAt ?? delay.ToString()}), not 0 or 137 (SIGKILL): {errors}");
            var wasKilled = p.ExitCode != 0;
            killed += wasKilled ? 1 : 0;
            randomKills += wasKilled && crashAt is null ? 1 : 0;
            beforeCheckpoint += wasKilled && checkpoints == 0 ? 1 : 0;
            beforeConfig += wasKilled && !hasConfig ? 1 : 0;
            done = !wasKilled;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{crashAt ?? (early ? $"kill {delay.TotalMilliseconds:0} ms after start" : $"kill {delay.TotalMilliseconds:0} ms after epoch line {j}"),-36} {(hasConfig ? "resume" : "fresh "),-6} with {checkpoints} checkpoint(s): exit {p.ExitCode}"));
        }

        using (var last = Start(sandbox, null, File.Exists(Path.Combine(crashed, "config.json")) ? ["train", "--resume", "--out", crashed] : ["train", .. Settings, "--out", crashed]))
        {
            last.WaitForExit();
            Assert.Equal(0, last.ExitCode);
        }

        output.WriteLine($"{killed} kills ({randomKills} at random times, {beforeCheckpoint} before any checkpoint, {beforeConfig} before config.json) in {attempts} starts; uninterrupted run {full.TotalSeconds:0.0} s (first epoch done at {firstEpoch.TotalSeconds:0.0} s), whole test {watch.Elapsed.TotalSeconds:0} s");
        Assert.True(killed >= 20, $"only {killed} kills before the run was complete");
        Assert.True(done || killed == attempts, "a start neither ended nor was killed");
        Assert.True(beforeCheckpoint >= 3, "fewer than three kills landed before the first checkpoint");
        Assert.True(beforeConfig >= 1, "no kill landed before config.json was written");

        // weights, logs and sample grids: bit for bit
        Assert.Equal(Names(Path.Combine(straight, "checkpoints")), Names(Path.Combine(crashed, "checkpoints")));
        foreach (var name in Names(Path.Combine(straight, "checkpoints")))
        {
            Assert.True(File.ReadAllBytes(Path.Combine(straight, "checkpoints", name)).SequenceEqual(File.ReadAllBytes(Path.Combine(crashed, "checkpoints", name))), $"{name} differs");
        }

        Assert.Equal(File.ReadAllText(Path.Combine(straight, "loss.csv")), File.ReadAllText(Path.Combine(crashed, "loss.csv")));
        Assert.Equal(File.ReadAllText(Path.Combine(straight, "metrics.csv")), File.ReadAllText(Path.Combine(crashed, "metrics.csv")));
        Assert.Equal(StepsWithoutSeconds(straight), StepsWithoutSeconds(crashed));
        Assert.Equal(Names(Path.Combine(straight, "samples")), Names(Path.Combine(crashed, "samples")));
        foreach (var name in Names(Path.Combine(straight, "samples")))
        {
            Assert.True(File.ReadAllBytes(Path.Combine(straight, "samples", name)).SequenceEqual(File.ReadAllBytes(Path.Combine(crashed, "samples", name))), $"{name} differs");
        }

        Assert.Empty(Directory.GetFiles(crashed, "*.tmp-*", SearchOption.AllDirectories));
        Assert.False(File.Exists(Path.Combine(crashed, "run.lock")));
    }

    [Fact]
    public void A_run_directory_written_by_another_process_is_refused_naming_it_and_that_run_finishes()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        using var started = new ManualResetEventSlim();
        var errors = new System.Text.StringBuilder();
        using var first = Start(sandbox, null, ["train", .. Settings, "--out", run], errors, l =>
        {
            if (l.StartsWith("epoch 1/", StringComparison.Ordinal))
            {
                started.Set();
            }
        });
        Assert.True(started.Wait(TimeSpan.FromMinutes(2)), $"the first run did not start: {errors}");

        var resume = Host.Run(sandbox, "train", "--resume", "--out", run);
        var fresh = Host.Run(sandbox, ["train", .. Settings, "--out", run]);
        var stillRunning = !first.HasExited;
        first.WaitForExit();

        output.WriteLine(resume.Err);
        Assert.True(stillRunning, "the first run ended before the second was tried; the test proves nothing");
        Assert.Equal(1, resume.Code);
        Assert.Contains($"The run directory {run} is in use by process {first.Id} on {Environment.MachineName}", resume.Err);
        Assert.Contains($"stop it (kill {first.Id})", resume.Err);
        Assert.Equal(1, fresh.Code);
        Assert.Contains($"is in use by process {first.Id}", fresh.Err);
        Assert.True(first.ExitCode == 0, errors.ToString());
        Assert.Equal(Epochs + 1, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length);
        Assert.False(File.Exists(Path.Combine(run, "run.lock")));
    }
}
