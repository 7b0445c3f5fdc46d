using System.Globalization;
using Gan.Host.Io;

namespace Gan.Host.Tests;

/// <summary>The evaluation datasets of `train` (stacked-mnist, ring8, grid25) and `train --eval-every`.</summary>
public class DatasetTests
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    [Fact]
    public void Eval_every_records_the_metrics_in_metrics_csv_and_resume_keeps_them_in_step_with_the_epochs()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var run = sandbox["run"];

        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "3", "--eval-every", "2", "--eval-samples", "20"));

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("metrics after epoch 2 (20 samples", r.Out);
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.csv"));
        Assert.Equal("epoch,inception_score,inception_score_std,fcd,kid,kid_std,class_kl", lines[0]);
        // every 2 epochs, and after the last
        Assert.Equal(["2", "3"], lines[1..].Select(l => l.Split(',')[0]));
        Assert.All(lines[1..], l => Assert.All(l.Split(',')[1..], v => Assert.True(double.IsFinite(double.Parse(v, C)))));

        // resuming from the epoch-2 checkpoint drops the row of epoch 3 and writes it again
        File.Delete(Path.Combine(run, "checkpoints", "epoch-0003.safetensors"));
        var resumed = Host.Run(sandbox, "train", "--resume", "--out", run, "--data-dir", sandbox["data"]);
        Assert.True(resumed.Code == 0, resumed.Err + resumed.Out);
        Assert.Equal(lines, File.ReadAllLines(Path.Combine(run, "metrics.csv")));
    }

    [Fact]
    public void Stacked_mnist_trains_dcgan64_on_three_digit_images_and_evaluate_counts_its_modes()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var run = sandbox["run"];

        var r = Host.Run(sandbox, "train", "--model", "dcgan64", "--dataset", "stacked-mnist", "--data-dir", sandbox["data"], "--train-size", "8",
            "--batch-size", "4", "--epochs", "1", "--out", run);
        var e = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "12", "--json", sandbox["m.json"]);

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("data stacked-mnist: 8 images", r.Out);
        var grid = ImageCodec.Read(Path.Combine(run, "samples", "epoch-0001.png"));
        Assert.Equal(3, grid.Channels);
        Assert.True(e.Code == 0, e.Err + e.Out);
        Assert.Contains("modes covered (of 1,000)", e.Out);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(sandbox["m.json"]));
        Assert.InRange(json.RootElement.GetProperty("modes_covered").GetInt32(), 1, 12);
    }

    [Fact]
    public void Ring8_trains_toy2d_on_points_with_scatter_plots_and_mode_metrics()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];

        var r = Host.Run(sandbox, "train", "--dataset", "ring8", "--train-size", "400", "--batch-size", "100", "--epochs", "2", "--eval-every", "1",
            "--eval-samples", "200", "--out", run);
        var e = Host.Run(sandbox, "evaluate", "--run", run, "--json", sandbox["m.json"]);
        var s = Host.Run(sandbox, "sample", "--run", run, "--count", "500", "--out", sandbox["s.png"]);

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("model toy2d", r.Out); // the default model of a mixture
        Assert.Contains("data ring8: 400 points", r.Out);
        var lines = File.ReadAllLines(Path.Combine(run, "metrics.csv"));
        Assert.Equal("epoch,modes_covered,modes_covered_20,high_quality_share,kl", lines[0]);
        Assert.Equal(3, lines.Length);
        var plot = ImageCodec.Read(Path.Combine(run, "samples", "epoch-0002.png"));
        Assert.Equal((320, 320, 3), (plot.Width, plot.Height, plot.Channels));
        Assert.Contains(plot.Pixels, p => p < 100); // dots and mode marks on white

        Assert.True(e.Code == 0, e.Err + e.Out);
        Assert.Contains("ring8: 2,500 samples", e.Out);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(sandbox["m.json"]));
        var m = json.RootElement;
        Assert.InRange(m.GetProperty("modes_covered").GetInt32(), 0, 8);
        Assert.True(m.GetProperty("modes_covered_20").GetInt32() <= m.GetProperty("modes_covered").GetInt32());
        Assert.InRange(m.GetProperty("high_quality_share").GetDouble(), 0, 1);
        Assert.Equal(2500, m.GetProperty("samples").GetInt32());

        Assert.True(s.Code == 0, s.Err);
        Assert.Equal(320, ImageCodec.Read(sandbox["s.png"]).Width);
        var walk = Host.Run(sandbox, "interpolate", "--run", run, "--out", sandbox["i.png"]);
        Assert.Equal(2, walk.Code);
        Assert.Contains("toy2d generates 2-D points", walk.Error);
    }

    [Theory]
    [InlineData("train --dataset mnist --model toy2d", "toy2d generates 2-D points, so it trains on the mixtures ring8 and grid25 only")]
    [InlineData("train --dataset grid25 --model toy2d --channels 1", "--channels and --image-size describe images")]
    [InlineData("train --dataset stacked-mnist", "No zoo model makes 3×28×28 images; dcgan64 (--channels 3) and valid64 train on Stacked MNIST resized to 64×64")]
    [InlineData("train --dataset stacked-mnist --model dcgan64 --channels 1", "stacked-mnist has 3 channels")]
    [InlineData("train --dataset ring8 --model mlp", "ring8 is a mixture of 2-D points; mlp generates images. Train it with toy2d or toy2d-mbd")]
    [InlineData("train --dataset cifar10", "Unknown dataset 'cifar10'; known: mnist, fashion-mnist, stacked-mnist, emoji (64×64 colour), ring8, grid25")]
    [InlineData("train --eval-every -1", "--eval-every must be between 0 and 1000000 (got -1)")]
    [InlineData("train --eval-samples 3", "--eval-samples must be between 10 and 1000000 (got 3)")]
    public void Datasets_that_do_not_fit_the_model_are_refused_with_the_models_that_fit(string line, string expected)
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, line.Split(' '));

        Assert.Equal(2, r.Code);
        Assert.Contains(expected, r.Error);
    }

    [Fact]
    public void Eval_every_on_an_image_folder_is_refused_before_training()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["imgs"]);
        for (var i = 0; i < 4; i++)
        {
            File.WriteAllBytes(sandbox[$"imgs/{i}.png"], ImageCodec.EncodePng(new RasterImage(28, 28, 1, new byte[784])));
        }

        var r = Host.Run(sandbox, "train", "--dataset", "images:" + sandbox["imgs"], "--eval-every", "1", "--out", sandbox["run"]);

        Assert.Equal(2, r.Code);
        Assert.Contains("There are no metrics for the dataset images:", r.Error);
        Assert.False(Directory.Exists(sandbox["run"]));
    }
}
