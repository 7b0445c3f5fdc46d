using SkiaSharp;

namespace Gan.Host.Io;

/// <summary>An 8-bit image: <see cref="Channels"/> is 1 (grey) or 3 (RGB); pixels row-major, interleaved.</summary>
internal sealed record RasterImage(int Width, int Height, int Channels, byte[] Pixels);

/// <summary>
/// Image decoding and PNG encoding through SkiaSharp (PNG, JPEG, WebP, GIF, BMP). Decoding goes
/// through <see cref="SKCodec"/>: the size is read from the header and checked against
/// <see cref="MaxPixels"/> before any pixel memory is allocated, and any result but a complete
/// decode (a truncated file included) is an error naming the file. Grey files decode to one
/// channel, everything else to RGB; alpha is dropped, or composited on white when asked.
/// No colour-space conversion is applied: the stored 8-bit values come back as they are.
/// </summary>
internal static class ImageCodec
{
    /// <summary>
    /// The largest image decoded, in pixels (64 megapixels, e.g. 8192×8192: 256 MB as RGBA); a
    /// header claiming more is refused before pixels are allocated.
    /// </summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>
    /// The most scans a JPEG may have (a progressive JPEG from common encoders has about 10). Each
    /// scan is a pass over the image's coefficients, so a small file of thousands of scans costs
    /// minutes of CPU; Skia has no scan limit of its own, so the markers are counted first.
    /// </summary>
    public const int MaxJpegScans = 500;

