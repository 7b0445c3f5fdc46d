using Gan.Host.Cli;

namespace Gan.Host.Tests;

public class CommandLineTests
{
    [Fact]
    public void No_arguments_mean_train_with_every_setting_left_to_the_defaults()
    {
        var p = CommandLine.parse([]);

        Assert.Equal(CommandKind.Train, p.Kind);
        var t = p.Train!;
        Assert.False(t.IsGiven("model"));
        Assert.False(t.IsGiven("dataset"));
        Assert.False(t.IsGiven("epochs"));
        Assert.False(t.IsGiven("lrDecayEpochs"));
        Assert.Empty(t.Given.Keys);
        Assert.False(t.Resume);
    }

    [Fact]
    public void Every_train_flag_is_parsed_into_the_request()
    {
        var p = CommandLine.parse(
        [
            "train", "--model", "dcgan64", "--dataset", "images:/data/celeba", "--epochs", "30", "--batch-size", "128",
            "--lr", "2e-4", "--g-lr-scale", "5", "--beta1", "0.5", "--noise-dim", "100", "--loss", "hinge", "--d-steps", "2",
            "--gp-weight", "10", "--r1-weight", "0.5", "--ema", "0.999", "--lr-decay-epochs", "10,20,25", "--image-size", "64",
            "--channels", "3", "--bbox", "list_bbox_celeba.txt", "--train-size", "1000", "--checkpoint-every", "5",
            "--keep-checkpoints", "4", "--seed", "18446744073709551615", "--threads", "2", "--device", "cpu",
            "--data-dir", "d", "--out", "o", "--resume",
        ]);

        Assert.Equal(CommandKind.Train, p.Kind);
        var r = p.Train!;
        var t = r.Settings;
        Assert.Equal(("dcgan64", "images:/data/celeba", 30, 128), (t.Model, t.Dataset, t.Epochs, t.BatchSize));
        Assert.Equal((2e-4, 5.0, 0.5, 100), (t.LearningRate, t.GeneratorLrScale, t.Beta1, t.NoiseDim));
        Assert.Equal(("hinge", 2, 10.0, 0.5, 0.999), (t.Loss, t.DSteps, t.GradientPenaltyWeight, t.R1Weight, t.EmaDecay));
        Assert.Equal([10, 20, 25], t.LrDecayEpochs);
        Assert.Equal((64, 3, "list_bbox_celeba.txt", (int?)1000, 5, 4), (t.ImageSize, t.Channels, t.BoundingBoxes, t.TrainSize, t.CheckpointEvery, t.KeepCheckpoints));
        Assert.Equal((ulong.MaxValue, 2, "cpu", "d", "o", true), (t.Seed, t.Threads, t.Device, t.DataDir, r.Out, r.Resume));
        // every flag given is marked given; settings without a flag (sampleCount) and the metrics switches are not
        Assert.Equal(
            ["batchSize", "bbox", "beta1", "channels", "checkpointEvery", "dSteps", "dataDir", "dataset", "device", "ema", "epochs", "generatorLrScale", "gpWeight",
             "imageSize", "keepCheckpoints", "learningRate", "loss", "lrDecayEpochs", "model", "noiseDim", "r1Weight", "seed", "threads", "trainSize"],
            r.Given.Keys.OrderBy(k => k, StringComparer.Ordinal));
    }

    [Fact]
    public void A_command_line_that_starts_with_a_flag_is_a_train_command_line()
    {
        var p = CommandLine.parse(["--epochs", "120"]);

        Assert.Equal(CommandKind.Train, p.Kind);
        Assert.True(p.Train!.IsGiven("epochs"));
        Assert.Equal(120, p.Train.Settings.Epochs);
    }

    [Fact]
    public void None_turns_the_learning_rate_decay_off()
    {
        var t = CommandLine.parse(["train", "--lr-decay-epochs", "none"]).Train!;
        Assert.True(t.IsGiven("lrDecayEpochs"));
        Assert.Empty(t.Settings.LrDecayEpochs);
    }

