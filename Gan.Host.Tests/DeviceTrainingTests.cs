using System.Globalization;
using System.Text.Json;
using Gan.Functional.CSharp;
using Gan.Host.Io;
using Xunit.Abstractions;

namespace Gan.Host.Tests;

/// <summary>
/// `train --device`: a run on a device writes the checkpoint a run on the CPU writes (the same
/// format, values within float32 tolerance), and either run's checkpoint samples and resumes on the
/// other. The device is GAN_TEST_DEVICE (default ilgpu-cpu, ILGPU's CPU accelerator: the device
/// code path without a GPU, and slow, so CI trains toy2d for 3 steps); scripts/gpu-check.sh sets
/// GAN_TEST_DEVICE=cuda:0 and GAN_TEST_MODELS to every seed model.
/// </summary>
public class DeviceTrainingTests(ITestOutputHelper output)
{
    private static string TestDevice =>
        Environment.GetEnvironmentVariable("GAN_TEST_DEVICE") is { Length: > 0 } d ? d : "ilgpu-cpu";

    private static string[] TestModels =>
        (Environment.GetEnvironmentVariable("GAN_TEST_MODELS") is { Length: > 0 } m ? m : "toy2d")
        .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);

    /// <summary>
    /// A few steps of <paramref name="model"/> on small data: 3 steps of batch 4 on ring8 for the
    /// 2-D models; one step of batch 8 on noise images for the image models (a 28×28 IDX file of
    /// uniform bytes, as Stacked MNIST for the 64×64 ones). Noise, not digits or blobs on black:
    /// with a few dark images BatchNorm divides by a near-zero spread, and float32 kernels that
    /// only sum in another order then disagree by percents (the reference and CPU kernels do).
    /// </summary>
    private static string[] Steps(TempDir sandbox, string model)
    {
        string[] common = ["train", "--model", model, "--epochs", "1", "--seed", "3", "--no-eval"];
        if (model.StartsWith("toy2d", StringComparison.Ordinal))
        {
            return [.. common, "--batch-size", "4", "--dataset", "ring8", "--train-size", "12"];
        }

        var data = sandbox["data"];
        var images = Path.Combine(data, "train-images-idx3-ubyte");
        if (!File.Exists(images))
        {
            Directory.CreateDirectory(data);
            var pixels = new byte[24 * 28 * 28];
            new Random(5).NextBytes(pixels);
            Idx.Write(images, [24, 28, 28], pixels, false);
        }

        string[] dataset = model is "dcgan64" or "valid64" ? ["--dataset", "stacked-mnist"] : [];
        return [.. common, "--batch-size", "8", .. dataset, "--data-dir", data, "--train-size", "8"];
    }

    /// <summary>
    /// Float32 kernels that sum in another order differ in the last bits, and a training step
    /// amplifies that where it divides by small numbers: BatchNorm by a small spread, Adam by √v,
    /// which turns a gradient that is 0 but for rounding (a bias that BatchNorm follows) into a
    /// step of ±lr of either sign. So every element must agree within <see cref="Loose"/> of
    /// 1 + the tensor's largest magnitude, and each group of tensors (G's variables, D's, each
    /// optimizer moment of each, the EMA) within <see cref="Relative"/> in the L2 norm
    /// (‖device − cpu‖ / ‖cpu‖ over the group: the few steps of either sign weigh little). A
    /// device that did not train would leave the Adam moments at 0: a difference of 1.
    /// </summary>
    private const double Relative = 2e-2, Loose = 1e-2;

    /// <summary>"optim.generator.exp_avg.7.bias" → "optim.generator.exp_avg"; "train.step" stays.</summary>
    private static string Group(string name)
    {
        var parts = name.Split('.');
        return parts.Length >= 3 ? string.Join(".", parts[..^2]) : name;
    }

    [Fact]
    public void Training_on_the_device_writes_the_checkpoint_training_on_the_cpu_writes()
    {
        foreach (var model in TestModels)
        {
            using var sandbox = new TempDir();
            var args = Steps(sandbox, model);
            var device = Host.Run(sandbox, [.. args, "--device", TestDevice, "--out", sandbox["device"]]);
            var cpu = Host.Run(sandbox, [.. args, "--device", "cpu", "--out", sandbox["cpu"]]);

            Assert.True(device.Code == 0, $"{model} on {TestDevice}: {device.Err}{device.Out}");
            Assert.True(cpu.Code == 0, $"{model} on cpu: {cpu.Err}{cpu.Out}");
            Assert.StartsWith($"device {TestDevice}: ", device.Out);
            Assert.Contains($"model state and batches on {TestDevice.Split(':')[0]}", device.Out);
            Assert.DoesNotContain("model state and batches on", cpu.Out);

            var onDevice = ReadCheckpoint(sandbox["device"]);
            var onCpu = ReadCheckpoint(sandbox["cpu"]);
            // the same format: the same tensors (names, dtypes, shapes) and metadata, the device aside
            Assert.Equal(onCpu.Tensors.Select(Signature), onDevice.Tensors.Select(Signature));
            Assert.Equal(onCpu.Metadata.Keys.Order(), onDevice.Metadata.Keys.Order());
            foreach (var (key, value) in onCpu.Metadata)
            {
                var expected = key == "config" ? value.Replace("\"device\": \"cpu\"", $"\"device\": \"{TestDevice}\"") : value;
                Assert.True(expected == onDevice.Metadata[key], $"{model}: metadata '{key}' differs: {onDevice.Metadata[key]} on {TestDevice}, {value} on cpu");
            }

            var worst = (Name: "", Distance: 0.0);
            var groups = new Dictionary<string, (double Difference, double Norm)>();
            foreach (var (d, c) in onDevice.Tensors.Zip(onCpu.Tensors))
            {
                var a = Values(d);
                var b = Values(c);
                var scale = 1 + b.Select(Math.Abs).DefaultIfEmpty(0).Max();
                var distance = a.Zip(b, (x, y) => Math.Abs(x - y)).DefaultIfEmpty(0).Max() / scale;
                Assert.True(double.IsFinite(distance), $"{model}: {d.Name} is not finite on {TestDevice}");
                if (d.Name.StartsWith("train.", StringComparison.Ordinal) || d.Name.EndsWith(".step", StringComparison.Ordinal))
                {
                    Assert.True(distance == 0, $"{model}: {d.Name} differs: {string.Join(", ", a)} on {TestDevice}, {string.Join(", ", b)} on cpu");
                }

                if (distance > worst.Distance)
                {
                    worst = (d.Name, distance);
                }

                var (difference, norm) = groups.GetValueOrDefault(Group(d.Name));
                groups[Group(d.Name)] = (difference + a.Zip(b, (x, y) => (x - y) * (x - y)).Sum(), norm + b.Sum(y => y * y));
            }

            var relative = groups
                .Select(g => (Name: g.Key, Distance: g.Value.Norm > 0 ? Math.Sqrt(g.Value.Difference / g.Value.Norm) : Math.Sqrt(g.Value.Difference)))
                .MaxBy(g => g.Distance);
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{model} on {TestDevice} vs cpu: {onCpu.Tensors.Count} tensors in {groups.Count} groups; largest relative L2 difference of a group {relative.Distance:G3} ({relative.Name}); largest element difference {worst.Distance:G3} of 1 + max |cpu| ({worst.Name})"));
            Assert.True(relative.Distance <= Relative, $"{model}: {relative.Name} differs by {relative.Distance:G3} in the L2 norm (> {Relative}) between {TestDevice} and cpu");
            Assert.True(worst.Distance <= Loose, $"{model}: {worst.Name} differs by {worst.Distance:G3} (> {Loose}) between {TestDevice} and cpu");
        }
    }

    [Fact]
    public void A_device_runs_checkpoint_samples_and_resumes_on_the_cpu_and_a_cpu_runs_on_the_device()
    {
        using var sandbox = new TempDir();
        var args = Steps(sandbox, "toy2d");
        Assert.Equal(0, Host.Run(sandbox, [.. args, "--device", TestDevice, "--out", sandbox["device"]]).Code);
        Assert.Equal(0, Host.Run(sandbox, [.. args, "--device", "cpu", "--out", sandbox["cpu"]]).Code);

        var sampleOnCpu = Host.Run(sandbox, "sample", "--run", sandbox["device"], "--count", "100", "--out", sandbox["a.png"], "--device", "cpu");
        var sampleOnDevice = Host.Run(sandbox, "sample", "--run", sandbox["cpu"], "--count", "100", "--out", sandbox["b.png"], "--device", TestDevice);
        Assert.True(sampleOnCpu.Code == 0, sampleOnCpu.Err);
        Assert.True(sampleOnDevice.Code == 0, sampleOnDevice.Err);
        Assert.StartsWith($"device {TestDevice}: ", sampleOnDevice.Out);
        Assert.Equal((320, 320, 3), Size(ImageCodec.Read(sandbox["a.png"])));
        Assert.Equal((320, 320, 3), Size(ImageCodec.Read(sandbox["b.png"])));

        // the device run goes on on the CPU, and the CPU run on the device: the device is not a weight-deciding setting
        var resumedOnCpu = Host.Run(sandbox, "train", "--resume", "--out", sandbox["device"], "--epochs", "2", "--device", "cpu");
        var resumedOnDevice = Host.Run(sandbox, "train", "--resume", "--out", sandbox["cpu"], "--epochs", "2", "--device", TestDevice);
        Assert.True(resumedOnCpu.Code == 0, resumedOnCpu.Err + resumedOnCpu.Out);
        Assert.True(resumedOnDevice.Code == 0, resumedOnDevice.Err + resumedOnDevice.Out);
        Assert.Contains("resuming from", resumedOnCpu.Out);
        Assert.Equal("6", ReadCheckpoint(sandbox["device"]).Metadata["train_step"]);
        Assert.Equal("6", ReadCheckpoint(sandbox["cpu"]).Metadata["train_step"]);
        Assert.Contains("\"device\": \"cpu\"", File.ReadAllText(Path.Combine(sandbox["device"], "config.json")));
    }

    [Fact]
    public void Bench_times_steps_on_the_device_and_refuses_to_profile_it()
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, "bench", "--model", "mlp", "--batch", "4", "--steps", "2", "--warmup", "0", "--device", TestDevice);
        var profiled = Host.Run(sandbox, "bench", "--model", "mlp", "--batch", "4", "--steps", "1", "--device", TestDevice, "--profile");

        Assert.True(r.Code == 0, r.Err);
        Assert.StartsWith($"device {TestDevice}: ", r.Err);
        Assert.Matches(@"^model=mlp batch=4 median_ms=[\d.]+ min_ms=[\d.]+ peak_rss_mb=\d+\n$", r.Out.Replace("\r", ""));
        Assert.Equal(2, profiled.Code);
        Assert.Contains($"bench --profile times the CPU backend's kernels; {TestDevice} selected ilgpu", profiled.Err);
    }

    [Fact]
    public void Evaluate_on_the_device_scores_what_evaluate_on_the_cpu_scores()
    {
        using var sandbox = new TempDir();
        var run = EvaluationTests.TinyRun(sandbox);

        // the first evaluate trains the metrics' backbone on the device and caches it; the second
        // scores with that cached backbone on the cpu: the same samples, the same features
        var device = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "20", "--json", sandbox["device.json"], "--device", TestDevice);
        var cpu = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "20", "--json", sandbox["cpu.json"], "--device", "cpu");

        Assert.True(device.Code == 0, device.Err + device.Out);
        Assert.True(cpu.Code == 0, cpu.Err + cpu.Out);
        Assert.StartsWith($"device {TestDevice}: ", device.Out);
        Assert.Contains("training it now", device.Out);
        Assert.DoesNotContain("training it now", cpu.Out);
        var onDevice = JsonDocument.Parse(File.ReadAllText(sandbox["device.json"])).RootElement;
        var onCpu = JsonDocument.Parse(File.ReadAllText(sandbox["cpu.json"])).RootElement;
        foreach (var key in new[] { "inception_score", "fcd", "kid", "class_kl" })
        {
            double d = onDevice.GetProperty(key).GetDouble(), c = onCpu.GetProperty(key).GetDouble();
            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{key}: {d} on {TestDevice}, {c} on cpu"));
            Assert.True(double.IsFinite(d), $"{key} on {TestDevice}: {d}");
            Assert.True(Math.Abs(d - c) <= 1e-3 * (1 + Math.Abs(c)), $"{key}: {d} on {TestDevice}, {c} on cpu");
        }

        Assert.Equal(20, onDevice.GetProperty("samples").GetInt32());
    }

    private static (int, int, int) Size(RasterImage image) => (image.Width, image.Height, image.Channels);

    private static SafetensorsFile ReadCheckpoint(string run)
    {
        var newest = Directory.GetFiles(Path.Combine(run, "checkpoints"), "*.safetensors").Order(StringComparer.Ordinal).Last();
        return Safetensors.Read(File.ReadAllBytes(newest));
    }

    private static string Signature(NamedTensor t) =>
        $"{t.Name} {(t.Float32Data is not null ? "F32" : "F64")} [{string.Join(",", t.Shape)}]";

    private static double[] Values(NamedTensor t) =>
        t.Float32Data is { } f ? f.Select(v => (double)v).ToArray() : t.Float64Data!;
}

