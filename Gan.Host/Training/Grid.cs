using Gan.Host.Io;

namespace Gan.Host.Training;

/// <summary>Lays generated images out in a near-square grid with a 2-pixel black border, like torchvision's make_grid.</summary>
internal static class Grid
{
    public const int Padding = 2;

    /// <summary>
    /// <paramref name="images"/>: <paramref name="count"/> images, NCHW flat, in [−1, 1] (or [0, 1]
    /// when <paramref name="zeroToOne"/>).
    /// </summary>
    public static RasterImage Make(float[] images, int count, int channels, int height, int width, bool zeroToOne, int? columns = null)
    {
        var cols = columns ?? (int)Math.Ceiling(Math.Sqrt(count));
        var rows = (count + cols - 1) / cols;
        var gw = (cols * (width + Padding)) + Padding;
        var gh = (rows * (height + Padding)) + Padding;
        var outChannels = channels == 1 ? 1 : 3;
        var pixels = new byte[gw * gh * outChannels];
        var plane = height * width;
        for (var n = 0; n < count; n++)
        {
            var ox = Padding + ((n % cols) * (width + Padding));
            var oy = Padding + ((n / cols) * (height + Padding));
            for (var c = 0; c < outChannels; c++)
            {
                for (var y = 0; y < height; y++)
                {
                    for (var x = 0; x < width; x++)
                    {
                        var v = images[(n * channels * plane) + (c * plane) + (y * width) + x];
                        var scaled = zeroToOne ? v * 255f : (v + 1f) * 127.5f;
                        var b = float.IsNaN(scaled) ? (byte)0 : (byte)Math.Clamp((int)MathF.Round(scaled), 0, 255);
                        pixels[((((oy + y) * gw) + ox + x) * outChannels) + c] = b;
                    }
                }
            }
        }

        return new RasterImage(gw, gh, outChannels, pixels);
    }
}
