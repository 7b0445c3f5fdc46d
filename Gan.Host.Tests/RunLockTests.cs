using System.Diagnostics;
using System.Text.Json.Nodes;
using Gan.Host.Io;
using Xunit.Abstractions;

namespace Gan.Host.Tests;

/// <summary>One writer per run directory, validated resume and log repair (issue 15).</summary>
public class RunLockTests(ITestOutputHelper output)
{
    private static void AssertRefused(HostRun r, int code, params string[] parts)
    {
        Assert.True(r.Code == code, $"exit {r.Code}, expected {code}: {r.Err}{r.Out}");
        Assert.StartsWith("error: ", r.Err);
        Assert.DoesNotContain("Internal error", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        foreach (var p in parts)
        {
            Assert.Contains(p, r.Error);
        }
    }

    /// <summary>The id of a process that has ended (so no live process has it, barring reuse in the moment).</summary>
    private static int DeadPid()
    {
        using var p = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        p.WaitForExit();
        return p.Id;
    }

    private static string Snapshot(string run) => string.Join("\n", Directory.GetFiles(run, "*", SearchOption.AllDirectories)
        .Order(StringComparer.Ordinal)
        .Select(f => $"{Path.GetRelativePath(run, f)} {Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))}"));

    [Fact]
    public async Task A_second_train_on_a_run_in_use_is_refused_naming_the_process_and_the_first_finishes()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        var args = Host.TinyTrain(sandbox, run, "--epochs", "2", "--checkpoint-every", "1");
        using var paused = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var first = Task.Run(() => Host.Run(sandbox, step =>
        {
            if (step == 5)
            {
                paused.Set();
                release.Wait();
            }
        }, CancellationToken.None, args));
        Assert.True(paused.Wait(TimeSpan.FromMinutes(2)), "the first run never reached step 5");

        var resume = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "3");
        var fresh = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1"));
        release.Set();
        var done = await first;

