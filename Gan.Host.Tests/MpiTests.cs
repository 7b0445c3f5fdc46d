using System.Diagnostics;
using Gan.Host.Training;

namespace Gan.Host.Tests;

/// <summary>A test that needs Open MPI's mpirun (Debian: openmpi-bin; CI installs it): skipped, saying so, where it is missing.</summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (MpiTests.MpiRun is null)
        {
            Skip = "mpirun is not installed here (Debian: apt-get install openmpi-bin)";
        }
    }
}

/// <summary>
/// Gan.Host under a real `mpirun` on this machine's loopback: 2 ranks against one process
/// (bench --check for mlp, dcgan28, mbd28), an end-to-end train + resume of small runs (with
/// another rank count too), a rank that cannot load its data, a rank killed mid-run, devices.
/// </summary>
public class MpiTests
{
    internal static readonly string? MpiRun = HostContext.FindOnPath(["mpirun"]);

    private static readonly string HostDll = typeof(App).Assembly.Location;

    /// <summary>Runs <c>mpirun</c> with the given app contexts (each: a rank count and Gan.Host's arguments; more than one is MPMD).</summary>
    private static HostRun Mpi(TempDir sandbox, params (int Ranks, string[] Args)[] apps) => Mpi(sandbox, null, apps);

    private static HostRun Mpi(TempDir sandbox, Action<Process>? whileRunning, params (int Ranks, string[] Args)[] apps)
    {
        var psi = new ProcessStartInfo(MpiRun!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = sandbox.Path,
        };
        // as root, on loopback only, no terminal handling (see docs/distributed.md)
        psi.Environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
        psi.Environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
        psi.Environment["OMPI_MCA_btl"] = "self,vader";
        psi.Environment["OMPI_MCA_oob_tcp_if_include"] = "lo";
        psi.Environment["OMPI_MCA_rmaps_base_oversubscribe"] = "1";
        psi.Environment["TERM"] = "dumb";
        psi.Environment["XDG_CACHE_HOME"] = sandbox["cache"];
        var first = true;
        foreach (var (ranks, args) in apps)
        {
            if (!first)
            {
                psi.ArgumentList.Add(":");
            }

            first = false;
            psi.ArgumentList.Add("-np");
            psi.ArgumentList.Add(ranks.ToString(System.Globalization.CultureInfo.InvariantCulture));
            psi.ArgumentList.Add("dotnet");
            psi.ArgumentList.Add(HostDll);
            foreach (var a in args)
            {
                psi.ArgumentList.Add(a);
            }
        }

        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        whileRunning?.Invoke(p);
        if (!p.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            p.Kill(entireProcessTree: true);
            throw new TimeoutException($"mpirun {string.Join(" ", psi.ArgumentList)} did not end in 5 minutes; output:\n{stdout.Result}\n{stderr.Result}");
        }

        return new HostRun(p.ExitCode, stdout.Result, stderr.Result);
    }

    private static HostRun Alone(TempDir sandbox, params string[] args) => Host.Run(sandbox, args);

    [MpiFact]
    public void Two_ranks_with_synchronised_BatchNorm_match_one_process_for_mlp_dcgan28_and_mbd28()
    {
        using var sandbox = new TempDir();
        foreach (var model in new[] { "mlp", "dcgan28", "mbd28" })
        {
            var run = Mpi(sandbox, (2, ["bench", "--model", model, "--check", "--sync-batchnorm", "--batch", "8", "--steps", "2", "--threads", "1"]));
            Assert.True(run.Code == 0, $"{model}: exit {run.Code}\n{run.Out}\n{run.Err}");
            Assert.Contains($"check model={model} ranks=2", run.Out);
            Assert.Contains("ranks_identical=yes", run.Out);
            Assert.EndsWith("OK", run.Out.Trim());
        }
    }