    [Fact]
    public void Sample_takes_a_run_or_a_checkpoint_a_count_an_output_and_a_seed()
    {
        var p = CommandLine.parse(["sample", "--run", "runs/x", "--count", "64", "--out", "s.png", "--seed", "3", "--no-ema"]);

        Assert.Equal(CommandKind.Sample, p.Kind);
        Assert.Equal(("runs/x", null, 64, "s.png", 3UL, false), (p.Sample!.Run, p.Sample.Checkpoint, p.Sample.Count, p.Sample.Out, p.Sample.Seed, p.Sample.UseEma));
    }

    [Fact]
    public void Bench_takes_a_model_a_batch_steps_warmup_threads_and_a_profile_switch()
    {
        var p = CommandLine.parse(["bench", "--model", "dcgan28", "--batch", "32", "--steps", "5", "--warmup", "1", "--threads", "2", "--profile"]);

        Assert.Equal(CommandKind.Bench, p.Kind);
        var b = p.Bench!;
        Assert.Equal(("dcgan28", (int?)32, 5, 1, 2, true), (b.Model, b.Batch, b.Steps, b.Warmup, b.Threads, b.Profile));
    }

    [Fact]
    public void Bench_defaults_to_every_model_with_the_model_batch_ten_steps_and_three_warm_ups()
    {
        var b = CommandLine.parse(["bench"]).Bench!;

        Assert.Equal(("all", (int?)null, 10, 3, 0, false), (b.Model, b.Batch, b.Steps, b.Warmup, b.Threads, b.Profile));
    }

    [Fact]
    public void Sample_evaluate_and_bench_take_a_device_spec_in_its_written_form_and_default_to_auto()
    {
        Assert.Equal("cuda:1", CommandLine.parse(["sample", "--run", "r", "--out", "s.png", "--device", " CUDA:1 "]).Sample!.Device);
        Assert.Equal("ilgpu-cpu", CommandLine.parse(["evaluate", "--run", "r", "--device", "ilgpu-cpu"]).Evaluate!.Device);
        Assert.Equal("opencl:0", CommandLine.parse(["bench", "--device", "opencl:0"]).Bench!.Device);
        Assert.Equal("auto", CommandLine.parse(["sample", "--run", "r", "--out", "s.png"]).Sample!.Device);
        Assert.Equal("auto", CommandLine.parse(["evaluate", "--run", "r"]).Evaluate!.Device);
        Assert.Equal("auto", CommandLine.parse(["bench"]).Bench!.Device);
    }

    [Theory]
    [InlineData("sample --run r --out s.png --device gpu", "sample")]
    [InlineData("evaluate --run r --device cuda:x", "evaluate")]
    [InlineData("bench --device tpu", "bench")]
    public void A_malformed_device_is_a_usage_error_listing_the_forms(string line, string command)
    {
        var p = CommandLine.parse(line.Split(' '));

        Assert.Equal(CommandKind.Error, p.Kind);
        Assert.StartsWith("Unknown device '", p.Text);
        Assert.Contains("--device takes auto, cpu, cuda:N, opencl:N or ilgpu-cpu", p.Text);
        Assert.EndsWith($"Run `Gan.Host {command} --help` for the options.", p.Text);
    }

    [Theory]
    [InlineData("--help")]
    [InlineData("train --help")]
    [InlineData("sample --help")]
    [InlineData("models --help")]
    [InlineData("devices --help")]
    [InlineData("classifier --help")]
    [InlineData("evaluate --help")]
    [InlineData("interpolate --help")]
    [InlineData("arithmetic --help")]
    [InlineData("report --help")]
    public void Help_is_available_on_every_command(string line)
    {
        var p = CommandLine.parse(line.Split(' '));

        Assert.Equal(CommandKind.Help, p.Kind);
        Assert.Contains("USAGE: Gan.Host", p.Text);
    }

    [Fact]
    public void Train_help_lists_every_flag_of_the_issue()
    {
        var text = CommandLine.parse(["train", "--help"]).Text;

        foreach (var flag in new[]
        {
            "--model", "--dataset", "--epochs", "--batch-size", "--lr ", "--g-lr-scale", "--beta1", "--noise-dim", "--loss",
            "--d-steps", "--gp-weight", "--ema", "--lr-decay-epochs", "--image-size", "--channels", "--checkpoint-every",
            "--seed", "--threads", "--device", "--data-dir", "--out", "--resume", "--bbox", "--eval-every", "--eval-samples", "--no-eval",
        })
        {
            Assert.Contains(flag, text);
        }
    }

