using System.Diagnostics;
using System.Globalization;
using Gan.Functional;
using Gan.Functional.CSharp;
using Gan.Functional.Kernels;
using Gan.Host.Cli;

namespace Gan.Host.Commands;

/// <summary>
/// `bench`: the speed of full training steps, the same step as bench/torch_reference.py: G(z) once,
/// one D update on the real batch and the detached fake batch, then one G update through the updated
/// D; Adam(2e-4, β 0.5/0.999) for both, BCE-with-logits, random data. Prints exactly one line per
/// model on stdout; the backend, allocations, GC counts and the profile go to stderr.
/// </summary>
internal static class BenchCommand
{
    /// <summary>The order and batch defaults of the PyTorch anchor.</summary>
    private static readonly (string Name, int Batch)[] Models =
        [("mlp", 256), ("dcgan28", 64), ("mbd28", 64), ("dcgan64", 64), ("valid64", 64)];

    public static int Run(BenchRequest req, HostContext ctx)
    {
        if (req.Allreduce)
        {
            return Allreduce(req, ctx);
        }

        if (req.Model == "all")
        {
            if (req.Ab is not null)
            {
                throw new UserError("bench --ab compares two sets of knobs on one model: give --model.", ExitCodes.Usage);
            }

            if (ctx.World.Size > 1 || req.Check)
            {
                throw new UserError("bench under mpirun (and --check) times one model: give --model mlp, dcgan28, mbd28, dcgan64 or valid64.", ExitCodes.Usage);
            }

            return RunAll(req, ctx);
        }

        if (!Models.Any(m => m.Name == req.Model))
        {
            throw new UserError(
                $"--model: unknown model '{req.Model}'; bench takes {string.Join(", ", Models.Select(m => m.Name))} or all.",
                ExitCodes.Usage);
        }

        return req.Ab is null ? RunOne(req, ctx) : RunAb(req, ctx);
    }