    [MpiFact]
    public void Bench_under_mpirun_reports_the_allreduce_time_and_bytes()
    {
        using var sandbox = new TempDir();
        var run = Mpi(sandbox, (2, ["bench", "--model", "mlp", "--batch", "32", "--steps", "2", "--warmup", "1", "--threads", "1"]));
        Assert.True(run.Code == 0, run.Err);
        var line = Assert.Single(run.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains("ranks=2", line);
        Assert.Contains("allreduce_ms=", line);
        // mlp's gradients are 579,728 + 566,273 floats a step; BatchNorm statistics, logits and
        // loss values add a few thousand more
        var mb = double.Parse(line.Split(' ').Single(f => f.StartsWith("allreduce_mb=", StringComparison.Ordinal))["allreduce_mb=".Length..], System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(mb, 4 * 1_146_001 / 1e6, 4 * 1_180_000 / 1e6);
    }

    [MpiFact]
    public void Under_mpirun_a_device_other_than_the_cpu_is_refused_and_auto_is_the_cpu()
    {
        using var sandbox = new TempDir();
        var refused = Mpi(sandbox, (2, ["bench", "--model", "mlp", "--batch", "8", "--steps", "1", "--warmup", "0", "--threads", "1", "--device", "ilgpu-cpu"]));
        var auto = Mpi(sandbox, (2, ["bench", "--model", "mlp", "--batch", "8", "--steps", "1", "--warmup", "0", "--threads", "1"]));

        Assert.NotEqual(0, refused.Code);
        Assert.Contains("--device ilgpu-cpu: under mpirun every rank trains on the CPU backend", refused.Err);
        Assert.True(auto.Code == 0, auto.Err);
        Assert.Contains("cpu backend, 1 thread", auto.Err);
    }

    [MpiFact]
    public void Devices_shows_the_MPI_world()
    {
        using var sandbox = new TempDir();
        var run = Mpi(sandbox, (2, ["devices", "--threads", "1"]));
        Assert.True(run.Code == 0, run.Err);
        Assert.Matches(@"mpi\s+world\s+2 rank\(s\)", run.Out);
        Assert.Contains("rank 1 on ", run.Out);
        Assert.Matches(@"mpi\s+not started", Alone(sandbox, "devices", "--threads", "1").Out);
    }

    [MpiFact]
    public void Two_ranks_train_and_resume_on_a_small_slice_and_another_rank_count_continues_the_run()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeMnist(sandbox["data"], 96);
        string[] Args(string dir, int epochs, params string[] extra) =>
            ["train", "--model", "mlp", "--data-dir", sandbox["data"], "--train-size", "96", "--batch-size", "32", "--seed", "3", "--threads", "1",
             "--epochs", epochs.ToString(System.Globalization.CultureInfo.InvariantCulture), "--checkpoint-every", "1", "--no-eval", "--out", dir, .. extra];

        // one epoch on 2 ranks, resumed for a second on 2 ranks: bit for bit an uninterrupted 2-epoch run
        var first = Mpi(sandbox, (2, Args(sandbox["a"], 1, "--sync-batchnorm")));
        Assert.True(first.Code == 0, first.Out + first.Err);
        Assert.Contains("data-parallel: 2 MPI ranks", first.Out);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(sandbox["a"], "steps.csv")).Count(l => l.Length > 0 && char.IsDigit(l[0])));
        Assert.Contains("\"syncBatchNorm\": true", File.ReadAllText(Path.Combine(sandbox["a"], "config.json")));
        // --resume keeps --sync-batchnorm from config.json
        var resumed = Mpi(sandbox, (2, Args(sandbox["a"], 2, "--resume")));
        Assert.True(resumed.Code == 0, resumed.Out + resumed.Err);
        var whole = Mpi(sandbox, (2, Args(sandbox["b"], 2, "--sync-batchnorm")));
        Assert.True(whole.Code == 0, whole.Out + whole.Err);
        var a = CheckpointFile.Read(new RunDirectory(sandbox["a"]).Checkpoints()[^1].Path);
        var b = CheckpointFile.Read(new RunDirectory(sandbox["b"]).Checkpoints()[^1].Path);
        Assert.Equal(2, a.CompletedEpochs);
        foreach (var (x, y) in a.Tensors.Zip(b.Tensors))
        {
            Assert.Equal(x.Name, y.Name);
            Assert.True(x.Float32Data is null ? x.Float64Data!.SequenceEqual(y.Float64Data!) : x.Float32Data.SequenceEqual(y.Float32Data!), x.Name);
        }

