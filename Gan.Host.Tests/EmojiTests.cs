using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Gan.Host.Data;
using Gan.Host.Io;
using SkiaSharp;

namespace Gan.Host.Tests;

/// <summary>The emoji data set, from small generated packages (nothing is downloaded).</summary>
public class EmojiTests
{
    /// <summary>A 64×64 (or <paramref name="size"/>) RGBA PNG of one colour and alpha.</summary>
    private static byte[] Rgba(byte r, byte g, byte b, byte a, int size = 64)
    {
        var info = new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        var px = new byte[size * size * 4];
        for (var i = 0; i < size * size; i++)
        {
            (px[4 * i], px[(4 * i) + 1], px[(4 * i) + 2], px[(4 * i) + 3]) = (r, g, b, a);
        }

        System.Runtime.InteropServices.Marshal.Copy(px, 0, bitmap.GetPixels(), px.Length);
        return bitmap.Encode(SKEncodedImageFormat.Png, 100).ToArray();
    }

    /// <summary>A package like the real one: 12 images in img/google/64 (plus other files to skip).</summary>
    private static (string Tarball, string Digest, List<(string Name, byte[] Png)> Files) Package(TempDir sandbox, int count = 12)
    {
        var files = new List<(string, byte[])>();
        for (var i = 0; i < count; i++)
        {
            // file names sort in the order of i; image 9 (the 10th) is held out
            files.Add(($"1f6{i:D2}.png", i == 9 ? Rgba(0, 0, 255, 255, 32) : Rgba((byte)(i * 20 % 256), (byte)(100 + i), 50, (byte)(i == 0 ? 0 : 255))));
        }

        var tgz = sandbox["emoji.tgz"];
        using (var file = File.Create(tgz))
        using (var gz = new GZipStream(file, CompressionLevel.Fastest))
        using (var tar = new TarWriter(gz))
        {
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/README.md") { DataStream = new MemoryStream("hi"u8.ToArray()) });
            tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/img/google/32/1f600.png") { DataStream = new MemoryStream(Rgba(1, 2, 3, 255, 32)) });
            foreach (var (name, png) in files.AsEnumerable().Reverse())
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, "package/img/google/64/" + name) { DataStream = new MemoryStream(png) });
            }
        }

        // the digest as `sha256sum` of each file, sorted with LC_ALL=C, would list it
        var listing = string.Concat(files.OrderBy(f => f.Item1, StringComparer.Ordinal)
            .Select(f => $"{f.Item1} {Convert.ToHexStringLower(SHA256.HashData(f.Item2))}\n"));
        return (tgz, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(listing))), files);
    }

    [Fact]
    public void A_package_is_unpacked_composited_on_white_with_every_tenth_image_held_out()
    {
        using var sandbox = new TempDir();
        var (tgz, digest, _) = Package(sandbox);

        var (train, held) = Emoji.Build(tgz, sandbox["data"], null, digest);

        Assert.Equal((11, 1), (train, held));
        var ctx = new HostContext { Out = TextWriter.Null, Err = TextWriter.Null, FindNpm = () => throw new InvalidOperationException("no fetch expected") };
        using var trainSet = Emoji.Load(sandbox["data"], heldOut: false, ctx);
        using var heldSet = Emoji.Load(sandbox["data"], heldOut: true, ctx);
        Assert.Equal((11, 3, 64, 64), (trainSet.Count, trainSet.Channels, trainSet.Height, trainSet.Width));
        Assert.Equal(1, heldSet.Count);
        // image 0 is fully transparent: white; image 1 is opaque (20, 101, 50); planar R, G, B
        Assert.All(trainSet.Image(0).ToArray(), v => Assert.Equal(255, v));
        Assert.Equal(new byte[] { 20, 101, 50 }, new[] { trainSet.Image(1)[0], trainSet.Image(1)[4096], trainSet.Image(1)[8192] });
        // training image 9 is file 10 (file 9 is held out); the held-out one was 32×32 blue, resized
        Assert.Equal(200, trainSet.Image(9)[0]);
        Assert.Equal(new byte[] { 0, 0, 255 }, new[] { heldSet.Image(0)[0], heldSet.Image(0)[4096], heldSet.Image(0)[8192] });
    }

    [Fact]
    public void The_pinned_digest_is_over_the_sorted_listing_of_names_and_hashes()
    {
        using var sandbox = new TempDir();
        var (_, digest, files) = Package(sandbox);

        Assert.Equal(digest, Emoji.Digest(files.AsEnumerable().Reverse().Select(f => (f.Name, f.Png))));
        Assert.Equal(64, Emoji.ImagesDigest.Length);
    }

    [Fact]
    public void Images_that_differ_from_the_pinned_digest_are_refused_and_nothing_is_written()
    {
        using var sandbox = new TempDir();
        var (tgz, _, _) = Package(sandbox);

        var e = Assert.Throws<UserError>(() => Emoji.Build(tgz, sandbox["data"], null, Emoji.ImagesDigest));

        Assert.Contains("The 12 images in package/img/google/64/", e.Message);
        Assert.Contains($"not the pinned {Emoji.ImagesDigest}", e.Message);
        Assert.False(Directory.Exists(sandbox["data"]));
    }

    [Fact]
    public void A_tarball_with_another_SHA_256_is_refused_before_it_is_unpacked()
    {
        using var sandbox = new TempDir();
        Directory.CreateDirectory(sandbox["cache/emoji"]);
        var (tgz, _, _) = Package(sandbox);
        File.Copy(tgz, sandbox["cache/emoji/" + Emoji.Tarball]);

        var r = Host.Run(sandbox, "train", "--model", "dcgan64", "--dataset", "emoji", "--epochs", "1");

        Assert.Equal(1, r.Code);
        Assert.Contains($"{Emoji.Tarball} has SHA-256", r.Error);
        Assert.Contains($"not the pinned {Emoji.TarballSha256}", r.Error);
        Assert.False(File.Exists(sandbox["cache/emoji/" + Emoji.TrainFile]));
    }

    [Fact]
    public void Without_npm_the_message_says_how_to_get_the_package()
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, "train", "--model", "dcgan64", "--dataset", "emoji");

        Assert.Equal(1, r.Code);
        Assert.Contains("npm, which fetches them (as the package emoji-datasource-google@16.0.0), is not installed", r.Error);
        Assert.Contains($"copy {Emoji.Tarball} (SHA-256 {Emoji.TarballSha256}) into {sandbox["cache/emoji"]}", r.Error);
    }

    [Fact]
    public void A_colour_model_trains_on_prepared_emoji_data()
    {
        using var sandbox = new TempDir();
        var (tgz, digest, _) = Package(sandbox);
        Emoji.Build(tgz, sandbox["cache/emoji"], null, digest);

        var r = Host.Run(sandbox, "train", "--model", "dcgan64", "--dataset", "emoji", "--epochs", "1", "--batch-size", "4", "--out", "run");

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.Contains("data emoji: 11 images", r.Out);
        var grid = ImageCodec.Read(sandbox["run/samples/epoch-0001.png"]);
        Assert.Equal(3, grid.Channels);
    }

    private static void PrepareScoringData(TempDir sandbox)
    {
        // 80 images: 8 held out, enough for density/coverage's 5 neighbours
        var (tgz, digest, _) = Package(sandbox, 80);
        Emoji.Build(tgz, sandbox["cache/emoji"], null, digest);
    }

    [Fact]
    public void ResNet18_features_of_real_images_are_512_finite_values_that_tell_images_apart()
    {
        using var net = Gan.Host.Eval.ResNet18Features.Open(threads: 2);
        var red = new byte[3 * 64 * 64];
        var face = new byte[3 * 64 * 64];
        for (var i = 0; i < 4096; i++)
        {
            red[i] = 230;
            // a yellow disc on white
            var (x, y) = ((i % 64) - 32, (i / 64) - 32);
            var inside = (x * x) + (y * y) < 26 * 26;
            face[i] = 255;
            face[4096 + i] = inside ? (byte)200 : (byte)255;
            face[8192 + i] = inside ? (byte)0 : (byte)255;
        }

        var a = net.Of(red, 64, 64);
        var b = net.Of(face, 64, 64);

        Assert.Equal(512, a.Length);
        Assert.All(a.Concat(b), v => Assert.True(float.IsFinite(v) && v >= 0, $"{v}"));
        Assert.Equal(a, net.Of(red, 64, 64));
        Assert.True(a.Zip(b, (u, v) => Math.Abs(u - v)).Sum() > 1, "features of different images differ");
        // a batch goes through the same path, in order
        var rows = net.Of(2, i => i == 0 ? red : face, 64, 64);
        Assert.Equal(a.Select(v => (double)v), rows[0]);
        Assert.Equal(b.Select(v => (double)v), rows[1]);
    }

    [Fact]
    public void Evaluate_scores_a_folder_and_the_real_images_against_the_held_out_split()
    {
        using var sandbox = new TempDir();
        PrepareScoringData(sandbox);
        Directory.CreateDirectory(sandbox["imgs"]);
        for (var i = 0; i < 10; i++)
        {
            File.WriteAllBytes(sandbox[$"imgs/{i}.png"], ImageCodec.EncodePng(new RasterImage(32, 32, 3, Enumerable.Repeat((byte)(i * 25), 32 * 32 * 3).ToArray())));
        }

        var folder = Host.Run(sandbox, "evaluate", "--images", "imgs", "--dataset", "emoji", "--features", "resnet18", "--json", "f.json");
        var real = Host.Run(sandbox, "evaluate", "--real", "--dataset", "emoji", "--samples", "20", "--json", "r.json");

        Assert.True(folder.Code == 0, folder.Err + folder.Out);
        Assert.Contains("against emoji's held-out images on ImageNet ResNet-18 features", folder.Out);
        Assert.Contains("ImageNet ResNet-18 features of the 8 held-out images (once; cached", folder.Out);
        Assert.True(real.Code == 0, real.Err + real.Out);
        Assert.DoesNotContain("features of the 8 held-out images", real.Out); // cached by the first run
        using var f = System.Text.Json.JsonDocument.Parse(File.ReadAllText(sandbox["f.json"]));
        using var r = System.Text.Json.JsonDocument.Parse(File.ReadAllText(sandbox["r.json"]));
        foreach (var key in new[] { "fid_rn18", "kid_rn18", "kid_rn18_std", "precision", "recall", "density", "coverage" })
        {
            Assert.True(f.RootElement.GetProperty(key).ValueKind == System.Text.Json.JsonValueKind.Number, key);
        }

        // grey squares are far from the emoji-like training colours; real images are closer
        Assert.True(r.RootElement.GetProperty("fid_rn18").GetDouble() < f.RootElement.GetProperty("fid_rn18").GetDouble());
        Assert.Equal(20, r.RootElement.GetProperty("samples").GetInt32());
    }

    [Fact]
    public void Training_on_emoji_with_eval_every_records_the_colour_metrics_and_the_report_shows_them()
    {
        using var sandbox = new TempDir();
        PrepareScoringData(sandbox);

        var r = Host.Run(sandbox, "train", "--model", "valid64", "--dataset", "emoji", "--epochs", "1", "--batch-size", "8", "--train-size", "16",
            "--eval-every", "1", "--eval-samples", "10", "--out", "run");

        Assert.True(r.Code == 0, r.Err + r.Out);
        var csv = File.ReadAllLines(sandbox["run/metrics.csv"]);
        Assert.Equal("epoch,fid_rn18,kid_rn18,kid_rn18_std,precision,recall,density,coverage", csv[0]);
        Assert.StartsWith("1,", csv[1]);
        Assert.Contains("metrics after epoch 1 (10 samples", r.Out);
        var report = Host.Run(sandbox, "report", "--run", sandbox["run"]);
        Assert.True(report.Code == 0, report.Err + report.Out);
        var html = File.ReadAllText(sandbox["run/report.html"]);
        foreach (var chart in new[] { "fid_rn18", "kid_rn18", "precision", "recall", "density", "coverage" })
        {
            Assert.Contains($"aria-label=\"{chart}\"", html);
        }
    }

    [Fact]
    public void Features_resnet18_is_refused_for_a_run_on_grey_digits()
    {
        using var sandbox = new TempDir();
        Assert.Contains("--features resnet18 scores colour data (emoji)", Host.Run(sandbox, "evaluate", "--images", "x", "--dataset", "mnist", "--features", "resnet18").Error);
    }
}