        output.WriteLine(resume.Err);
        AssertRefused(resume, 1, $"The run directory {run} is in use by process {Environment.ProcessId} on {Environment.MachineName}", "run.lock");
        AssertRefused(fresh, 1, $"is in use by process {Environment.ProcessId}");
        Assert.True(done.Code == 0, done.Err);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length);
        Assert.False(File.Exists(Path.Combine(run, "run.lock")), "the lock outlived its run");
    }

    [Fact]
    public void A_lock_left_by_a_killed_process_is_taken_over_with_a_message()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var dead = DeadPid();
        File.WriteAllText(Path.Combine(run, "run.lock"), $"pid={dead}\nhost={Environment.MachineName}\nstarted=2026-01-01T00:00:00.0000000Z\nprocess_start=123\n");

        var r = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2");

        Assert.True(r.Code == 0, r.Err);
        output.WriteLine(r.Out.Split('\n')[0]);
        Assert.Contains($"Taking over the lock of the run directory {run} from process {dead} on {Environment.MachineName}", r.Out);
        Assert.Contains("which is no longer running", r.Out);
        Assert.False(File.Exists(Path.Combine(run, "run.lock")));
    }

    [Fact]
    public void A_lock_from_another_host_is_not_taken_over()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        File.WriteAllText(Path.Combine(run, "run.lock"), "pid=4242\nhost=other-machine\nstarted=2026-01-01T00:00:00.0000000Z\nprocess_start=9\n");

        var r = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2");

        output.WriteLine(r.Err);
        AssertRefused(r, 1, "is in use by process 4242 on other-machine", "If no process on other-machine uses it any more, delete");
    }

    [Fact]
    public void Only_temporary_files_of_processes_that_are_gone_are_removed()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        using var alive = Process.Start(new ProcessStartInfo("sleep", "60") { UseShellExecute = false })!;
        try
        {
            var deadTemp = Path.Combine(run, "checkpoints", $"epoch-0002.safetensors{AtomicFile.TempMarker}{DeadPid()}-0123");
            var liveTemp = Path.Combine(run, "checkpoints", $"epoch-0002.safetensors{AtomicFile.TempMarker}{alive.Id}-4567");
            File.WriteAllText(deadTemp, "half a checkpoint");
            File.WriteAllText(liveTemp, "another process's checkpoint in progress");

            Assert.Equal(0, Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2").Code);

            Assert.False(File.Exists(deadTemp));
            Assert.True(File.Exists(liveTemp));
        }
        finally
        {
            alive.Kill();
            alive.WaitForExit();
        }
    }

    [Fact]
    public void A_directory_left_with_only_a_stale_lock_and_temporary_files_takes_a_new_run()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Directory.CreateDirectory(run);
        File.WriteAllText(Path.Combine(run, "run.lock"), $"pid={DeadPid()}\nhost={Environment.MachineName}\nstarted=2026-01-01T00:00:00.0000000Z\nprocess_start=1\n");
        File.WriteAllText(Path.Combine(run, $"config.json{AtomicFile.TempMarker}{DeadPid()}-ab"), "{");

        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1"));

        Assert.True(r.Code == 0, r.Err);
        Assert.Empty(Directory.GetFiles(run, "*.tmp-*"));
    }

    [Fact]
    public void A_partial_last_log_row_left_by_a_crash_is_dropped_on_resume()
    {
        using var sandbox = new TempDir();
        var straight = sandbox["straight"];
        var crashed = sandbox["crashed"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, straight, "--epochs", "2")).Code);
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, crashed, "--epochs", "1")).Code);
        // a crash in the middle of appending a row: "5" is a prefix of step 5's row, which a
        // numeric filter alone would keep as a row of step 5
        File.AppendAllText(Path.Combine(crashed, "steps.csv"), "5");
        File.AppendAllText(Path.Combine(crashed, "loss.csv"), "2,0.4");

        var r = Host.Run(sandbox, "train", "--resume", "--out", crashed, "--epochs", "2");

        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(File.ReadAllText(Path.Combine(straight, "loss.csv")), File.ReadAllText(Path.Combine(crashed, "loss.csv")));
        Assert.Equal(
            File.ReadAllLines(Path.Combine(straight, "steps.csv")).Select(l => string.Join(",", l.Split(',')[..^1])),
            File.ReadAllLines(Path.Combine(crashed, "steps.csv")).Select(l => string.Join(",", l.Split(',')[..^1])));
    }

    [Theory]
    [InlineData("keepCheckpoints", "0", 1, "keepCheckpoints (--keep-checkpoints) must be between 1 and 1000 (got 0)")]
    [InlineData("checkpointEvery", "0", 1, "checkpointEvery (--checkpoint-every) must be at least 1 (got 0)")]
    [InlineData("sampleCount", "0", 1, "sampleCount must be between 1 and 100,000 (got 0)")]
    [InlineData("dataDir", "null", 1, "dataDir is null")]
    [InlineData("batchSize", "100000000", 1, "batchSize (--batch-size) must be between 1 and 65536 (got 100000000)")]
    [InlineData("seed", "8", 1, "seed (--seed) 7 in the checkpoint, 8 in the run's configuration")]
    [InlineData("learningRate", "0.001", 1, "learningRate (--lr) 0.0002 in the checkpoint, 0.001 in the run's configuration")]
    [InlineData("loss", "\"hinge\"", 1, "loss (--loss) bce in the checkpoint, hinge in the run's configuration")]
    [InlineData("gpWeight", "10", 1, "gpWeight (--gp-weight) 0 in the checkpoint, 10 in the run's configuration")]
    public void A_bad_or_changed_config_json_is_refused_on_resume_and_nothing_is_rewritten(string setting, string value, int code, string expected)
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var configPath = Path.Combine(run, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config[setting] = JsonNode.Parse(value);
        File.WriteAllText(configPath, config.ToJsonString());
        File.AppendAllText(Path.Combine(run, "steps.csv"), "99");
        var before = Snapshot(run);

        var r = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2");

        output.WriteLine(r.Err);
        AssertRefused(r, code, expected);
        Assert.Equal(before, Snapshot(run));
    }

    [Theory]
    [InlineData("completed_epochs", "-1", "is missing or not a whole number of at least 0")]
    [InlineData("step_in_epoch", "2", "is not one a run reaches")]
    [InlineData("train_step", "99999999999", "is missing or not a whole number of at least 0")]
    [InlineData("epoch_sums", "1 2 3", "is missing or not a whole number of at least 0")]
    [InlineData("completed_epochs", "1000001", "is not one a run reaches")]
    public void A_checkpoint_position_out_of_range_is_refused_and_nothing_is_rewritten(string key, string value, string expected)
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var path = Path.Combine(run, "checkpoints", "epoch-0001.safetensors");
        var file = Safetensors.Read(File.ReadAllBytes(path));
        var meta = file.Metadata.ToDictionary();
        meta[key] = value;
        Safetensors.WriteFile(path, file.Tensors, meta);
        var before = Snapshot(run);

        var r = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2");

        output.WriteLine(r.Err);
        AssertRefused(r, 1, $"The checkpoint {path} has damaged metadata", expected);
        Assert.Equal(before, Snapshot(run));
    }

    [Fact]
    public void The_temporary_file_of_an_interrupted_image_cache_decode_is_removed_at_the_next_start()
    {
        using var sandbox = new TempDir();
        var images = sandbox["pngs"];
        Directory.CreateDirectory(images);
        var rng = new Random(4);
        for (var i = 0; i < 8; i++)
        {
            var pixels = new byte[20 * 20 * 3];
            rng.NextBytes(pixels);
            File.WriteAllBytes(Path.Combine(images, $"img{i}.png"), ImageCodec.EncodePng(new RasterImage(20, 20, 3, pixels)));
        }

        // what a decode killed part-way leaves: its cache file's temporary (as large as the set, for a real one) and its lock
        var cache = sandbox["cache/images"];
        Directory.CreateDirectory(cache);
        var dead = DeadPid();
        var leftover = Path.Combine(cache, $"images-0123456789abcdef-1x28.u8{AtomicFile.TempMarker}{dead}-0f0f");
        File.WriteAllBytes(leftover, new byte[1 << 20]);

        var r = Host.Run(sandbox, "train", "--dataset", "images:pngs", "--out", "run", "--epochs", "1", "--batch-size", "4");

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.False(File.Exists(leftover), "the dead decode's temporary file is still there");
        Assert.Single(Directory.GetFiles(cache, "*.u8"));
        Assert.Empty(Directory.GetFiles(cache, "*.lock"));

        // and when the next start finds its own cache filled (another folder's decode was killed)
        var other = Path.Combine(cache, $"images-fedcba9876543210-3x64.u8{AtomicFile.TempMarker}{dead}-0e0e");
        File.WriteAllBytes(other, new byte[1 << 20]);
        var again = Host.Run(sandbox, "train", "--dataset", "images:pngs", "--out", "run2", "--epochs", "1", "--batch-size", "4");
        Assert.True(again.Code == 0, again.Err + again.Out);
        Assert.Contains("cached in", again.Out);
        Assert.False(File.Exists(other), "a dead decode's temporary file survived a start that found its cache filled");
    }

    [Fact]
    public async Task A_cache_lock_held_by_a_live_process_is_waited_for_then_taken()
    {
        using var dir = new TempDir();
        var path = dir["images-x.u8.lock"];
        var messages = new List<string>();
        var held = WriterLock.Acquire(path, "the image cache x", _ => { });
        var waiter = Task.Run(() =>
        {
            using var mine = WriterLock.Wait(path, "the image cache x", m =>
            {
                lock (messages)
                {
                    messages.Add(m);
                }
            });
            return File.ReadAllText(path);
        });
        await Task.Delay(1000);
        Assert.False(waiter.IsCompleted, "the lock was taken while another holder had it");
        held.Dispose();

        var content = await waiter;

        Assert.Contains($"pid={Environment.ProcessId}", content);
        output.WriteLine(messages[0]);
        Assert.Contains(messages, m => m.StartsWith($"Waiting for process {Environment.ProcessId} on {Environment.MachineName}", StringComparison.Ordinal) && m.Contains("which is writing the image cache x"));
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task A_fetch_under_its_lock_runs_once_while_a_second_caller_waits_and_then_finds_it_done()
    {
        using var dir = new TempDir();
        var data = dir["data"];
        var made = dir["data/made"];
        var runs = 0;
        using var inside = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        void Fetch(bool first) => WriterLock.Once(
            Path.Combine(data, ".fetch.lock"),
            "the data x",
            _ => { },
            () => File.Exists(made),
            () =>
            {
                Interlocked.Increment(ref runs);
                if (first)
                {
                    inside.Set();
                    release.Wait();
                }

                AtomicFile.WriteAllText(made, "x");
            });

        var first = Task.Run(() => Fetch(true));
        inside.Wait();
        var second = Task.Run(() => Fetch(false));
        await Task.Delay(1000);
        Assert.False(second.IsCompleted, "the second caller did not wait for the first one's fetch");
        release.Set();
        await Task.WhenAll(first, second);

        Assert.Equal(1, runs);
        Assert.Equal("x", File.ReadAllText(made));
        Assert.False(File.Exists(Path.Combine(data, ".fetch.lock")));
    }
}