/// <summary>The paragraph for a device that runs out of memory.</summary>
public class DeviceOutOfMemoryTests
{
    [Fact]
    public void Out_of_memory_names_the_device_its_free_memory_the_request_the_model_and_the_batch_size()
    {
        var ctx = new HostContext { Out = TextWriter.Null, Err = TextWriter.Null, Device = "cuda:0", DeviceWork = "training mbd28 at batch size 4096" };
        var e = new Gan.Functional.DeviceOutOfMemoryException("cuda (NVIDIA H100 80GB HBM3)", 120L << 20, 3L << 30, new OutOfMemoryException());

        Assert.Equal(
            "The device ran out of memory while training mbd28 at batch size 4096: --device cuda:0 is cuda (NVIDIA H100 80GB HBM3), which could not allocate "
            + "3072.0 MiB (120.0 MiB free). Use a smaller --batch-size (or fewer samples), free the device of other processes (nvidia-smi lists them), or train with --device cpu.",
            Commands.DeviceSelection.OutOfMemory(e, ctx));
        var unknown = new Gan.Functional.DeviceOutOfMemoryException("ilgpu-cpu (CPUAccelerator)", -1, 1000, new OutOfMemoryException());
        Assert.Contains("could not allocate 1000 bytes (its free memory unknown)", Commands.DeviceSelection.OutOfMemory(unknown, ctx));
    }
}
