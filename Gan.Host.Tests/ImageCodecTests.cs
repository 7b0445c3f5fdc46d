using Gan.Host.Data;
using Gan.Host.Io;
using SkiaSharp;

namespace Gan.Host.Tests;

public class ImageCodecTests
{
    // Written by Python's zlib and a minimal PNG writer independent of ours (TestData/make_pngs.py):
    // 7×5 images of pixel (x, y, c) = (37x + 53y + 91c) mod 256 (or simple level patterns), with
    // the row filter types used in turn.
    private const string RgbaFilters = "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFCAYAAACJmvbYAAAAFHRFWHRTb2Z0d2FyZQBweXRob24gemxpYvi3WtAAAABzSURBVHjaY2CI3sag2nCbwWspA0P+KVWGKe+9GHaK5DPcs5zCwGg64TWDqqqqIDbMZGpqygDEgkCsBMTGQOwCxKFAnMacNcOVQVdXVwmItYHYeK2urg2QdtHVXevLAtKpago2RslUVdUYSLuoqpoCsWoaAMZgH4YAriBVAAAAAElFTkSuQmCC";
    private const string RgbInterlaced = "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFCAIAAAFx/1EZAAAAFHRFWHRTb2Z0d2FyZQBweXRob24gemxpYvi3WtAAAABgSURBVHjaY2CI3sY45b0X0xX9rozDcsxeSxl2Pp/CcgUEpjBkHVXYwp/1L3KLx+J/jKoNt73AgCkLBpg33e+NAgMW0wmvVTEAw/xfoUfkq166zOfLPGLc9zJiM1/tDWMA7ysuK+L7Xl4AAAAASUVORK5CYII=";
    private const string Grey16 = "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFEAAAAAD8YXVHAAAAFHRFWHRTb2Z0d2FyZQBweXRob24gemxpYvi3WtAAAABESURBVHjaY2BgUGXwYshnmMKwk+EeA6MpgyojAjKZMpgymjKZMpuymLKasjFnMegy6TLrMq9l0WXRZWUBKwbKqrKAIAB1YAj39Ex+qwAAAABJRU5ErkJggg==";
    private const string Grey2Interlaced = "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFAgAAAAGRRoEzAAAAFHRFWHRTb2Z0d2FyZQBweXRob24gemxpYvi3WtAAAAAgSURBVHjaY2BgZGBiYF7AwsDQwVjClMHMxpLDwHDsCAAf3gQVnSdUEQAAAABJRU5ErkJggg==";
    private const string Palette4 = "iVBORw0KGgoAAAANSUhEUgAAAAcAAAAFBAMAAAB7tOvrAAAAMFBMVEUAAP8QcO8g4N8wUM9AwL9QMK9goJ9wEI+AgH+Q8G+gYF+w0E/AQD/QsC/gIB/wkA/RdlJBAAAAFHRFWHRTb2Z0d2FyZQBweXRob24gemxpYvi3WtAAAAAgSURBVHjaY2DOPK/AKJIWlsAkKCgowKxiY7KdBciKBQBAEwS0iHwXHAAAAABJRU5ErkJggg==";

    private static byte Pattern(int x, int y, int c) => (byte)(((x * 37) + (y * 53) + (c * 91)) % 256);

    private static RasterImage Decode(byte[] bytes) => ImageCodec.Decode(bytes, "x.png").Image;

    private static string Golden(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "golden", name);

    private static RasterImage Random(int w, int h, int channels, int seed)
    {
        var pixels = new byte[w * h * channels];
        new Random(seed).NextBytes(pixels);
        return new RasterImage(w, h, channels, pixels);
    }

    [Theory]
    [InlineData(1, 28, 28)]
    [InlineData(1, 1, 1)]
    [InlineData(1, 13, 7)]
    public void A_grey_image_survives_an_encode_and_decode_unchanged(int channels, int w, int h)
    {
        var image = Random(w, h, channels, w * h);

        var back = Decode(ImageCodec.EncodePng(image));

        Assert.Equal((w, h, 1), (back.Width, back.Height, back.Channels));
        Assert.Equal(image.Pixels, back.Pixels);
    }

    [Theory]
    [InlineData(64, 64)]
    [InlineData(3, 11)]
    public void A_colour_image_survives_an_encode_and_decode_unchanged(int w, int h)
    {
        var image = Random(w, h, 3, 99);

        var back = Decode(ImageCodec.EncodePng(image));

        Assert.Equal((w, h, 3), (back.Width, back.Height, back.Channels));
        Assert.Equal(image.Pixels, back.Pixels);
    }

