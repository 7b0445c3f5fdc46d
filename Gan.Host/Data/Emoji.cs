using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Gan.Host.Io;

namespace Gan.Host.Data;

/// <summary>
/// `emoji`: Google's Noto Color Emoji at 64×64 (Apache License 2.0), from the npm package
/// emoji-datasource-google (MIT), fetched on first use like MNIST. Each PNG is composited on white
/// and kept as RGB; every tenth image in file-name order is held out for the metrics.
/// </summary>
internal static class Emoji
{
    /// <summary>The npm package that carries the images, pinned.</summary>
    public const string Package = "emoji-datasource-google@16.0.0";

    /// <summary>The tarball `npm pack` writes (a copy put into the data directory is used as it is).</summary>
    public const string Tarball = "emoji-datasource-google-16.0.0.tgz";

    /// <summary>SHA-256 of <see cref="Tarball"/>.</summary>
    public const string TarballSha256 = "fb5fd131b362aab7a55542d2a147a79708cce0a8b1c1bbacd470172708b5c438";

    /// <summary>
    /// SHA-256 of the listing of the package's img/google/64/*.png: one "NAME SHA256\n" line per file
    /// (lower-case hex), in ordinal name order (`sha256sum` of each file, sorted with LC_ALL=C).
    /// </summary>
    public const string ImagesDigest = "dcf91d85a354de815e85bfd8be3a2fcfe4dc5bca445dc2ab5179785514f6fa15";

    /// <summary>The folder of the 64×64 images inside the package.</summary>
    public const string ImageFolderInPackage = "package/img/google/64/";

    public const int Size = 64;

    /// <summary>Every <see cref="HeldOutEvery"/>-th image (in file-name order: the 10th, 20th, …) is held out.</summary>
    public const int HeldOutEvery = 10;

    public const string TrainFile = "emoji-train-idx4-ubyte";
    public const string HeldOutFile = "emoji-heldout-idx4-ubyte";

    // bounds on what the unpacker holds before the digest is checked (the real package: 3,786 files, < 20 KB each)
    private const int MaxImages = 20_000;
    private const long MaxImageBytes = 1 << 20;

    /// <summary>True for the images held out of training (index in file-name order).</summary>
    public static bool IsHeldOut(int index) => index % HeldOutEvery == HeldOutEvery - 1;

    private static string ManualInstructions(string dir) =>
        $"run `npm pack {Package}` on a machine that has npm and copy {Tarball} (SHA-256 {TarballSha256}) into {dir}";

    /// <summary>The training (or held-out) images, 3×64×64, fetched and prepared first when missing.</summary>
    public static ImageSet Load(string dir, bool heldOut, HostContext ctx)
    {
        var train = Path.Combine(dir, TrainFile);
        var held = Path.Combine(dir, HeldOutFile);
        WriterLock.Once(
            Path.Combine(dir, NpmPack.FetchLock),
            $"the emoji images into {dir}",
            ctx.Info,
            () => File.Exists(train) && File.Exists(held),
            () => Fetch(dir, ctx));

        var path = heldOut ? held : train;
        var idx = Idx.Read(path);
        var d = idx.Dimensions;
        if (d.Length != 4 || d[0] == 0 || d[1] != 3 || d[2] != Size || d[3] != Size)
        {
            throw new UserError($"{path} holds an array of shape {string.Join("×", d)}, not N×3×64×64 images. Delete it (and {(heldOut ? train : held)}) to rebuild both from the package.");
        }

        return new MemoryImageSet(idx.Data, d[0], 3, Size, Size);
    }

    /// <summary>Gets the package (a copy in <paramref name="dir"/>, else `npm pack`), checks it and writes the two image files.</summary>
    private static void Fetch(string dir, HostContext ctx)
    {
        var local = Path.Combine(dir, Tarball);
        if (File.Exists(local))
        {
            ctx.Info($"emoji: preparing the images from {local} …");
            var (t, h) = Build(local, dir, TarballSha256, ImagesDigest);
            ctx.Info($"emoji: verified (SHA-256) and wrote {t:N0} training and {h:N0} held-out images to {dir}");
            return;
        }

        NpmPack.Fetch(ctx, Package, $"The emoji images are not in {dir}", "them", ManualInstructions(dir), tarball =>
        {
            var (t, h) = Build(tarball, dir, TarballSha256, ImagesDigest);
            ctx.Info($"emoji: verified (SHA-256) and wrote {t:N0} training and {h:N0} held-out images to {dir}");
        }, " (74 MB)");
    }

