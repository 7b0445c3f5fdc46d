using System.Text.Json;
using Gan.Host.Io;

namespace Gan.Host.Tests;

/// <summary>`classifier` and `evaluate` on tiny fake data (the tests' one-epoch classifier recipe, never the full one).</summary>
public class EvaluationTests
{
    /// <summary>A one-epoch mlp run on fake labelled MNIST in the sandbox, with its checkpoint.</summary>
    internal static string TinyRun(TempDir sandbox, string name = "run", params string[] extra)
    {
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var run = sandbox[name];
        // --no-eval: these runs are the subjects of `evaluate`, which must find no backbone cached yet
        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, [.. extra.Length > 0 ? extra : ["--epochs", "1"], "--no-eval"]));
        Assert.True(r.Code == 0, r.Err + r.Out);
        return run;
    }

    private static JsonElement ReadJson(string path) => JsonDocument.Parse(File.ReadAllText(path)).RootElement;

    [Fact]
    public void Classifier_command_caches_weights_features_and_the_measured_accuracy()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);

        var r = Host.Run(sandbox, "classifier", "--dataset", "mnist", "--data-dir", sandbox["data"]);

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("classifier mnist: epoch 1/1", r.Out);
        Assert.Contains("test accuracy", r.Out);
        var dir = sandbox["cache/classifiers"];
        var weights = Safetensors.Read(File.ReadAllBytes(Path.Combine(dir, "mnist.safetensors")));
        Assert.Contains(weights.Tensors, t => t.Name == "features.0.weight" && t.Shape.SequenceEqual([32, 1, 3, 3]));
        Assert.Contains(weights.Tensors, t => t.Name == "features.1.running_mean");
        var features = Safetensors.Read(File.ReadAllBytes(Path.Combine(dir, "mnist-test-features.safetensors"))).Tensors.Single();
        Assert.Equal([32, 128], features.Shape);
        var info = ReadJson(Path.Combine(dir, "mnist.json"));
        var accuracy = info.GetProperty("test_accuracy").GetDouble();
        Assert.InRange(accuracy, 0, 1);
        Assert.Equal(32, info.GetProperty("test_images").GetInt32());
        Assert.Equal(16, info.GetProperty("recipe").GetProperty("batch_size").GetInt32());
        Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
    }

    [Fact]
    public void Evaluate_trains_the_backbone_on_first_use_then_reuses_it_and_writes_the_json()
    {
        using var sandbox = new TempDir();
        var run = TinyRun(sandbox);
        var json = sandbox["m.json"];

        var first = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "40", "--json", json);
        var second = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "40");

        Assert.True(first.Code == 0, first.Err + first.Out);
        Assert.Contains("training it now", first.Out);
        Assert.True(second.Code == 0, second.Err + second.Out);
        Assert.DoesNotContain("training it now", second.Out);
        foreach (var label in new[] { "Inception Score (10 splits)", "FCD vs the real test set", "KID", "class histogram KL to uniform" })
        {
            Assert.Contains(label, first.Out);
        }

        var m = ReadJson(json);
        foreach (var key in new[] { "inception_score", "inception_score_std", "fcd", "kid", "class_kl" })
        {
            Assert.True(double.IsFinite(m.GetProperty(key).GetDouble()), key);
        }

        Assert.InRange(m.GetProperty("inception_score").GetDouble(), 1, 10);
        Assert.True(m.GetProperty("fcd").GetDouble() >= 0);
        Assert.Equal(40, m.GetProperty("samples").GetInt32());

        // the same seed scores the same samples: the table repeats exactly
        Assert.Equal(first.Out[first.Out.IndexOf("mnist: 40", StringComparison.Ordinal)..].Split("wrote")[0], second.Out[second.Out.IndexOf("mnist: 40", StringComparison.Ordinal)..]);
    }

    [Fact]
    public void Evaluate_scores_a_chosen_checkpoint_of_the_run_by_its_name()
    {
        using var sandbox = new TempDir();
        var run = TinyRun(sandbox, "run", "--epochs", "2", "--checkpoint-every", "1");

        var first = Host.Run(sandbox, "evaluate", "--run", run, "--checkpoint", "epoch-0001.safetensors", "--samples", "20");
        var newest = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "20");
        var missing = Host.Run(sandbox, "evaluate", "--run", run, "--checkpoint", "epoch-0009.safetensors");

        Assert.True(first.Code == 0, first.Err + first.Out);
        Assert.Contains("checkpoints/epoch-0001.safetensors (1 epochs", first.Out);
        Assert.Contains("checkpoints/epoch-0002.safetensors (2 epochs", newest.Out);
        Assert.Equal(1, missing.Code);
        Assert.Contains("epoch-0009.safetensors does not exist", missing.Error);
    }

    [Fact]
    public void Evaluate_images_scores_a_folder_of_pngs_and_the_real_test_images_beat_blank_ones()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var test = Idx.Read(sandbox["data/t10k-images-idx3-ubyte"]);
        Directory.CreateDirectory(sandbox["real/sub"]);
        Directory.CreateDirectory(sandbox["blank"]);
        for (var i = 0; i < 30; i++)
        {
            var pixels = test.Data.AsSpan(i * 784, 784).ToArray();
            File.WriteAllBytes(sandbox[$"real/sub/{i:D3}.png"], ImageCodec.EncodePng(new RasterImage(28, 28, 1, pixels)));
            File.WriteAllBytes(sandbox[$"blank/{i:D3}.png"], ImageCodec.EncodePng(new RasterImage(28, 28, 1, new byte[784])));
        }

        var real = Host.Run(sandbox, "evaluate", "--images", sandbox["real"], "--dataset", "mnist", "--data-dir", sandbox["data"], "--json", sandbox["real.json"]);
        var blank = Host.Run(sandbox, "evaluate", "--images", sandbox["blank"], "--dataset", "mnist", "--data-dir", sandbox["data"], "--json", sandbox["blank.json"]);

        Assert.True(real.Code == 0, real.Err + real.Out);
        Assert.True(blank.Code == 0, blank.Err + blank.Out);
        Assert.Contains("scoring 30 images", real.Out);
        // blank images all look alike: one class, an Inception Score of 1 and a large distance to the test set
        var b = ReadJson(sandbox["blank.json"]);
        var t = ReadJson(sandbox["real.json"]);
        Assert.Equal(1.0, b.GetProperty("inception_score").GetDouble(), 6);
        Assert.Equal(Math.Log(10), b.GetProperty("class_kl").GetDouble(), 6);
        Assert.True(t.GetProperty("fcd").GetDouble() < b.GetProperty("fcd").GetDouble());
        Assert.True(t.GetProperty("inception_score").GetDouble() > 1.0);
    }

    [Fact]
    public void A_damaged_classifier_cache_is_retrained_with_a_message()
    {
        using var sandbox = new TempDir();
        var run = TinyRun(sandbox);
        Assert.Equal(0, Host.Run(sandbox, "classifier", "--data-dir", sandbox["data"]).Code);
        File.WriteAllBytes(sandbox["cache/classifiers/mnist.safetensors"], [1, 2, 3]);

        var r = Host.Run(sandbox, "evaluate", "--run", run, "--samples", "20");

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("is damaged in the cache", r.Out);
        Assert.True(Safetensors.Read(File.ReadAllBytes(sandbox["cache/classifiers/mnist.safetensors"])).Tensors.Count > 10);
    }

    [Fact]
    public void Evaluate_real_scores_the_dataset_itself_as_the_ceiling()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);

        var mnist = Host.Run(sandbox, "evaluate", "--real", "--dataset", "mnist", "--data-dir", sandbox["data"], "--samples", "40", "--json", sandbox["m.json"]);
        var ring = Host.Run(sandbox, "evaluate", "--real", "--dataset", "ring8", "--json", sandbox["r.json"]);
        var stacked = Host.Run(sandbox, "evaluate", "--real", "--dataset", "stacked-mnist", "--data-dir", sandbox["data"], "--samples", "200");

        Assert.True(mnist.Code == 0, mnist.Err + mnist.Out);
        Assert.Contains("scoring 40 real samples of mnist", mnist.Out);
        Assert.True(ReadJson(sandbox["m.json"]).GetProperty("inception_score").GetDouble() > 1);
        Assert.True(ring.Code == 0, ring.Err + ring.Out);
        // the mixture's own points cover every mode evenly; 1 − e^(−9/2) = 98.9 % of a 2-D Gaussian lies within 3σ
        var r = ReadJson(sandbox["r.json"]);
        Assert.Equal(8, r.GetProperty("modes_covered_20").GetInt32());
        Assert.InRange(r.GetProperty("high_quality_share").GetDouble(), 0.98, 0.995);
        Assert.True(r.GetProperty("kl").GetDouble() < 0.01);
        Assert.True(stacked.Code == 0, stacked.Err + stacked.Out);
        Assert.Contains("modes covered (of 1,000)", stacked.Out);
    }

    [Theory]
    [InlineData("evaluate --real", "evaluate --real needs --dataset mnist, fashion-mnist, stacked-mnist, emoji, ring8 or grid25")]
    [InlineData("evaluate --real --dataset mnist --run r", "evaluate --real scores the dataset itself; it takes no --images, --run or --checkpoint")]
    [InlineData("evaluate --dataset mnist", "evaluate needs --run DIR (or --checkpoint FILE), or --images DIR with --dataset")]
    [InlineData("evaluate --images x", "evaluate --images DIR needs --dataset mnist or fashion-mnist")]
    [InlineData("evaluate --images x --dataset cifar10", "scores with the mnist or fashion-mnist classifier, or against emoji's held-out images (got --dataset 'cifar10')")]
    [InlineData("evaluate --images x --dataset mnist --features resnet18", "--features resnet18 scores colour data (emoji); mnist is scored with its own metrics")]
    [InlineData("evaluate --images x --dataset emoji --features inception", "--features: unknown features 'inception'")]
    [InlineData("evaluate --images x --run y --dataset mnist", "not both")]
    [InlineData("evaluate --run y --dataset mnist", "--dataset goes with evaluate --images")]
    [InlineData("evaluate --run y --samples 5", "--samples must be between 10 and 1000000 (got 5)")]
    [InlineData("evaluate --run y --json", "--json")]
    [InlineData("classifier --dataset cifar10", "mnist and fashion-mnist only (got --dataset 'cifar10')")]
    public void Bad_evaluate_and_classifier_command_lines_are_refused_with_a_usage_error(string line, string expected)
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, line.Split(' '));

        Assert.Equal(2, r.Code);
        Assert.Contains(expected, r.Error);
    }

    [Fact]
    public void Evaluate_refuses_missing_runs_folders_and_too_few_images_clearly()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        Directory.CreateDirectory(sandbox["few"]);
        for (var i = 0; i < 3; i++)
        {
            File.WriteAllBytes(sandbox[$"few/{i}.png"], ImageCodec.EncodePng(new RasterImage(28, 28, 1, new byte[784])));
        }

        Directory.CreateDirectory(sandbox["empty"]);

        var noRun = Host.Run(sandbox, "evaluate", "--run", sandbox["nope"]);
        var noFolder = Host.Run(sandbox, "evaluate", "--images", sandbox["nope"], "--dataset", "mnist");
        var empty = Host.Run(sandbox, "evaluate", "--images", sandbox["empty"], "--dataset", "mnist");
        var few = Host.Run(sandbox, "evaluate", "--images", sandbox["few"], "--dataset", "mnist", "--data-dir", sandbox["data"]);

        Assert.Equal((1, $"The run directory {sandbox["nope"]} (--run) does not exist."), (noRun.Code, noRun.Error));
        Assert.Equal((1, $"The image folder {sandbox["nope"]} (--images) does not exist."), (noFolder.Code, noFolder.Error));
        Assert.Contains("holds no PNG or JPEG files", empty.Error);
        Assert.Equal(2, few.Code);
        Assert.Contains("need at least 10 images", few.Error);
    }

    [Fact]
    public void Evaluate_says_which_datasets_have_metrics_for_a_run_on_an_image_folder()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["imgs"]);
        for (var i = 0; i < 8; i++)
        {
            File.WriteAllBytes(sandbox[$"imgs/{i}.png"], ImageCodec.EncodePng(new RasterImage(28, 28, 1, Enumerable.Repeat((byte)(i * 30), 784).ToArray())));
        }

        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, "train", "--dataset", "images:" + sandbox["imgs"], "--epochs", "1", "--batch-size", "4", "--out", run).Code);

        var r = Host.Run(sandbox, "evaluate", "--run", run);

        Assert.Equal(2, r.Code);
        Assert.Contains("There are no metrics for the dataset images:", r.Error);
    }

    [Fact]
    public void The_classifier_needs_labelled_training_and_test_files_and_names_the_missing_ones()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeMnist(sandbox["data"]);

        var r = Host.Run(sandbox, "classifier", "--data-dir", sandbox["data"]);

        Assert.Equal(1, r.Code);
        Assert.Contains("has no train-labels-idx1-ubyte", r.Error);
    }
}
