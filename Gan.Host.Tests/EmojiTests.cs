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
    private static (string Tarball, string Digest, List<(string Name, byte[] Png)> Files) Package(TempDir sandbox)
    {
        var files = new List<(string, byte[])>();
        for (var i = 0; i < 12; i++)
        {
            // file names sort in the order of i; image 9 (the 10th) is held out
            files.Add(($"1f6{i:D2}.png", i == 9 ? Rgba(0, 0, 255, 255, 32) : Rgba((byte)(i * 20), 100, 50, (byte)(i == 0 ? 0 : 255))));
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
        // image 0 is fully transparent: white; image 1 is opaque (20, 100, 50); planar R, G, B
        Assert.All(trainSet.Image(0).ToArray(), v => Assert.Equal(255, v));
        Assert.Equal(new byte[] { 20, 100, 50 }, new[] { trainSet.Image(1)[0], trainSet.Image(1)[4096], trainSet.Image(1)[8192] });
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
}