    /// <summary>SHA-256 of the "NAME SHA256\n" listing of <paramref name="files"/> in ordinal name order.</summary>
    public static string Digest(IEnumerable<(string Name, byte[] Bytes)> files)
    {
        var sb = new StringBuilder();
        foreach (var (name, bytes) in files.OrderBy(f => f.Name, StringComparer.Ordinal))
        {
            sb.Append(name).Append(' ').Append(Convert.ToHexStringLower(SHA256.HashData(bytes))).Append('\n');
        }

        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString())));
    }

    /// <summary>
    /// Checks the tarball's SHA-256 (unless <paramref name="tarballSha256"/> is null) and the digest
    /// of its 64×64 PNGs, decodes each on white to RGB, and only then writes the training and
    /// held-out IDX files (N×3×64×64, planar) into <paramref name="dir"/>. Returns the two counts.
    /// </summary>
    public static (int Train, int HeldOut) Build(string tarball, string dir, string? tarballSha256, string imagesDigest)
    {
        if (tarballSha256 is not null)
        {
            string actual;
            using (var f = File.OpenRead(tarball))
            {
                actual = Convert.ToHexStringLower(SHA256.HashData(f));
            }

            if (actual != tarballSha256)
            {
                throw new UserError(
                    $"{tarball} has SHA-256 {actual}, not the pinned {tarballSha256}: it is not the expected package {Package}, "
                    + $"so nothing was written. Delete it and run again, or {ManualInstructions(dir)}.");
            }
        }

        var files = new List<(string Name, byte[] Bytes)>();
        try
        {
            using var file = File.OpenRead(tarball);
            using var gz = new GZipStream(file, CompressionMode.Decompress);
            using var tar = new TarReader(gz);
            while (tar.GetNextEntry() is { } entry)
            {
                var name = entry.Name.Replace('\\', '/');
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null
                    || !name.StartsWith(ImageFolderInPackage, StringComparison.Ordinal) || !name.EndsWith(".png", StringComparison.Ordinal)
                    || name.IndexOf('/', ImageFolderInPackage.Length) >= 0)
                {
                    continue;
                }

                if (entry.Length > MaxImageBytes || files.Count >= MaxImages)
                {
                    throw new UserError($"{tarball} holds more or larger images than {Package} does ({name}: {entry.Length:N0} bytes); it is not the expected package, so nothing was written.");
                }

                using var ms = new MemoryStream();
                entry.DataStream.CopyTo(ms);
                files.Add((name[ImageFolderInPackage.Length..], ms.ToArray()));
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new UserError($"{tarball} could not be unpacked ({e.Message.TrimEnd('.')}); it may be damaged. Delete it and run again, or {ManualInstructions(dir)}.");
        }

        var digest = Digest(files);
        if (digest != imagesDigest)
        {
            throw new UserError(
                $"The {files.Count:N0} images in {ImageFolderInPackage} of {tarball} have the digest {digest}, not the pinned {imagesDigest}: "
                + $"they are not the expected images, so nothing was written. Run again, or {ManualInstructions(dir)}.");
        }

        files.Sort((a, b) => string.CompareOrdinal(a.Name, b.Name));
        var imageBytes = 3 * Size * Size;
        var heldCount = Enumerable.Range(0, files.Count).Count(IsHeldOut);
        var train = new byte[(files.Count - heldCount) * imageBytes];
        var held = new byte[heldCount * imageBytes];
        int ti = 0, hi = 0;
        for (var i = 0; i < files.Count; i++)
        {
            var (image, _) = ImageCodec.Decode(files[i].Bytes, $"{tarball}:{ImageFolderInPackage}{files[i].Name}", onWhite: true);
            var planar = ImageFolder.Fit(image, 1, null, 3, Size);
            if (IsHeldOut(i))
            {
                planar.CopyTo(held, hi++ * imageBytes);
            }
            else
            {
                planar.CopyTo(train, ti++ * imageBytes);
            }
        }

        try
        {
            Directory.CreateDirectory(dir);
            Idx.Write(Path.Combine(dir, HeldOutFile), [hi, 3, Size, Size], held, gzip: false);
            Idx.Write(Path.Combine(dir, TrainFile), [ti, 3, Size, Size], train, gzip: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", dir);
        }

        return (ti, hi);
    }
}