    /// <summary>
    /// bench --ab: the same model's steps on two CPU backends that differ only in the given
    /// knobs, alternating A B B A so that a slow stretch of a shared machine falls on both; the
    /// ratio is the median of B / A over neighbouring steps.
    /// </summary>
    private static int RunAb(BenchRequest req, HostContext ctx)
    {
        var c = CultureInfo.InvariantCulture;
        if (req.Device is not ("auto" or "cpu"))
        {
            throw new UserError($"bench --ab compares CPU backend knobs, on the CPU: drop --device {req.Device}.", ExitCodes.Usage);
        }

        var overrides = new Dictionary<string, string>();
        foreach (var item in (req.Ab ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = item.IndexOf('=');
            if (eq <= 0)
            {
                throw new UserError($"--ab: '{item}' is not NAME=VALUE.", ExitCodes.Usage);
            }

            overrides[item[..eq]] = item[(eq + 1)..];
        }

        var knobsA = CpuKnobs.FromEnvironment();
        var knobsB = CpuKnobs.Parse(name => overrides.TryGetValue(name, out var v) ? v : Environment.GetEnvironmentVariable(name));
        if (knobsA.Equals(knobsB))
        {
            throw new UserError($"--ab: {req.Ab} changes no CPU backend knob (docs/knobs.md lists them).", ExitCodes.Usage);
        }

        var batch = req.Batch ?? Models.First(m => m.Name == req.Model).Batch;
        var a = new CpuBackend(req.Threads, knobsA);
        var b = new CpuBackend(req.Threads, knobsB);
        var trainer = BenchTrainer(req.Model, batch);
        var real = RandomImages(trainer, batch);
        for (var i = 0; i < req.Warmup; i++)
        {
            Engine.UseBackend(a);
            trainer.Step(real, batch, 0);
            Engine.UseBackend(b);
            trainer.Step(real, batch, 0);
        }

        var ta = new double[req.Steps];
        var tb = new double[req.Steps];
        for (var i = 0; i < req.Steps; i++)
        {
            // A B, then B A: each side goes first half of the time
            var first = i % 2 == 0;
            foreach (var side in first ? new[] { 0, 1 } : [1, 0])
            {
                Engine.UseBackend(side == 0 ? a : b);
                var t0 = Stopwatch.GetTimestamp();
                trainer.Step(real, batch, 0);
                (side == 0 ? ta : tb)[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
            }
        }

        var ratios = ta.Zip(tb, (x, y) => y / x).ToArray();
        ctx.Out.WriteLine(string.Create(c,
            $"ab model={req.Model} batch={batch} steps={req.Steps} a_median_ms={Median(ta):F1} b_median_ms={Median(tb):F1} b_over_a={Median(ratios):F3} b={req.Ab}"));
        return ExitCodes.Ok;
    }

    private static double Median(double[] xs)
    {
        var s = xs.OrderBy(x => x).ToArray();
        return s.Length % 2 == 1 ? s[s.Length / 2] : (s[s.Length / 2 - 1] + s[s.Length / 2]) / 2;
    }

    /// <summary>The bench's trainer: PyTorch's settings (see the class summary).</summary>
    private static GanTrainer BenchTrainer(string model, int batch)
    {
        var options = TrainOptions.ForModel(model, 3);
        options.BatchSize = batch;
        options.LearningRate = 2e-4;
        options.GeneratorLrScale = 1.0;
        options.Beta1 = 0.5;
        options.Loss = "bce";
        options.DSteps = 1;
        options.LrDecayEpochs = [];
        // PyTorch's loop: G is differentiated through the D that was just updated
        options.SimultaneousUpdates = false;
        return GanTrainer.Create(options);
    }

    /// <summary>`rows` random images in [-1, 1] of the trainer's model, flat NCHW.</summary>
    private static float[] RandomImages(GanTrainer trainer, int rows)
    {
        var real = new float[rows * trainer.Model.ImageShape.Aggregate(1, (x, s) => x * s)];
        var rng = new System.Random(0);
        for (var i = 0; i < real.Length; i++)
        {
            real[i] = (float)(rng.NextDouble() * 2 - 1);
        }

        return real;
    }

    private static int RunAll(BenchRequest req, HostContext ctx)
    {
        // each model in its own process, so that its peak RSS is its own
        var self = Environment.ProcessPath ?? throw new UserError("bench --model all: cannot find this program's path to start one process per model.");
        var prefix = Path.GetFileNameWithoutExtension(self) == "dotnet"
            ? [typeof(BenchCommand).Assembly.Location]
            : Array.Empty<string>();
        foreach (var (name, _) in Models)
        {
            var psi = new ProcessStartInfo(self) { RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var a in prefix)
            {
                psi.ArgumentList.Add(a);
            }

            foreach (var a in ChildArgs(req, name))
            {
                psi.ArgumentList.Add(a);
            }

            using var child = Process.Start(psi) ?? throw new UserError($"bench: could not start a process for {name}.");
            var output = child.StandardOutput.ReadToEnd();
            child.WaitForExit();
            ctx.Out.Write(output);
            if (child.ExitCode != 0)
            {
                ctx.Err.WriteLine($"error: bench of {name} failed with exit code {child.ExitCode}.");
                return ExitCodes.Failed;
            }
        }

        return ExitCodes.Ok;
    }

    private static IEnumerable<string> ChildArgs(BenchRequest req, string name)
    {
        var c = CultureInfo.InvariantCulture;
        yield return "bench";
        yield return "--model";
        yield return name;
        if (req.Batch is int b)
        {
            yield return "--batch";
            yield return b.ToString(c);
        }

        yield return "--steps";
        yield return req.Steps.ToString(c);
        yield return "--warmup";
        yield return req.Warmup.ToString(c);
        yield return "--threads";
        yield return req.Threads.ToString(c);
        yield return "--device";
        yield return req.Device;
        if (req.ProfileShapes)
        {
            yield return "--profile-shapes";
        }
        else if (req.Profile)
        {
            yield return "--profile";
        }
    }

    private static int RunOne(BenchRequest req, HostContext ctx)
    {
        var c = CultureInfo.InvariantCulture;
        var batch = req.Batch ?? Models.First(m => m.Name == req.Model).Batch;
        ctx.Err.WriteLine(DeviceSelection.Use(req.Device, req.Threads, ctx));
        ctx.DeviceWork = string.Create(c, $"benchmarking {req.Model} at batch size {batch}");
        var selected = Engine.CurrentBackend;
        if (req.Profile && selected is not CpuBackend)
        {
            throw new UserError($"bench --profile times the CPU backend's kernels; {req.Device} selected {selected.Name}. Give --device cpu, or drop --profile.", ExitCodes.Usage);
        }

        var profiler = req.Profile ? new ProfilingBackend(selected, req.ProfileShapes) : null;
        if (profiler is not null)
        {
            Engine.UseBackend(profiler);
        }

        var trainer = BenchTrainer(req.Model, batch);
        var world = ctx.World;
        world.SyncBatchNorm = req.SyncBatchNorm;
        if (req.Check)
        {
            return Check(req, ctx, batch);
        }

        if (world.Distributed)
        {
            Distributed.DistributedTrain.CheckSplit(world.Size, batch, batch);
        }

        // under mpirun this rank's rows of the global batch
        var (offset, local) = world.Slice(batch);
        var real = RandomImages(trainer, local);

        for (var i = 0; i < req.Warmup; i++)
        {
            world.Step(trainer, real, local, offset, batch, 0);
        }

        var mpi = world.Distributed ? world.Mpi : null;
        var (reduceTime, reduceBytes, reduceCalls) = mpi is null ? (TimeSpan.Zero, 0L, 0L) : (mpi.AllreduceTime, mpi.AllreduceBytes, mpi.AllreduceCalls);

        profiler?.Reset();
        var times = new double[req.Steps];
        var gen2 = GC.CollectionCount(2);
        var allocated = GC.GetTotalAllocatedBytes(precise: true);
        var paused = GC.GetTotalPauseDuration();
        for (var i = 0; i < req.Steps; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            world.Step(trainer, real, local, offset, batch, 0);
            times[i] = Stopwatch.GetElapsedTime(t0).TotalMilliseconds;
        }

        // the timed steps' MPI totals, before the FLOP count's step below adds its own
        var (reduceTimeAfter, reduceBytesAfter, reduceCallsAfter) = mpi is null ? (TimeSpan.Zero, 0L, 0L) : (mpi.AllreduceTime, mpi.AllreduceBytes, mpi.AllreduceCalls);
        var perStep = (GC.GetTotalAllocatedBytes(precise: true) - allocated) / (double)req.Steps;
        gen2 = GC.CollectionCount(2) - gen2;
        var pauseMs = (GC.GetTotalPauseDuration() - paused).TotalMilliseconds / req.Steps;
        Array.Sort(times);
        var median = times.Length % 2 == 1 ? times[times.Length / 2] : (times[times.Length / 2 - 1] + times[times.Length / 2]) / 2;
        double Quantile(double q) => times[(int)Math.Round(q * (times.Length - 1))];
        ctx.Err.WriteLine(string.Create(c, $"{req.Model}: allocated {perStep / 1e6:F1} MB/step, {gen2} gen-2 GC(s) in {req.Steps} steps, GC pauses {pauseMs:F1} ms/step"));
        ctx.Err.WriteLine(string.Create(c, $"{req.Model}: step ms p10 {Quantile(0.1):F1}, p25 {Quantile(0.25):F1}, p50 {median:F1}, p75 {Quantile(0.75):F1}, p90 {Quantile(0.9):F1}, max {times[^1]:F1}"));
        if (profiler is not null)
        {
            PrintProfile(profiler, req.Steps, times.Sum(), ctx.Err);
        }

        // read before the FLOP count's step and the ceiling's operands
        var peakRss = PeakRssMb();
        var line = string.Create(c, $"model={req.Model} batch={batch} median_ms={median:F1} min_ms={times[0]:F1} peak_rss_mb={peakRss:F0}");
        if (selected is CpuBackend cpu)
        {
            // the step's floating-point work (GEMMs and convolutions, 2·m·n·k), counted on one
            // more untimed step: deterministic, so one step is exact (the profiler sees the
            // kernels of the CPU backend only)
            var counter = new ProfilingBackend(cpu);
            Engine.UseBackend(counter);
            world.Step(trainer, real, local, offset, batch, 0);
            var stepFlops = counter.Timings().Sum(t => t.Flops);
            Engine.UseBackend(profiler is null ? cpu : profiler);
            // the FLOP floor: the step's work at this run's sgemm ceiling (a large square product)
            var ceiling = SgemmCeiling(cpu);
            var floorMs = stepFlops / ceiling * 1e3;
            ctx.Err.WriteLine(string.Create(c, $"{req.Model}: {stepFlops / 1e9:F2} GFLOP/step, {stepFlops / median / 1e6:F1} GFLOP/s at the median; sgemm ceiling {ceiling / 1e9:F0} GFLOP/s here, so the floor is {floorMs:F1} ms ({100 * floorMs / median:F0}% of the median)"));
            line += string.Create(c, $" gflop={stepFlops / 1e9:F3} gflops={stepFlops / median / 1e6:F1} ceiling_gflops={ceiling / 1e9:F0} floor_ms={floorMs:F1}");
        }

        if (mpi is not null)
        {
            // rank 0's view: the time this rank spent inside MPI_Allreduce (waiting for the others
            // included) and the bytes it gave to allreduce, per step
            var ms = (reduceTimeAfter - reduceTime).TotalMilliseconds / req.Steps;
            var mb = (reduceBytesAfter - reduceBytes) / 1e6 / req.Steps;
            var calls = (reduceCallsAfter - reduceCalls) / (double)req.Steps;
            line += string.Create(c, $" ranks={world.Size} sync_batchnorm={(world.SyncBatchNorm ? 1 : 0)} allreduce_ms={ms:F2} allreduce_mb={mb:F3} allreduce_calls={calls:F0}");
        }

        ctx.Out.WriteLine(line);
        return ExitCodes.Ok;
    }

    /// <summary>
    /// bench --check: the ranks' variables after --steps SGD steps in float64 must be identical,
    /// and with --sync-batchnorm within 1e-8 of one process's on the whole batch (see DataParallelCheck).
    /// </summary>
    private static int Check(BenchRequest req, HostContext ctx, int batch)
    {
        var world = ctx.World;
        var c = CultureInfo.InvariantCulture;
        const double tolerance = 1e-8; // float64 (see DataParallelCheck)
        var r = DataParallelCheck.Run(req.Model, 3, world.Reducer, batch, req.Steps, world.SyncBatchNorm);
        // rank 0 compares with one process; the others only take part
        var equivalent = !world.IsRoot || !world.SyncBatchNorm || r.LargestDistance <= tolerance;
        ctx.Out.WriteLine(string.Create(c,
            $"check model={req.Model} ranks={world.Size} batch={batch} steps={r.Steps} sync_batchnorm={(world.SyncBatchNorm ? 1 : 0)} ranks_identical={(r.RanksIdentical ? "yes" : "no")} largest_distance={r.LargestDistance:G3} worst={r.WorstVariable} {(r.RanksIdentical && equivalent ? "OK" : "FAILED")}"));
        if (!world.SyncBatchNorm)
        {
            ctx.Out.WriteLine("(per-rank BatchNorm: one process is not expected to match; only the ranks' agreement is checked)");
        }

        return r.RanksIdentical && equivalent ? ExitCodes.Ok : ExitCodes.Failed;
    }

    /// <summary>
    /// bench --allreduce: MPI_Allreduce (sum, in place) on float32 buffers of 4 KB to 64 MB, each
    /// size after a barrier, the median of --steps calls. Prints per size the time, the algorithm
    /// bandwidth (bytes / time) and the bus bandwidth (× 2(N − 1)/N, what a ring moves per rank).
    /// </summary>
    private static int Allreduce(BenchRequest req, HostContext ctx)
    {
        var world = ctx.World;
        var mpi = world.Mpi;
        if (mpi is null || !world.Distributed)
        {
            throw new UserError("bench --allreduce measures MPI_Allreduce between ranks: run it under mpirun with 2 or more ranks.", ExitCodes.Usage);
        }

        var c = CultureInfo.InvariantCulture;
        var hosts = world.HostNames();
        ctx.Out.WriteLine($"allreduce over {world.Size} ranks on {string.Join(", ", hosts.Distinct())}");
        for (var bytes = 4096; bytes <= 64 << 20; bytes *= 4)
        {
            var buffer = new float[bytes / 4];
            var times = new double[req.Steps];
            for (var i = -req.Warmup; i < req.Steps; i++)
            {
                mpi.Barrier();
                var t0 = Stopwatch.GetTimestamp();
                mpi.SumInPlace(buffer.AsSpan());
                if (i >= 0)
                {
                    times[i] = Stopwatch.GetElapsedTime(t0).TotalSeconds;
                }
            }

            Array.Sort(times);
            var median = times[times.Length / 2];
            var algo = bytes / median / 1e9;
            var bus = algo * 2 * (world.Size - 1) / world.Size;
            ctx.Out.WriteLine(string.Create(c, $"bytes={bytes} median_us={median * 1e6:F1} algbw_gbs={algo:F3} busbw_gbs={bus:F3}"));
        }

        return ExitCodes.Ok;
    }

    private static void PrintProfile(ProfilingBackend profiler, int steps, double totalMs, TextWriter err)
    {
        var c = CultureInfo.InvariantCulture;
        var timings = profiler.Timings();
        var kernelMs = timings.Sum(t => t.Seconds) * 1000 / steps;
        var stepMs = totalMs / steps;
        err.WriteLine(string.Create(c, $"profile (per step, mean of {steps}): {stepMs:F1} ms, of which kernels {kernelMs:F1} ms and engine/autodiff/GC {stepMs - kernelMs:F1} ms"));
        err.WriteLine("  kernel                    calls     ms/step   share   GFLOP/s   MB/step");
        foreach (var t in timings)
        {
            var ms = t.Seconds * 1000 / steps;
            var gflops = t.Flops > 0 ? t.Gflops.ToString("F1", c) : "";
            var mb = t.AllocatedBytes / 1e6 / steps;
            err.WriteLine(string.Create(c, $"  {t.Kernel,-24} {t.Calls / (double)steps,7:F0} {ms,11:F2} {100 * ms / stepMs,6:F1}% {gflops,9} {mb,9:F1}"));
        }

        foreach (var impl in profiler.ConvImplementations())
        {
            err.WriteLine("  oneDNN " + impl);
        }

        var flops = timings.Sum(t => t.Flops);
        var gemmSeconds = timings.Where(t => t.Flops > 0).Sum(t => t.Seconds);
        err.WriteLine(string.Create(c, $"  GEMM-like kernels: {flops / steps / 1e9:F2} GFLOP/step at {flops / gemmSeconds / 1e9:F1} GFLOP/s (machine sgemm ceiling ~260)"));
    }

    /// <summary>
    /// This machine's sgemm ceiling in FLOP/s as the backend runs it: the best of five 1024³
    /// products (2.1 GFLOP each), measured after the timed steps so that it does not warm them.
    /// </summary>
    private static double SgemmCeiling(IBackend backend)
    {
        const int n = 1024;
        var rng = new System.Random(1);
        var data = new float[n * n];
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (float)rng.NextDouble();
        }

        var a = RawTensorModule.ofFloat32([n, n], data);
        var best = double.MaxValue;
        for (var i = 0; i < 6; i++)
        {
            var t0 = Stopwatch.GetTimestamp();
            backend.MatMul(a, false, a, false, [n, n]);
            var s = Stopwatch.GetElapsedTime(t0).TotalSeconds;
            if (i > 0)
            {
                best = Math.Min(best, s);
            }
        }

        return 2.0 * n * n * n / best;
    }

    /// <summary>The process's peak resident set (VmHWM), in MB; 0 where /proc is absent.</summary>
    private static double PeakRssMb()
    {
        const string status = "/proc/self/status";
        if (!File.Exists(status))
        {
            return 0;
        }

        foreach (var line in File.ReadLines(status))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return double.Parse(kb, CultureInfo.InvariantCulture) / 1024;
            }
        }

        return 0;
    }
}