    [Fact]
    public void A_smooth_image_compresses_well_thanks_to_row_filters()
    {
        var pixels = new byte[256 * 256];
        for (var y = 0; y < 256; y++)
        {
            for (var x = 0; x < 256; x++)
            {
                pixels[(y * 256) + x] = (byte)(x + y);
            }
        }

        var bytes = ImageCodec.EncodePng(new RasterImage(256, 256, 1, pixels));

        Assert.True(bytes.Length < 2000, $"{bytes.Length} bytes");
    }

    [Fact]
    public void An_RGBA_PNG_written_by_python_zlib_with_all_five_filters_decodes_to_its_RGB_pixels()
    {
        var image = Decode(Convert.FromBase64String(RgbaFilters));

        Assert.Equal((7, 5, 3), (image.Width, image.Height, image.Channels));
        for (var y = 0; y < 5; y++)
        {
            for (var x = 0; x < 7; x++)
            {
                for (var c = 0; c < 3; c++)
                {
                    Assert.Equal(Pattern(x, y, c), image.Pixels[(((y * 7) + x) * 3) + c]);
                }
            }
        }
    }

    [Fact]
    public void An_Adam7_interlaced_RGB_PNG_written_by_python_zlib_decodes_to_its_pixels()
    {
        var image = Decode(Convert.FromBase64String(RgbInterlaced));

        Assert.Equal((7, 5, 3), (image.Width, image.Height, image.Channels));
        for (var i = 0; i < 35; i++)
        {
            for (var c = 0; c < 3; c++)
            {
                Assert.Equal(Pattern(i % 7, i / 7, c), image.Pixels[(i * 3) + c]);
            }
        }
    }

    [Fact]
    public void A_16_bit_grey_PNG_decodes_to_8_bits_within_one_level_of_the_high_byte()
    {
        var image = Decode(Convert.FromBase64String(Grey16));

        Assert.Equal(1, image.Channels);
        for (var i = 0; i < 35; i++)
        {
            Assert.InRange(image.Pixels[i] - Pattern(i % 7, i / 7, 0), 0, 1);
        }
    }

    [Fact]
    public void A_2_bit_interlaced_grey_PNG_decodes_with_its_levels_scaled_to_0_to_255()
    {
        var image = Decode(Convert.FromBase64String(Grey2Interlaced));

        for (var i = 0; i < 35; i++)
        {
            Assert.Equal((byte)((((i % 7) + (i / 7)) % 4) * 85), image.Pixels[i]);
        }
    }

    [Fact]
    public void A_4_bit_palette_PNG_decodes_to_the_palette_colours()
    {
        var image = Decode(Convert.FromBase64String(Palette4));

        Assert.Equal(3, image.Channels);
        for (var i = 0; i < 35; i++)
        {
            var index = (((i % 7) * 3) + (i / 7)) % 16;
            Assert.Equal((byte)(index * 16 % 256), image.Pixels[i * 3]);
            Assert.Equal((byte)(index * 7 * 16 % 256), image.Pixels[(i * 3) + 1]);
            Assert.Equal((byte)(255 - (index * 16)), image.Pixels[(i * 3) + 2]);
        }
    }

    [Fact]
    public void A_file_that_is_no_image_is_refused_with_its_name()
    {
        var e = Assert.Throws<UserError>(() => ImageCodec.Decode("a text file, no picture"u8.ToArray(), "odd.gif"));

        Assert.Contains("odd.gif", e.Message);
        Assert.Contains("not an image file", e.Message);
        Assert.Contains("not an image file", Assert.Throws<UserError>(() => ImageCodec.Decode([], "empty.png")).Message);
    }

    [Fact]
    public void A_PNG_cut_short_is_reported_as_truncated()
    {
        var bytes = ImageCodec.EncodePng(Random(20, 20, 3, 5));

        var e = Assert.Throws<UserError>(() => ImageCodec.Decode(bytes[..(bytes.Length / 2)], "cut.png"));

        Assert.Contains("cut.png: truncated", e.Message);
    }

    [Fact]
    public void A_JPEG_cut_short_is_reported_as_truncated()
    {
        var bytes = ImageCodec.EncodeJpeg(Random(64, 64, 3, 5));

        var e = Assert.Throws<UserError>(() => ImageCodec.Decode(bytes[..(bytes.Length / 2)], "cut.jpg"));

        Assert.Contains("cut.jpg: truncated", e.Message);
    }

    /// <summary>The offset of the first SOS marker of a JPEG (the scan's header starts there).</summary>
    private static int FirstScan(byte[] jpeg)
    {
        for (var i = 2; i + 1 < jpeg.Length; i++)
        {
            if (jpeg[i] == 0xFF && jpeg[i + 1] == 0xDA)
            {
                return i;
            }
        }

        throw new InvalidOperationException("no SOS marker");
    }