    [Theory]
    [InlineData("train --frobnicate", "Unrecognized argument: '--frobnicate'.")]
    [InlineData("train --epochs many", "Parameter '--epochs' must be followed by <count>, but was 'many'.")]
    [InlineData("train --epochs", "Argument '--epochs' must be followed by <count>.")]
    [InlineData("train --epochs 1 --epochs 2", "Argument '--epochs' has been specified more than once.")]
    [InlineData("bogus", "Unknown command 'bogus'; the commands are train, sample, models, devices, bench, classifier, evaluate, interpolate, arithmetic, report.")]
    [InlineData("train --epochs 0", "--epochs must be between 1 and 1000000 (got 0).")]
    [InlineData("train --batch-size -3", "--batch-size must be between 1 and 65536 (got -3).")]
    [InlineData("train --lr -1", "--lr must be a positive number (got -1).")]
    [InlineData("train --lr nan", "--lr must be a positive number (got NaN).")]
    [InlineData("train --beta1 1.5", "--beta1 must be at least 0 and below 1 (got 1.5).")]
    [InlineData("train --ema 1", "--ema must be at least 0 and below 1 (got 1).")]
    [InlineData("train --gp-weight -2", "--gp-weight must be zero or a positive number (got -2).")]
    [InlineData("train --d-steps 0", "--d-steps must be between 1 and 1000 (got 0).")]
    [InlineData("train --channels 2", "--channels must be 1 (grey) or 3 (colour) (got 2).")]
    [InlineData("train --checkpoint-every 0", "--checkpoint-every must be at least 1 (got 0).")]
    [InlineData("train --threads -1", "--threads must be between 0 and 1024 (got -1).")]
    [InlineData("train --lr-decay-epochs 10,x", "--lr-decay-epochs takes epoch numbers of at least 1 separated by commas, e.g. 10,20,25, or none (got '10,x').")]
    [InlineData("train --lr-decay-epochs 20,10", "--lr-decay-epochs must list epochs in increasing order (got '20,10').")]
    [InlineData("train --dataset cifar10", "Unknown dataset 'cifar10'; known: mnist, fashion-mnist, stacked-mnist, emoji (64×64 colour), ring8, grid25 (2-D mixtures), images:DIR (a folder of PNG/JPEG files).")]
    [InlineData("train --dataset images:", "--dataset images:DIR needs a folder after the colon, e.g. images:/data/celeba.")]
    [InlineData("train --bbox b.txt", "--bbox crops the images of --dataset images:DIR; it does not apply to mnist.")]
    [InlineData("sample --out x.png", "sample needs --run DIR or --checkpoint FILE.")]
    [InlineData("sample --run r --checkpoint c --out x.png", "sample takes --run DIR or --checkpoint FILE, not both.")]
    [InlineData("sample --run r", "sample needs --out FILE.png, the image to write.")]
    [InlineData("sample --run r --out x.png --count 0", "--count must be between 1 and 4096 (got 0).")]
    [InlineData("models --channels 4", "--channels must be 1 (grey) or 3 (colour) (got 4).")]
    [InlineData("bench --steps 0", "--steps must be between 1 and 100000 (got 0).")]
    [InlineData("bench --batch 0", "--batch must be between 1 and 65536 (got 0).")]
    [InlineData("bench --warmup -1", "--warmup must be between 0 and 100000 (got -1).")]
    [InlineData("bench --threads x", "Parameter '--threads' must be followed by <count>, but was 'x'.")]
    public void A_bad_command_line_gives_one_paragraph_naming_the_problem_and_where_help_is(string line, string message)
    {
        var p = CommandLine.parse(line.Split(' '));

        Assert.Equal(CommandKind.Error, p.Kind);
        Assert.StartsWith(message, p.Text);
        Assert.Contains("--help", p.Text);
        Assert.DoesNotContain("\n", p.Text);
    }
}