        // the 2-rank run continues in one process (no mpirun), and again on 3 ranks
        var alone = Alone(sandbox, Args(sandbox["a"], 3, "--resume"));
        Assert.True(alone.Code == 0, alone.Err);
        var three = Mpi(sandbox, (3, Args(sandbox["a"], 4, "--resume")));
        Assert.True(three.Code == 0, three.Out + three.Err);
        Assert.Contains("data-parallel: 3 MPI ranks", three.Out);
        Assert.Equal(4, CheckpointFile.Read(new RunDirectory(sandbox["a"]).Checkpoints()[^1].Path).CompletedEpochs);
        Assert.Equal(12, File.ReadAllLines(Path.Combine(sandbox["a"], "steps.csv")).Count(l => l.Length > 0 && char.IsDigit(l[0])));

        // only rank 0 wrote: one header per run in train.log
        Assert.Equal(4, File.ReadAllLines(Path.Combine(sandbox["a"], "train.log")).Count(l => l.StartsWith("--- ", StringComparison.Ordinal)));
    }

    [MpiFact]
    public void A_rank_that_cannot_load_its_data_ends_the_job_with_its_message()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeMnist(sandbox["data"], 64);
        string[] common = ["train", "--model", "mlp", "--train-size", "64", "--batch-size", "32", "--epochs", "1", "--threads", "1", "--no-eval", "--out", sandbox["run"]];
        // rank 1's copy of the data is cut short
        var broken = Host.WriteFakeMnist(sandbox["broken"], 64);
        var bytes = File.ReadAllBytes(broken);
        File.WriteAllBytes(broken, bytes[..(bytes.Length / 2)]);
        var run = Mpi(sandbox, (1, [.. common, "--data-dir", sandbox["data"]]), (1, [.. common, "--data-dir", sandbox["broken"]]));
        Assert.NotEqual(0, run.Code);
        Assert.Contains("error (rank 1 of 2):", run.Err);
        Assert.Contains(broken, run.Err);
        Assert.False(File.Exists(Path.Combine(sandbox["run"], "steps.csv")) && File.ReadAllLines(Path.Combine(sandbox["run"], "steps.csv")).Length > 1);
    }

    [MpiFact]
    public void A_rank_killed_mid_run_ends_the_job_and_the_last_checkpoint_is_intact()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeMnist(sandbox["data"], 64);
        var dir = sandbox["run"];
        var checkpoints = Path.Combine(dir, "checkpoints");
        var watch = Stopwatch.StartNew();
        var run = Mpi(sandbox, p =>
        {
            // wait for the first checkpoint, then kill -9 one rank (a child of mpirun)
            while (!(Directory.Exists(checkpoints) && Directory.EnumerateFiles(checkpoints, "*.safetensors").Any()))
            {
                Assert.False(p.HasExited, "the run ended before its first checkpoint");
                Assert.True(watch.Elapsed < TimeSpan.FromMinutes(3), "no checkpoint after 3 minutes");
                Thread.Sleep(100);
            }

            var ranks = Children(p.Id);
            Assert.Equal(2, ranks.Count);
            Process.GetProcessById(ranks[^1]).Kill();
            watch.Restart();
        }, (2, ["train", "--model", "mlp", "--data-dir", sandbox["data"], "--train-size", "64", "--batch-size", "32", "--epochs", "1000", "--checkpoint-every", "1", "--threads", "1", "--no-eval", "--out", dir]));
        Assert.NotEqual(0, run.Code);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(30), $"the job took {watch.Elapsed} to end after the kill");
        var last = new RunDirectory(dir).Checkpoints()[^1].Path;
        var ckpt = CheckpointFile.Read(last);
        Assert.True(ckpt.CompletedEpochs >= 1);
        Assert.True(CheckpointFile.Restore(ckpt, ckpt.Config).IsFinite());
    }

    /// <summary>The child processes of <paramref name="pid"/> (Linux /proc).</summary>
    private static List<int> Children(int pid) =>
        Directory.EnumerateDirectories($"/proc/{pid}/task")
            .SelectMany(t => File.ReadAllText(Path.Combine(t, "children")).Split(' ', StringSplitOptions.RemoveEmptyEntries))
            .Select(int.Parse)
            .ToList();
}