    [Fact]
    public void A_JPEG_scan_count_skips_metadata_and_entropy_data_that_hold_marker_like_bytes()
    {
        var jpeg = ImageCodec.EncodeJpeg(Random(48, 40, 3, 9));
        // an APP1 segment whose payload holds FF DA (an SOS look-alike) right after SOI
        byte[] payload = [0xFF, 0xDA, 0x00, 0x0C, 0xFF, 0xDA, 0x01, 0x02];
        byte[] app1 = [0xFF, 0xE1, 0x00, (byte)(payload.Length + 2), .. payload];
        byte[] withApp = [.. jpeg[..2], .. app1, .. jpeg[2..]];

        Assert.Equal(1, ImageCodec.JpegScans(jpeg, ImageCodec.MaxJpegScans));
        Assert.Equal(1, ImageCodec.JpegScans(withApp, ImageCodec.MaxJpegScans));
        Assert.Equal(ImageCodec.Decode(jpeg, "a.jpg").Image.Pixels, ImageCodec.Decode(withApp, "b.jpg").Image.Pixels);
    }

    [Fact]
    public void A_JPEG_with_more_scans_than_the_limit_is_refused_before_it_is_decoded()
    {
        var jpeg = ImageCodec.EncodeJpeg(Random(32, 32, 3, 4));
        var sos = FirstScan(jpeg);
        var scan = jpeg[sos..^2]; // SOS header and entropy data, without EOI
        byte[] Repeat(int n) => [.. jpeg[..^2], .. Enumerable.Repeat(scan, n - 1).SelectMany(x => x), 0xFF, 0xD9];

        var atLimit = Repeat(ImageCodec.MaxJpegScans);
        var over = Repeat(ImageCodec.MaxJpegScans + 1);

        Assert.Equal(ImageCodec.MaxJpegScans, ImageCodec.JpegScans(atLimit, ImageCodec.MaxJpegScans));
        Assert.Equal(ImageCodec.MaxJpegScans + 1, ImageCodec.JpegScans(over, ImageCodec.MaxJpegScans));
        var e = Assert.Throws<UserError>(() => ImageCodec.Decode(over, "scans.jpg"));
        Assert.Equal($"Cannot read the image scans.jpg: unsupported: a JPEG with more than {ImageCodec.MaxJpegScans} scans. Remove or replace it, then run again.", e.Message);
    }

    [Fact]
    public void A_PNG_with_a_flipped_bit_in_its_image_data_is_refused()
    {
        var bytes = ImageCodec.EncodePng(Random(20, 20, 1, 5));
        bytes[^30] ^= 0x10;

        var e = Assert.Throws<UserError>(() => ImageCodec.Decode(bytes, "flip.png"));

        Assert.Contains("flip.png", e.Message);
    }

