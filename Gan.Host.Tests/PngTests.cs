using Gan.Host.Io;

namespace Gan.Host.Tests;

public class PngTests
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

        var back = Png.Decode(Png.Encode(image));

        Assert.Equal((w, h, 1), (back.Width, back.Height, back.Channels));
        Assert.Equal(image.Pixels, back.Pixels);
    }

    [Theory]
    [InlineData(64, 64)]
    [InlineData(3, 11)]
    public void A_colour_image_survives_an_encode_and_decode_unchanged(int w, int h)
    {
        var image = Random(w, h, 3, 99);

        var back = Png.Decode(Png.Encode(image));

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

        var bytes = Png.Encode(new RasterImage(256, 256, 1, pixels));

        Assert.True(bytes.Length < 2000, $"{bytes.Length} bytes");
    }

    [Fact]
    public void An_RGBA_PNG_written_by_python_zlib_with_all_five_filters_decodes_to_its_RGB_pixels()
    {
        var image = Png.Decode(Convert.FromBase64String(RgbaFilters));

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
        var image = Png.Decode(Convert.FromBase64String(RgbInterlaced));

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
    public void A_16_bit_grey_PNG_decodes_to_the_high_byte_of_each_sample()
    {
        var image = Png.Decode(Convert.FromBase64String(Grey16));

        Assert.Equal(1, image.Channels);
        for (var i = 0; i < 35; i++)
        {
            Assert.Equal(Pattern(i % 7, i / 7, 0), image.Pixels[i]);
        }
    }

    [Fact]
    public void A_2_bit_interlaced_grey_PNG_decodes_with_its_levels_scaled_to_0_to_255()
    {
        var image = Png.Decode(Convert.FromBase64String(Grey2Interlaced));

        for (var i = 0; i < 35; i++)
        {
            Assert.Equal((byte)((((i % 7) + (i / 7)) % 4) * 85), image.Pixels[i]);
        }
    }

    [Fact]
    public void A_4_bit_palette_PNG_decodes_to_the_palette_colours()
    {
        var image = Png.Decode(Convert.FromBase64String(Palette4));

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
    public void A_file_that_is_not_a_PNG_is_rejected_for_its_signature()
    {
        var e = Assert.Throws<Png.PngException>(() => Png.Decode("GIF89a......"u8.ToArray()));

        Assert.Contains("bad signature", e.Message);
    }

    [Fact]
    public void A_PNG_cut_short_is_reported_as_truncated()
    {
        var bytes = Png.Encode(Random(20, 20, 3, 5));

        var e = Assert.Throws<Png.PngException>(() => Png.Decode(bytes[..(bytes.Length / 2)]));

        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void A_PNG_with_a_flipped_bit_fails_its_CRC_check()
    {
        var bytes = Png.Encode(Random(20, 20, 1, 5));
        bytes[45] ^= 0x10;

        var e = Assert.Throws<Png.PngException>(() => Png.Decode(bytes));

        Assert.Contains("CRC mismatch", e.Message);
    }
}
