using Gan.Host.Io;

namespace Gan.Host.Training;

/// <summary>Scatter plots of 2-D samples over a mixture's modes: the "sample grid" of the toy datasets.</summary>
internal static class Scatter
{
    public const int Size = 320;

    /// <summary>
    /// <paramref name="count"/> points (flat x, y) as dark dots on white, over a light grid with the
    /// mode centres as red crosses; the view spans ±1.5 × the farthest mode centre on both axes
    /// (points outside are left out).
    /// </summary>
    public static RasterImage Plot(float[] points, int count, double[][] means)
    {
        var extent = 1.5 * means.Max(m => Math.Max(Math.Abs(m[0]), Math.Abs(m[1])));
        var px = new byte[Size * Size * 3];
        Array.Fill(px, (byte)255);

        int ToPixel(double v) => (int)Math.Round((v + extent) / (2 * extent) * (Size - 1));

        void Set(int x, int y, byte r, byte g, byte b)
        {
            if (x < 0 || y < 0 || x >= Size || y >= Size)
            {
                return;
            }

            var o = (((Size - 1 - y) * Size) + x) * 3; // y grows upwards
            (px[o], px[o + 1], px[o + 2]) = (r, g, b);
        }

        // axes through 0 and a frame
        for (var i = 0; i < Size; i++)
        {
            Set(i, ToPixel(0), 225, 225, 225);
            Set(ToPixel(0), i, 225, 225, 225);
            Set(i, 0, 160, 160, 160);
            Set(i, Size - 1, 160, 160, 160);
            Set(0, i, 160, 160, 160);
            Set(Size - 1, i, 160, 160, 160);
        }

        for (var n = 0; n < count; n++)
        {
            double x = points[2 * n], y = points[(2 * n) + 1];
            if (!double.IsFinite(x) || !double.IsFinite(y) || Math.Abs(x) > extent || Math.Abs(y) > extent)
            {
                continue;
            }

            int cx = ToPixel(x), cy = ToPixel(y);
            for (var dy = 0; dy <= 1; dy++)
            {
                for (var dx = 0; dx <= 1; dx++)
                {
                    Set(cx + dx, cy + dy, 20, 60, 160);
                }
            }
        }

        foreach (var m in means)
        {
            int cx = ToPixel(m[0]), cy = ToPixel(m[1]);
            for (var d = -4; d <= 4; d++)
            {
                Set(cx + d, cy + d, 220, 30, 30);
                Set(cx + d, cy - d, 220, 30, 30);
            }
        }

        return new RasterImage(Size, Size, 3, px);
    }
}
