using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Gan.Host.Io;

namespace Gan.Host.Data;

/// <summary>
/// `images:DIR`: every PNG and JPEG under a folder (recursively, in path order), each cropped to
/// its central square (of its CelebA bounding box with --bbox), resized to the model's size and
/// converted to grey or colour. The result is cached as raw bytes in the data directory, keyed by
/// the files' names, sizes and times and the settings, so later runs map it straight into memory.
/// </summary>
internal static class ImageFolder
{
    private static readonly byte[] Magic = "GANIMG01"u8.ToArray();
    private const int HeaderSize = 64;
    private const int Chunk = 1024;

    /// <summary>
    /// Every PNG/JPEG under <paramref name="root"/> (recursively), ordered by the path relative to
    /// it, so the order is the same on every machine; throws a <see cref="UserError"/> with the given
    /// message when the folder is missing or holds no image.
    /// </summary>
    public static List<(string Full, string Rel)> List(string root, string missing, string empty)
    {
        if (!Directory.Exists(root))
        {
            throw new UserError(missing);
        }

        var files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => Path.GetExtension(f).ToLowerInvariant() is ".png" or ".jpg" or ".jpeg")
            .Select(f => (Full: f, Rel: Path.GetRelativePath(root, f).Replace('\\', '/')))
            .OrderBy(f => f.Rel, StringComparer.Ordinal)
            .ToList();
        if (files.Count == 0)
        {
            throw new UserError(empty);
        }

