using System.Text.Json;
using Gan.Host.Io;
using Gan.Host.Training;

namespace Gan.Host.Tests;

public class EndToEndTests
{
    private static Dictionary<string, (int[] Shape, float[]? F32, double[]? F64)> Tensors(string checkpoint) =>
        Safetensors.Read(File.ReadAllBytes(checkpoint)).Tensors.ToDictionary(t => t.Name, t => (t.Shape, t.Float32Data, t.Float64Data));

    private static void AssertSameTensors(string expected, string actual)
    {
        var a = Tensors(expected);
        var b = Tensors(actual);
        Assert.Equal(a.Keys.Order(), b.Keys.Order());
        foreach (var (name, t) in a)
        {
            Assert.True(t.Shape.SequenceEqual(b[name].Shape), name);
            Assert.True((t.F32 ?? []).SequenceEqual(b[name].F32 ?? []), $"{name} differs");
            Assert.True((t.F64 ?? []).SequenceEqual(b[name].F64 ?? []), $"{name} differs");
        }
    }

    [Fact]
    public void Bench_prints_exactly_one_result_line_per_model_with_the_asked_batch()
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, "bench", "--model", "mlp", "--batch", "4", "--steps", "2", "--warmup", "0", "--profile");

        Assert.True(r.Code == 0, r.Err + r.Out);
        var line = Assert.Single(r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Matches(@"^model=mlp batch=4 median_ms=[0-9.]+ min_ms=[0-9.]+ peak_rss_mb=[0-9]+ gflop=[0-9.]+ gflops=[0-9.]+ ceiling_gflops=[0-9]+ floor_ms=[0-9.]+$", line.Trim());
        // mlp's step, per example: G forward and backward (3G multiply-adds, less the input
        // gradient of z), D forward three times (real, fake, G's pass), D backward twice with
        // weight gradients but no input gradient for the data, once more for G's pass without
        // weight gradients: 3G + 8D − 2·784·512 − 100·128 = 5,441,536; 2 FLOP each, 4 examples
        Assert.Contains(" gflop=0.044 ", line);
        Assert.Contains("matmul", r.Err);
    }

    [Fact]
    public void Two_tiny_epochs_write_the_config_logs_sample_grids_and_checkpoints()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];

        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "2", "--checkpoint-every", "1"));

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains($"run directory: {run}", r.Out);
        Assert.Contains("done: 2 epoch(s)", r.Out);

        // config.json: every resolved setting, with mlp's SEEDS.md defaults where no flag was given
        using var config = JsonDocument.Parse(File.ReadAllText(Path.Combine(run, "config.json")));
        var c = config.RootElement;
        Assert.Equal("mlp", c.GetProperty("model").GetString());
        Assert.Equal("mnist", c.GetProperty("dataset").GetString());
        Assert.Equal(2, c.GetProperty("epochs").GetInt32());
        Assert.Equal(16, c.GetProperty("batchSize").GetInt32());
        Assert.Equal(2e-4, c.GetProperty("learningRate").GetDouble());
        Assert.Equal(5.0, c.GetProperty("generatorLrScale").GetDouble());
        Assert.Equal(0.5, c.GetProperty("beta1").GetDouble());
        Assert.Equal(100, c.GetProperty("noiseDim").GetInt32());
        Assert.Equal(7UL, c.GetProperty("seed").GetUInt64());
        Assert.Equal(sandbox["data"], c.GetProperty("dataDir").GetString());

        // loss.csv: S1's header, one row per epoch
        var loss = File.ReadAllLines(Path.Combine(run, "loss.csv"));
        Assert.Equal("epoch,Real_P,Fake_P,Gen_loss,Dis_loss", loss[0]);
        Assert.Equal(3, loss.Length);
        Assert.StartsWith("1,", loss[1]);
        Assert.StartsWith("2,", loss[2]);
        Assert.All(loss[1..], l => Assert.All(l.Split(',')[1..], v => Assert.True(double.IsFinite(double.Parse(v, System.Globalization.CultureInfo.InvariantCulture)))));

        // steps.csv: 64 images at batch 16 = 4 steps per epoch
        var steps = File.ReadAllLines(Path.Combine(run, "steps.csv"));
        Assert.Equal(RunDirectory.StepsHeader, steps[0]);
        Assert.Equal(Enumerable.Range(1, 8).Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)), steps[1..].Select(l => l.Split(',')[0]));

        Assert.Contains("epoch 2/2", File.ReadAllText(Path.Combine(run, "train.log")));

        // samples: a 4×4 grid of 28×28 images with 2-pixel borders after every epoch
        foreach (var e in new[] { 1, 2 })
        {
            var png = ImageCodec.Read(Path.Combine(run, "samples", $"epoch-000{e}.png"));
            Assert.Equal((122, 122, 1), (png.Width, png.Height, png.Channels));
            Assert.Contains(png.Pixels, p => p > 0);
        }

        // checkpoints: one per epoch here, with the zoo's PyTorch names and layouts and the resume state
        var checkpoints = Directory.GetFiles(Path.Combine(run, "checkpoints")).Select(f => Path.GetFileName(f)).Order().ToArray();
        Assert.Equal(["epoch-0001.safetensors", "epoch-0002.safetensors"], checkpoints);
        var file = Safetensors.Read(File.ReadAllBytes(Path.Combine(run, "checkpoints", "epoch-0002.safetensors")));
        var shapes = file.Tensors.ToDictionary(t => t.Name, t => t.Shape);
        Assert.Equal([128, 100], shapes["generator.0.weight"]);
        Assert.Equal([784, 512], shapes["generator.6.weight"]);
        Assert.Equal([512, 784], shapes["discriminator.1.weight"]);
        Assert.Equal([1], shapes["discriminator.7.bias"]);
        Assert.Contains("optim.generator.exp_avg.0.weight", shapes.Keys);
        Assert.Contains("optim.discriminator.exp_avg_sq.7.bias", shapes.Keys);
        Assert.Contains("train.key", shapes.Keys);
        Assert.Equal("2", file.Metadata["completed_epochs"]);
        Assert.Equal("8", file.Metadata["train_step"]);
        Assert.Equal("mlp", file.Metadata["model"]);
        Assert.Empty(Directory.GetFiles(run, "*.tmp-*", SearchOption.AllDirectories));
    }

    [Fact]
    public void Only_the_newest_checkpoints_are_kept()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];

        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "4", "--checkpoint-every", "1", "--keep-checkpoints", "2", "--train-size", "16"));

        Assert.True(r.Code == 0, r.Err);
        Assert.Equal(["epoch-0003.safetensors", "epoch-0004.safetensors"], Directory.GetFiles(Path.Combine(run, "checkpoints")).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_run_resumed_after_one_epoch_ends_with_the_same_weights_as_an_uninterrupted_run()
    {
        using var sandbox = new TempDir();
        var straight = sandbox["straight"];
        var resumed = sandbox["resumed"];

        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, straight, "--epochs", "2")).Code);
        var first = Host.Run(sandbox, Host.TinyTrain(sandbox, resumed, "--epochs", "1"));
        Assert.Equal(0, first.Code);
        var second = Host.Run(sandbox, "train", "--resume", "--out", resumed, "--epochs", "2");

        Assert.True(second.Code == 0, second.Err);
        Assert.Contains("resuming from", second.Out);
        AssertSameTensors(Path.Combine(straight, "checkpoints", "epoch-0002.safetensors"), Path.Combine(resumed, "checkpoints", "epoch-0002.safetensors"));
        Assert.Equal(File.ReadAllLines(Path.Combine(straight, "loss.csv")), File.ReadAllLines(Path.Combine(resumed, "loss.csv")));
        Assert.Equal(File.ReadAllBytes(Path.Combine(straight, "samples", "epoch-0002.png")), File.ReadAllBytes(Path.Combine(resumed, "samples", "epoch-0002.png")));
    }

    [Fact]
    public void Ctrl_C_mid_epoch_saves_a_checkpoint_and_resuming_from_it_matches_an_uninterrupted_run()
    {
        using var sandbox = new TempDir();
        var straight = sandbox["straight"];
        var interrupted = sandbox["interrupted"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, straight, "--epochs", "2", "--ema", "0.9")).Code);

        using var ctrlC = new CancellationTokenSource();
        var stopped = Host.Run(sandbox, step => { if (step == 6) { ctrlC.Cancel(); } }, ctrlC.Token, Host.TinyTrain(sandbox, interrupted, "--epochs", "2", "--ema", "0.9"));

        Assert.Equal(ExitCodes.Interrupted, stopped.Code);
        Assert.Contains("interrupted: saved checkpoints/epoch-0002-step-000002.safetensors (1 epochs + 2 steps)", stopped.Out);
        Assert.Contains("--resume", stopped.Out);

        var resumed = Host.Run(sandbox, "train", "--resume", "--out", interrupted);

        Assert.True(resumed.Code == 0, resumed.Err);
        AssertSameTensors(Path.Combine(straight, "checkpoints", "epoch-0002.safetensors"), Path.Combine(interrupted, "checkpoints", "epoch-0002.safetensors"));
        Assert.Equal(File.ReadAllLines(Path.Combine(straight, "loss.csv")), File.ReadAllLines(Path.Combine(interrupted, "loss.csv")));
        Assert.Equal(
            File.ReadAllLines(Path.Combine(straight, "steps.csv")).Select(l => string.Join(",", l.Split(',')[..^1])),
            File.ReadAllLines(Path.Combine(interrupted, "steps.csv")).Select(l => string.Join(",", l.Split(',')[..^1])));
    }

    [Fact]
    public void Resume_without_out_continues_the_newest_run_under_runs()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeMnist(sandbox["data"]);
        var first = Host.Run(sandbox, "train", "--model", "mlp", "--data-dir", sandbox["data"], "--batch-size", "32", "--epochs", "1");
        Assert.True(first.Code == 0, first.Err);
        var runDir = Directory.GetDirectories(sandbox["runs"]).Single();
        Assert.StartsWith("mlp-mnist-", Path.GetFileName(runDir));

        var second = Host.Run(sandbox, "train", "--resume", "--epochs", "2");

        Assert.True(second.Code == 0, second.Err);
        Assert.True(File.Exists(Path.Combine(runDir, "samples", "epoch-0002.png")));
    }

    [Fact]
    public void Resuming_a_finished_run_without_more_epochs_does_nothing_and_says_so()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);

        var again = Host.Run(sandbox, "train", "--resume", "--out", run);

        Assert.Equal(0, again.Code);
        Assert.Contains("nothing to do", again.Out);
    }

    [Fact]
    public void Sample_renders_a_grid_from_a_run_and_from_a_checkpoint_file()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);

        var fromRun = Host.Run(sandbox, "sample", "--run", run, "--count", "10", "--out", "grid.png", "--seed", "5");
        var fromFile = Host.Run(sandbox, "sample", "--checkpoint", Path.Combine(run, "checkpoints", "epoch-0001.safetensors"), "--count", "10", "--out", "again.png", "--seed", "5");

        Assert.True(fromRun.Code == 0, fromRun.Err);
        Assert.True(fromFile.Code == 0, fromFile.Err);
        var png = ImageCodec.Read(sandbox["grid.png"]);
        Assert.Equal((4 * 30) + 2, png.Width);
        Assert.Equal((3 * 30) + 2, png.Height);
        Assert.Equal(File.ReadAllBytes(sandbox["grid.png"]), File.ReadAllBytes(sandbox["again.png"]));
    }

    [Fact]
    public void Training_on_a_folder_of_PNG_images_resizes_them_to_the_model_and_caches_them()
    {
        using var sandbox = new TempDir();
        var images = sandbox["pngs"];
        Directory.CreateDirectory(Path.Combine(images, "sub"));
        var rng = new Random(3);
        for (var i = 0; i < 20; i++)
        {
            var pixels = new byte[40 * 30 * 3];
            rng.NextBytes(pixels);
            File.WriteAllBytes(Path.Combine(images, i % 2 == 0 ? "sub" : "", $"img{i:D2}.png"), ImageCodec.EncodePng(new RasterImage(40, 30, 3, pixels)));
        }

        var first = Host.Run(sandbox, "train", "--dataset", "images:pngs", "--out", "run1", "--epochs", "1", "--batch-size", "10");
        var second = Host.Run(sandbox, "train", "--dataset", "images:pngs", "--out", "run2", "--epochs", "1", "--batch-size", "10");

        Assert.True(first.Code == 0, first.Err + first.Out);
        Assert.Contains("decoding 20 files", first.Out);
        Assert.True(second.Code == 0, second.Err);
        Assert.Contains("images: 20 from", second.Out);
        Assert.Single(Directory.GetFiles(sandbox["cache/images"], "*.u8"));
    }
}
