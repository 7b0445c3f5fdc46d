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
        var grid = Png.Decode(File.ReadAllBytes(Path.Combine(run, "samples", "epoch-0001.png")));
        Assert.Equal(3, grid.Channels);
        Assert.True(e.Code == 0, e.Err + e.Out);
        Assert.Contains("modes covered (of 1,000)", e.Out);
        using var json = System.Text.Json.JsonDocument.Parse(File.ReadAllText(sandbox["m.json"]));
        Assert.InRange(json.RootElement.GetProperty("modes_covered").GetInt32(), 1, 12);
    }

    [Theory]
    [InlineData("train --dataset stacked-mnist", "No zoo model makes 3×28×28 images; dcgan64 (--channels 3) and valid64 train on Stacked MNIST resized to 64×64")]
    [InlineData("train --dataset stacked-mnist --model dcgan64 --channels 1", "stacked-mnist has 3 channels")]
    [InlineData("train --dataset ring8 --model mlp", "ring8 is a mixture of 2-D points; mlp generates images")]
    [InlineData("train --dataset cifar10", "Unknown dataset 'cifar10'; known: mnist, fashion-mnist, stacked-mnist, ring8, grid25")]
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
            File.WriteAllBytes(sandbox[$"imgs/{i}.png"], Png.Encode(new RasterImage(28, 28, 1, new byte[784])));
        }

        var r = Host.Run(sandbox, "train", "--dataset", "images:" + sandbox["imgs"], "--eval-every", "1", "--out", sandbox["run"]);

        Assert.Equal(2, r.Code);
        Assert.Contains("There are no metrics for the dataset images:", r.Error);
        Assert.False(Directory.Exists(sandbox["run"]));
    }
}