        return files;
    }

    public static ImageSet Load(string root, int channels, int size, string? bboxFile, string cacheDir, HostContext ctx)
    {
        var files = List(root, $"The image folder {root} (from --dataset images:{root}) does not exist.",
            $"The image folder {root} holds no PNG or JPEG files (.png, .jpg, .jpeg), so there is nothing to train on.");

        var boxes = bboxFile is null ? null : ReadBoundingBoxes(bboxFile);
        var key = CacheKey(root, files.Select(f => f.Full), channels, size, bboxFile);
        var cachePath = Path.Combine(cacheDir, $"images-{Convert.ToHexStringLower(key)[..16]}-{channels}x{size}.u8");
        // the temporary file of a decode that was killed (up to a whole set's size, of this or
        // another folder) goes at the next start, hit or miss; live writers' files stay
        AtomicFile.CleanTemporaries(cacheDir);
        if (TryOpenCache(cachePath, key, files.Count, channels, size) is { } cached)
        {
            ctx.Info($"images: {files.Count:N0} from {root}, cached in {cachePath}");
            return cached;
        }

        // one writer per cache file: another process filling it is waited for, then its result used
        using var cacheLock = WriterLock.Wait(cachePath + ".lock", $"the image cache {cachePath}", ctx.Info);
        if (TryOpenCache(cachePath, key, files.Count, channels, size) is { } filled)
        {
            ctx.Info($"images: {files.Count:N0} from {root}, cached in {cachePath}");
            return filled;
        }

        ctx.Info($"images: decoding {files.Count:N0} files from {root} to {channels}×{size}×{size} (once; cached in {cachePath}) …");
        var imageBytes = channels * size * size;
        try
        {
            AtomicFile.Write(cachePath, stream =>
            {
                var header = new byte[HeaderSize];
                Magic.CopyTo(header, 0);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), files.Count);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), channels);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(16), size);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(20), size);
                key.CopyTo(header, 24);
                stream.Write(header);
                var buffer = new byte[Chunk * imageBytes];
                for (var start = 0; start < files.Count; start += Chunk)
                {
                    var n = Math.Min(Chunk, files.Count - start);
                    Parallel.For(0, n, i =>
                    {
                        var (full, rel) = files[start + i];
                        DecodeNamed(full, rel, channels, size, boxes, bboxFile).CopyTo(buffer.AsSpan(i * imageBytes, imageBytes));
                    });
                    stream.Write(buffer, 0, n * imageBytes);
                    if (files.Count > Chunk)
                    {
                        ctx.Info($"images: {start + n:N0}/{files.Count:N0} decoded");
                    }
                }
            });
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<UserError>().FirstOrDefault() is { } first)
        {
            throw first;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", cachePath);
        }

        return TryOpenCache(cachePath, key, files.Count, channels, size)
            ?? throw new UserError($"The image cache {cachePath} could not be read back after writing it.");
    }

    /// <summary>
    /// <see cref="Decode"/> for a loop over many files (run in parallel): any failure ends in a
    /// UserError naming the file, so a bad image is never an internal error or an out-of-memory
    /// hint about --batch-size.
    /// </summary>
    public static byte[] DecodeNamed(string path, string rel, int channels, int size, IReadOnlyDictionary<string, (int X, int Y, int W, int H)>? boxes, string? bboxFile)
    {
        try
        {
            return Decode(path, rel, channels, size, boxes, bboxFile);
        }
        catch (OutOfMemoryException)
        {
            throw new UserError($"Cannot read the image {path}: decoding it needs more memory than is free (its header gives a very large image). Remove or shrink it, then run again.");
        }
        catch (Exception e) when (e is not UserError)
        {
            throw new UserError($"Cannot read the image {path}: its decoder failed ({e.GetType().Name}: {e.Message.TrimEnd('.')}). Remove or replace it, then run again.");
        }
    }

    /// <summary>Decodes one file to planar (channels, size, size) bytes.</summary>
    public static byte[] Decode(string path, string rel, int channels, int size, IReadOnlyDictionary<string, (int X, int Y, int W, int H)>? boxes, string? bboxFile)
    {
        (int X, int Y, int W, int H)? box = null;
        if (boxes is not null)
        {
            var name = Path.GetFileName(path);
            if (!boxes.TryGetValue(name, out var b))
            {
                throw new UserError($"The image {path} is not listed in the bounding-box file {bboxFile}; give --bbox only for the images it describes.");
            }

            box = b;
        }

        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"Cannot read the image {path}: {e.Message.TrimEnd('.')}.");
        }

        // a JPEG decodes scaled down (1/8 steps) as far as the crop still covers `size` pixels
        var (image, scale) = ImageCodec.Decode(bytes, path, minScale: (w, h) =>
        {
            var (cw, ch) = box is { } bb ? (bb.W, bb.H) : (w, h);
            return (double)size / Math.Max(1, Math.Min(cw, ch));
        });

        return Fit(image, scale, box, channels, size);
    }

    /// <summary>
    /// Crops <paramref name="image"/> to the central square of <paramref name="box"/> (in full-size
    /// pixels, multiplied by <paramref name="scale"/>, the decode's scale) or of the whole image,
    /// resizes it to <paramref name="size"/> and converts it to <paramref name="channels"/>; planar.
    /// </summary>
    public static byte[] Fit(RasterImage image, double scale, (int X, int Y, int W, int H)? box, int channels, int size)
    {
        // the window: the bounding box (scaled like the decode) or the whole image, then its central square
        int x0 = 0, y0 = 0, ww = image.Width, wh = image.Height;
        if (box is { } bx)
        {
            x0 = Math.Clamp((int)Math.Round(bx.X * scale), 0, image.Width - 1);
            y0 = Math.Clamp((int)Math.Round(bx.Y * scale), 0, image.Height - 1);
            ww = Math.Clamp((int)Math.Round(bx.W * scale), 1, image.Width - x0);
            wh = Math.Clamp((int)Math.Round(bx.H * scale), 1, image.Height - y0);
        }

        var side = Math.Min(ww, wh);
        x0 += (ww - side) / 2;
        y0 += (wh - side) / 2;

        var planar = Pixels.ToPlanar(image.Pixels, image.Channels, image.Height, image.Width);
        var plane = image.Width * image.Height;
        var converted = new byte[channels * plane];
        Pixels.ConvertChannels(planar, image.Channels, channels, plane, converted);
        var result = new byte[channels * size * size];
        var resampler = new Resampler(x0, y0, side, side, size, size, image.Width, image.Height);
        for (var c = 0; c < channels; c++)
        {
            resampler.Plane(converted.AsSpan(c * plane, plane), image.Width, image.Height, result.AsSpan(c * size * size, size * size));
        }

        return result;
    }

    /// <summary>The largest --bbox file read (CelebA's list_bbox_celeba.txt is 8.3 MB for 202,599 images).</summary>
    public const long MaxBoundingBoxFileBytes = 256L << 20;

    /// <summary>The largest coordinate or side a box may give (far beyond any real photograph).</summary>
    public const int MaxBoxCoordinate = 1 << 20;

    /// <summary>
    /// Reads CelebA's list_bbox_celeba.txt: a count line, a header line ("image_id x_1 y_1 width
    /// height"), then one "name x y width height" line per image.
    /// </summary>
    public static Dictionary<string, (int X, int Y, int W, int H)> ReadBoundingBoxes(string path)
    {
        string text;
        try
        {
            var length = new FileInfo(path).Length;
            if (length > MaxBoundingBoxFileBytes)
            {
                throw new UserError(
                    $"The bounding-box file {path} (--bbox) is {length:N0} bytes, more than the {MaxBoundingBoxFileBytes:N0} a box list may have "
                    + "(CelebA's is 8.3 MB); check that --bbox names list_bbox_celeba.txt.");
            }

            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"Cannot read the bounding-box file {path} (--bbox): {e.Message.TrimEnd('.')}.");
        }

        return ParseBoundingBoxes(text, path);
    }

    /// <summary>Parses the text of a box list named <paramref name="path"/> in messages (see <see cref="ReadBoundingBoxes"/>).</summary>
    public static Dictionary<string, (int X, int Y, int W, int H)> ParseBoundingBoxes(string text, string path)
    {
        var lines = text.Split('\n');
        var result = new Dictionary<string, (int, int, int, int)>(StringComparer.Ordinal);
        for (var i = 0; i < lines.Length; i++)
        {
            var t = lines[i].Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (t.Length == 0 || (t.Length == 1 && int.TryParse(t[0], out _)) || t[0] == "image_id")
            {
                continue;
            }

            var shown = lines[i].Trim();
            shown = shown.Length > 80 ? shown[..80] + "…" : shown;
            if (t.Length != 5
                || !int.TryParse(t[1], NumberStyles.None, CultureInfo.InvariantCulture, out var x)
                || !int.TryParse(t[2], NumberStyles.None, CultureInfo.InvariantCulture, out var y)
                || !int.TryParse(t[3], NumberStyles.None, CultureInfo.InvariantCulture, out var w)
                || !int.TryParse(t[4], NumberStyles.None, CultureInfo.InvariantCulture, out var h)
                || w == 0 || h == 0)
            {
                throw new UserError(
                    $"The bounding-box file {path} (--bbox) is not in CelebA's format at line {i + 1}: expected \"name x y width height\" "
                    + $"(whole numbers, width and height at least 1), got \"{shown}\".");
            }

            if (Math.Max(x, y) > MaxBoxCoordinate || Math.Max(w, h) > MaxBoxCoordinate)
            {
                throw new UserError(
                    $"The bounding-box file {path} (--bbox) gives a box beyond {MaxBoxCoordinate:N0} pixels at line {i + 1} (\"{shown}\"); no image is that large.");
            }

            if (!result.TryAdd(t[0], (x, y, w, h)))
            {
                throw new UserError($"The bounding-box file {path} (--bbox) lists {t[0]} twice (again at line {i + 1}); each image may have one box.");
            }
        }

        if (result.Count == 0)
        {
            throw new UserError($"The bounding-box file {path} (--bbox) lists no boxes.");
        }

        return result;
    }

    private static byte[] CacheKey(string root, IEnumerable<string> files, int channels, int size, string? bboxFile)
    {
        var sb = new StringBuilder();
        sb.Append("gan-images-v1\n").Append(root).Append('\n').Append(channels).Append('\n').Append(size).Append('\n');
        if (bboxFile is not null)
        {
            var b = new FileInfo(bboxFile);
            sb.Append(b.FullName).Append('\t').Append(b.Exists ? b.Length : -1).Append('\t').Append(b.Exists ? b.LastWriteTimeUtc.Ticks : 0).Append('\n');
        }

        foreach (var f in files)
        {
            var i = new FileInfo(f);
            sb.Append(Path.GetRelativePath(root, f)).Append('\t').Append(i.Length).Append('\t').Append(i.LastWriteTimeUtc.Ticks).Append('\n');
        }

        return SHA256.HashData(Encoding.UTF8.GetBytes(sb.ToString()));
    }

    private static ImageSet? TryOpenCache(string path, byte[] key, int count, int channels, int size)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var header = new byte[HeaderSize];
        using (var f = File.OpenRead(path))
        {
            if (f.Length != HeaderSize + ((long)count * channels * size * size) || f.ReadAtLeast(header, HeaderSize, false) != HeaderSize)
            {
                return null;
            }
        }

        if (!header.AsSpan(0, 8).SequenceEqual(Magic)
            || BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(8)) != count
            || BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(12)) != channels
            || BinaryPrimitives.ReadInt32LittleEndian(header.AsSpan(16)) != size
            || !header.AsSpan(24, 32).SequenceEqual(key))
        {
            return null;
        }

        return MappedImageSet.Open(path, HeaderSize, count, channels, size, size);
    }
}