    /// <summary>
    /// Reads and decodes the image file <paramref name="path"/> (the one entry point for files from
    /// outside). Returns the image, or throws a <see cref="UserError"/> whose message names the file
    /// and the reason (missing, unreadable, not an image, too large, corrupt or truncated).
    /// </summary>
    public static RasterImage Read(string path, bool onWhite = false)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new UserError($"Cannot read the image {path}: {e.Message.TrimEnd('.')}.");
        }

        return Decode(bytes, path, onWhite).Image;
    }

    /// <summary>
    /// Decodes <paramref name="bytes"/> (named <paramref name="name"/> in errors). A JPEG is decoded
    /// scaled down by the smallest of its codec's factors (n/8) that keeps at least
    /// <paramref name="minScale"/>(width, height) of the full size; other formats decode at full size.
    /// Returns the image and the scale used (decoded width / full width).
    /// </summary>
    public static (RasterImage Image, double Scale) Decode(byte[] bytes, string name, bool onWhite = false, Func<int, int, double>? minScale = null)
    {
        using var stream = new SKMemoryStream(bytes);
        using var codec = SKCodec.Create(stream, out var created);
        if (codec is null)
        {
            throw Fail(name, created == SKCodecResult.IncompleteInput && KnownSignature(bytes)
                ? "truncated (the file ends inside its header)"
                : "not an image file Skia can decode (PNG, JPEG, WebP, GIF, BMP)");
        }

        var info = codec.Info;
        if (info.Width <= 0 || info.Height <= 0 || (long)info.Width * info.Height > MaxPixels)
        {
            throw Fail(name, $"unsupported size {info.Width}×{info.Height} (the limit is {MaxPixels:N0} pixels)");
        }

        if (codec.EncodedFormat == SKEncodedImageFormat.Jpeg && JpegScans(bytes, MaxJpegScans) > MaxJpegScans)
        {
            throw Fail(name, $"unsupported: a JPEG with more than {MaxJpegScans} scans");
        }

        var (w, h) = (info.Width, info.Height);
        var scale = 1.0;
        if (minScale is not null && codec.EncodedFormat == SKEncodedImageFormat.Jpeg)
        {
            // the smallest n/8 (libjpeg's DCT scaling) that keeps at least `least` of each side
            var least = minScale(w, h);
            for (var n = 1; n < 8; n++)
            {
                var dims = codec.GetScaledDimensions(n / 8f);
                if (dims.Width >= least * w && dims.Height >= least * h && dims.Width <= w && dims.Height <= h)
                {
                    scale = (double)dims.Width / w;
                    (w, h) = (dims.Width, dims.Height);
                    break;
                }
            }
        }

        var grey = info.ColorType == SKColorType.Gray8 && !onWhite;
        var dst = new SKImageInfo(w, h, grey ? SKColorType.Gray8 : SKColorType.Rgba8888,
            grey ? SKAlphaType.Opaque : SKAlphaType.Unpremul);
        var raw = new byte[(long)dst.BytesSize64];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* p = raw)
            {
                result = codec.GetPixels(dst, (nint)p);
            }
        }

        if (result != SKCodecResult.Success)
        {
            throw Fail(name, result switch
            {
                SKCodecResult.IncompleteInput => "truncated (the image data ends early)",
                SKCodecResult.ErrorInInput => "corrupt (error in the image data)",
                SKCodecResult.InvalidScale => "unsupported (cannot decode at this scale)",
                _ => $"cannot be decoded ({result})",
            });
        }

        if (grey)
        {
            return (new RasterImage(w, h, 1, raw), scale);
        }

        var plane = w * h;
        var rgb = new byte[plane * 3];
        for (var i = 0; i < plane; i++)
        {
            int r = raw[4 * i], g = raw[(4 * i) + 1], b = raw[(4 * i) + 2];
            if (onWhite)
            {
                // unpremultiplied colour over white: c·a + 255·(1 − a), rounded
                int a = raw[(4 * i) + 3], inv = 255 - a;
                r = ((r * a) + (255 * inv) + 127) / 255;
                g = ((g * a) + (255 * inv) + 127) / 255;
                b = ((b * a) + (255 * inv) + 127) / 255;
            }

            rgb[3 * i] = (byte)r;
            rgb[(3 * i) + 1] = (byte)g;
            rgb[(3 * i) + 2] = (byte)b;
        }

        return (new RasterImage(w, h, 3, rgb), scale);
    }

    /// <summary>
    /// The number of scans (SOS markers) in the JPEG <paramref name="b"/>, counting stops after
    /// <paramref name="stopAfter"/>. Walks the marker segments by their lengths and skips each scan's
    /// entropy-coded data (where 0xFF is followed by a stuffed 0x00 or a restart marker), so bytes
    /// inside metadata are not mistaken for markers; one linear pass.
    /// </summary>
    public static int JpegScans(ReadOnlySpan<byte> b, int stopAfter)
    {
        var scans = 0;
        var i = 2; // after SOI
        while (i + 1 < b.Length && scans <= stopAfter)
        {
            if (b[i] != 0xFF)
            {
                i++; // stray byte between segments: libjpeg skips these too
                continue;
            }

            var m = b[i + 1];
            if (m == 0xFF)
            {
                i++; // fill byte
                continue;
            }

            if (m == 0xD9)
            {
                break; // EOI
            }

            if (m is 0x00 or 0x01 or (>= 0xD0 and <= 0xD7))
            {
                i += 2; // markers without a length
                continue;
            }

            if (i + 3 >= b.Length)
            {
                break;
            }

            i += 2 + ((b[i + 2] << 8) | b[i + 3]);
            if (m != 0xDA)
            {
                continue;
            }

            scans++;
            // the entropy-coded data runs to the next marker that is neither stuffing nor a restart
            while (i + 1 < b.Length && !(b[i] == 0xFF && b[i + 1] is not (0x00 or 0xFF or (>= 0xD0 and <= 0xD7))))
            {
                i++;
            }
        }

        return scans;
    }

    /// <summary>True when the bytes start like a PNG, JPEG, GIF, BMP or WebP file.</summary>
    private static bool KnownSignature(ReadOnlySpan<byte> b) =>
        b.StartsWith((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47]) || b.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF])
        || b.StartsWith("GIF8"u8) || b.StartsWith("BM"u8) || (b.Length >= 12 && b.StartsWith("RIFF"u8) && b[8..12].SequenceEqual("WEBP"u8));

    private static UserError Fail(string name, string why) =>
        new($"Cannot read the image {name}: {why}. Remove or replace it, then run again.");

    /// <summary>Encodes an 8-bit grey or RGB image as PNG.</summary>
    public static byte[] EncodePng(RasterImage image) => Encode(image, SKEncodedImageFormat.Png, 100);

    /// <summary>Encodes an 8-bit grey or RGB image as JPEG (quality 1–100); tests use it to make JPEG files.</summary>
    public static byte[] EncodeJpeg(RasterImage image, int quality = 95) => Encode(image, SKEncodedImageFormat.Jpeg, quality);

    private static byte[] Encode(RasterImage image, SKEncodedImageFormat format, int quality)
    {
        if (image.Channels is not (1 or 3))
        {
            throw new ArgumentException("the encoder takes 1 or 3 channels", nameof(image));
        }

        var plane = image.Width * image.Height;
        if (image.Pixels.Length != plane * image.Channels)
        {
            throw new ArgumentException("pixel buffer does not match the image size", nameof(image));
        }

        byte[] pixels;
        SKImageInfo info;
        if (image.Channels == 1)
        {
            pixels = image.Pixels;
            info = new SKImageInfo(image.Width, image.Height, SKColorType.Gray8, SKAlphaType.Opaque);
        }
        else
        {
            pixels = new byte[plane * 4];
            for (var i = 0; i < plane; i++)
            {
                pixels[4 * i] = image.Pixels[3 * i];
                pixels[(4 * i) + 1] = image.Pixels[(3 * i) + 1];
                pixels[(4 * i) + 2] = image.Pixels[(3 * i) + 2];
                pixels[(4 * i) + 3] = 255;
            }

            info = new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        }

        unsafe
        {
            fixed (byte* p = pixels)
            {
                using var pixmap = new SKPixmap(info, (nint)p, info.RowBytes);
                using var encoded = pixmap.Encode(format, quality)
                    ?? throw new InvalidOperationException($"Skia could not encode a {image.Width}×{image.Height} image as {format}");
                return encoded.ToArray();
            }
        }
    }
}
