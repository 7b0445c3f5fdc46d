using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Tests;

public class DataTests
{
    [Fact]
    public void The_epoch_order_is_a_permutation_fixed_by_seed_and_epoch()
    {
        var a = RunRandom.Permutation(1000, 7, 3);

        Assert.Equal(Enumerable.Range(0, 1000), a.Order());
        Assert.Equal(a, RunRandom.Permutation(1000, 7, 3));
        Assert.NotEqual(a, RunRandom.Permutation(1000, 7, 4));
        Assert.NotEqual(a, RunRandom.Permutation(1000, 8, 3));
        Assert.NotEqual(Enumerable.Range(0, 1000), a);
    }

    [Fact]
    public void Pixels_are_scaled_to_minus_one_to_one_or_zero_to_one()
    {
        var set = new MemoryImageSet([0, 255, 127, 128], 1, 1, 2, 2);
        var tanh = new float[4];
        var sigmoid = new float[4];

        new BatchLoader(set, 1, 2, 2, zeroToOne: false).Fill([0], tanh);
        new BatchLoader(set, 1, 2, 2, zeroToOne: true).Fill([0], sigmoid);

        Assert.Equal([-1f, 1f, -0.5f / 127.5f, 0.5f / 127.5f], tanh);
        Assert.Equal([0f, 1f, 127 / 255f, 128 / 255f], sigmoid);
    }

    [Fact]
    public void MNIST_is_resized_to_64_and_repeated_into_three_channels_for_colour_models()
    {
        var pixels = new byte[28 * 28];
        for (var y = 8; y < 20; y++)
        {
            for (var x = 8; x < 20; x++)
            {
                pixels[(y * 28) + x] = 255;
            }
        }

        var batch = new float[3 * 64 * 64];
        new BatchLoader(new MemoryImageSet(pixels, 1, 1, 28, 28), 3, 64, 64, zeroToOne: true).Fill([0], batch);

        Assert.Equal(0f, batch[0]);
        Assert.Equal(1f, batch[(32 * 64) + 32], 2);
        Assert.Equal(batch.AsSpan(0, 4096).ToArray(), batch.AsSpan(4096 * 2, 4096).ToArray());
    }

    [Fact]
    public void Shrinking_averages_instead_of_picking_pixels()
    {
        // a 1-pixel checkerboard averages to mid-grey when halved
        var src = Enumerable.Range(0, 16 * 16).Select(i => (byte)(((i % 16) + (i / 16)) % 2 == 0 ? 0 : 255)).ToArray();
        var dst = new byte[8 * 8];

        new Resampler(0, 0, 16, 16, 8, 8, 16, 16).Plane(src, 16, 16, dst);

        Assert.All(dst, v => Assert.InRange(v, 120, 135));
    }

    [Fact]
    public void A_bounding_box_list_in_CelebA_format_is_read()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["bbox.txt"], "2\nimage_id x_1 y_1 width height\n000001.jpg    95  71 226 313\n000002.jpg 72 94 221 306\n");

        var boxes = ImageFolder.ReadBoundingBoxes(dir["bbox.txt"]);

        Assert.Equal((95, 71, 226, 313), boxes["000001.jpg"]);
        Assert.Equal((72, 94, 221, 306), boxes["000002.jpg"]);
    }

    [Fact]
    public void A_malformed_bounding_box_line_is_named_with_its_number()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["bbox.txt"], "1\nimage_id x_1 y_1 width height\n000001.jpg 95 71 wide 313\n");

        var e = Assert.Throws<UserError>(() => ImageFolder.ReadBoundingBoxes(dir["bbox.txt"]));

        Assert.Contains("at line 3", e.Message);
    }

    [Fact]
    public void An_image_is_cropped_to_its_bounding_box_then_resized_and_made_grey()
    {
        using var dir = new TempDir();
        // 40×30 red image with a white 10×10 square at (20, 5)
        var pixels = new byte[40 * 30 * 3];
        for (var i = 0; i < 40 * 30; i++)
        {
            pixels[i * 3] = 255;
        }

        for (var y = 5; y < 15; y++)
        {
            for (var x = 20; x < 30; x++)
            {
                pixels[(((y * 40) + x) * 3) + 1] = 255;
                pixels[(((y * 40) + x) * 3) + 2] = 255;
            }
        }

        File.WriteAllBytes(dir["a.png"], ImageCodec.EncodePng(new RasterImage(40, 30, 3, pixels)));
        var boxes = new Dictionary<string, (int, int, int, int)> { ["a.png"] = (20, 5, 10, 10) };

        var cropped = ImageFolder.Decode(dir["a.png"], "a.png", 1, 4, boxes, "bbox.txt");
        var whole = ImageFolder.Decode(dir["a.png"], "a.png", 3, 6, null, null);

        Assert.All(cropped, v => Assert.Equal(255, v));
        Assert.Equal(3 * 36, whole.Length);
        Assert.Equal(255, whole[0]); // red plane of the top-left corner
        Assert.Equal(0, whole[36]); // green plane of the top-left corner
    }

    [Fact]
    public void An_image_missing_from_the_bounding_box_list_is_named()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir["b.png"], ImageCodec.EncodePng(new RasterImage(4, 4, 1, new byte[16])));

        var e = Assert.Throws<UserError>(() => ImageFolder.Decode(dir["b.png"], "b.png", 1, 4, new Dictionary<string, (int, int, int, int)> { ["a.png"] = (0, 0, 2, 2) }, "bbox.txt"));

        Assert.Contains("is not listed in the bounding-box file bbox.txt", e.Message);
    }
}