    /// <summary>A valid PNG header (IHDR with its CRC) claiming <paramref name="w"/>×<paramref name="h"/> RGB, with one tiny IDAT.</summary>
    private static byte[] HugeHeader(int w, int h)
    {
        static byte[] Chunk(string type, byte[] data)
        {
            var t = System.Text.Encoding.ASCII.GetBytes(type);
            var crc = 0xFFFFFFFFu;
            foreach (var b in (byte[])[.. t, .. data])
            {
                crc ^= b;
                for (var k = 0; k < 8; k++)
                {
                    crc = (crc & 1) != 0 ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
                }
            }

            crc ^= 0xFFFFFFFFu;
            var len = new byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
            var c = new byte[4];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(c, crc);
            return [.. len, .. t, .. data, .. c];
        }

        var ihdr = new byte[13];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr, w);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), h);
        ihdr[8] = 8;
        ihdr[9] = 2;
        byte[] signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
        return [.. signature, .. Chunk("IHDR", ihdr), .. Chunk("IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]), .. Chunk("IEND", [])];
    }

    [Fact]
    public void A_PNG_claiming_a_huge_size_is_refused_from_its_header_before_pixels_are_allocated()
    {
        var bytes = HugeHeader(20000, 20000);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var clock = System.Diagnostics.Stopwatch.StartNew();

        var e = Assert.Throws<UserError>(() => ImageCodec.Decode(bytes, "bomb.png"));

        Assert.Contains("bomb.png: unsupported size 20000×20000", e.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2), $"took {clock.Elapsed}");
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 1 << 20, "allocated pixel memory");
        // just inside the limit it is only the image data that is wrong
        Assert.DoesNotContain("unsupported size", Assert.Throws<UserError>(() => ImageCodec.Decode(HugeHeader(64, 64), "small.png")).Message);
    }

    [Fact]
    public void Reading_a_file_names_it_in_every_error()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir["bad.png"], [1, 2, 3]);

        Assert.Contains(dir["bad.png"], Assert.Throws<UserError>(() => ImageCodec.Read(dir["bad.png"])).Message);
        Assert.Contains(dir["none.png"], Assert.Throws<UserError>(() => ImageCodec.Read(dir["none.png"])).Message);
        File.WriteAllBytes(dir["ok.png"], ImageCodec.EncodePng(Random(5, 4, 3, 1)));
        Assert.Equal(Random(5, 4, 3, 1).Pixels, ImageCodec.Read(dir["ok.png"]).Pixels);
    }

    [Fact]
    public void A_JPEG_decodes_to_its_colours_and_can_be_scaled_down_by_eighths()
    {
        var pixels = Enumerable.Range(0, 32 * 32 * 3).Select(i => (byte)(i % 3 == 0 ? 200 : 50)).ToArray();
        var jpeg = ImageCodec.EncodeJpeg(new RasterImage(32, 32, 3, pixels));

        var (image, scale) = ImageCodec.Decode(jpeg, "a.jpg");
        Assert.Equal((32, 32, 3, 1.0), (image.Width, image.Height, image.Channels, scale));
        Assert.InRange(image.Pixels[0], 190, 210);
        Assert.InRange(image.Pixels[1], 40, 60);

        var (quarter, s4) = ImageCodec.Decode(jpeg, "a.jpg", minScale: (_, _) => 0.25);
        Assert.Equal((8, 0.25), (quarter.Width, s4));
        var (third, s3) = ImageCodec.Decode(jpeg, "a.jpg", minScale: (_, _) => 0.3);
        Assert.Equal((12, 0.375), (third.Width, s3)); // the smallest n/8 at least 0.3
        Assert.InRange(quarter.Pixels[0], 190, 210);
    }

    [Fact]
    public void Alpha_is_dropped_or_composited_on_white()
    {
        // 2×1 RGBA: (200, 100, 50) at alpha 0 and at alpha 128, written by Skia as unpremultiplied
        var info = new SKImageInfo(2, 1, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(new byte[] { 200, 100, 50, 0, 200, 100, 50, 128 }, 0, bitmap.GetPixels(), 8);
        var png = bitmap.Encode(SKEncodedImageFormat.Png, 100).ToArray();

        Assert.Equal(new byte[] { 200, 100, 50, 200, 100, 50 }, ImageCodec.Decode(png, "a.png").Image.Pixels);
        // c·a/255 + 255·(1 − a/255) with a = 128: 227.4, 177.2, 152.1; alpha 0: white
        Assert.Equal(new byte[] { 255, 255, 255, 227, 177, 152 }, ImageCodec.Decode(png, "a.png", onWhite: true).Image.Pixels);
    }

    [Fact]
    public void Colour_becomes_grey_by_BT601_luma_not_Skias_Rec709()
    {
        // pure red, green, blue: 0.299, 0.587, 0.114 of 255 (Rec.709 would give 54, 182, 18)
        var rgb = ImageCodec.Decode(ImageCodec.EncodePng(new RasterImage(3, 1, 3, [255, 0, 0, 0, 255, 0, 0, 0, 255])), "c.png").Image;
        var grey = new byte[3];

        Pixels.ConvertChannels(Pixels.ToPlanar(rgb.Pixels, 3, 1, 3), 3, 1, 3, grey);

        Assert.Equal(new byte[] { 76, 150, 29 }, grey);
        // and through an image folder's decode: a 1×1 green file to one grey pixel
        using var dir = new TempDir();
        File.WriteAllBytes(dir["g.png"], ImageCodec.EncodePng(new RasterImage(1, 1, 3, [0, 255, 0])));
        Assert.Equal(new byte[] { 150 }, ImageFolder.Decode(dir["g.png"], "g.png", 1, 1, null, null));
    }

    [Theory]
    [InlineData("rgb.png", 3, 32, false, 0)]
    [InlineData("rgb.png", 1, 28, false, 0)]
    [InlineData("grey.png", 3, 20, false, 0)]
    [InlineData("photo.jpg", 3, 32, false, 2)]
    [InlineData("photo.jpg", 1, 20, false, 2)]
    [InlineData("photo.jpg", 3, 24, true, 2)]
    public void Decoding_cropping_and_resizing_match_the_former_decoders_output(string file, int channels, int size, bool bbox, int tolerance)
    {
        // TestData/golden/*.u8: what the own PNG decoder and libjpeg-turbo (TurboJPEG, scaled decode)
        // gave with the same crop and resampler, saved before they were replaced by Skia.
        var boxes = bbox ? new Dictionary<string, (int, int, int, int)> { ["photo.jpg"] = (30, 10, 90, 100) } : null;
        var expected = File.ReadAllBytes(Golden($"{file}{(bbox ? ".bbox" : "")}.{channels}x{size}.u8"));

        var actual = ImageFolder.Decode(Golden(file), file, channels, size, boxes, bbox ? "bbox" : null);

        Assert.Equal(expected.Length, actual.Length);
        var worst = expected.Zip(actual, (e, a) => Math.Abs(e - a)).Max();
        Assert.True(worst <= tolerance, $"largest difference {worst} > {tolerance}");
    }
}
