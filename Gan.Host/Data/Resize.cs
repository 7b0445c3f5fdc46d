namespace Gan.Host.Data;

/// <summary>
/// Resampling of planar 8-bit images with a triangle (bilinear) filter that widens when
/// shrinking, so downscaling averages rather than aliases (as PIL's bilinear resize does).
/// </summary>
internal sealed class Resampler
{
    private readonly (int Start, float[] Weights)[] rows;
    private readonly (int Start, float[] Weights)[] cols;

    /// <summary>Maps the source window (x0, y0, w, h) onto an outW × outH image.</summary>
    public Resampler(int srcX0, int srcY0, int srcW, int srcH, int outW, int outH, int fullW, int fullH)
    {
        SourceX = srcX0;
        SourceY = srcY0;
        OutWidth = outW;
        OutHeight = outH;
        cols = Weights(srcX0, srcW, outW, fullW);
        rows = Weights(srcY0, srcH, outH, fullH);
    }

    public int SourceX { get; }
    public int SourceY { get; }
    public int OutWidth { get; }
    public int OutHeight { get; }

    private static (int, float[])[] Weights(int start, int inSize, int outSize, int fullSize)
    {
        var scale = (double)inSize / outSize;
        var support = Math.Max(1.0, scale);
        var result = new (int, float[])[outSize];
        for (var o = 0; o < outSize; o++)
        {
            var center = start + ((o + 0.5) * scale);
            // only pixels inside the window count, as if it had been cropped first
            var lo = Math.Max(start, (int)Math.Floor(center - support));
            var hi = Math.Min(Math.Min(fullSize, start + inSize) - 1, (int)Math.Ceiling(center + support));
            var w = new float[hi - lo + 1];
            double sum = 0;
            for (var i = lo; i <= hi; i++)
            {
                var v = Math.Max(0.0, 1.0 - Math.Abs((i + 0.5 - center) / support));
                w[i - lo] = (float)v;
                sum += v;
            }

            if (sum <= 0)
            {
                var nearest = Math.Clamp((int)center, start, Math.Min(fullSize, start + inSize) - 1);
                result[o] = (nearest, [1f]);
                continue;
            }

            for (var i = 0; i < w.Length; i++)
            {
                w[i] = (float)(w[i] / sum);
            }

            result[o] = (lo, w);
        }

        return result;
    }

    /// <summary>Resamples one plane of a fullW-wide source into <paramref name="dst"/> (OutHeight × OutWidth).</summary>
    public void Plane(ReadOnlySpan<byte> src, int fullW, int fullH, Span<byte> dst)
    {
        var tmp = new float[fullH * OutWidth];
        for (var y = 0; y < fullH; y++)
        {
            var row = src.Slice(y * fullW, fullW);
            for (var x = 0; x < OutWidth; x++)
            {
                var (s, w) = cols[x];
                float acc = 0;
                for (var k = 0; k < w.Length; k++)
                {
                    acc += row[s + k] * w[k];
                }

                tmp[(y * OutWidth) + x] = acc;
            }
        }

        for (var y = 0; y < OutHeight; y++)
        {
            var (s, w) = rows[y];
            for (var x = 0; x < OutWidth; x++)
            {
                float acc = 0;
                for (var k = 0; k < w.Length; k++)
                {
                    acc += tmp[((s + k) * OutWidth) + x] * w[k];
                }

                dst[(y * OutWidth) + x] = (byte)Math.Clamp((int)MathF.Round(acc), 0, 255);
            }
        }
    }
}

/// <summary>Channel and layout conversions of 8-bit images.</summary>
internal static class Pixels
{
    /// <summary>Interleaved (H, W, C) → planar (C, H, W).</summary>
    public static byte[] ToPlanar(byte[] interleaved, int channels, int height, int width)
    {
        if (channels == 1)
        {
            return interleaved;
        }

        var plane = height * width;
        var result = new byte[interleaved.Length];
        for (var i = 0; i < plane; i++)
        {
            for (var c = 0; c < channels; c++)
            {
                result[(c * plane) + i] = interleaved[(i * channels) + c];
            }
        }

        return result;
    }

    /// <summary>Planar (C, H, W) → interleaved (H, W, C).</summary>
    public static byte[] ToInterleaved(byte[] planar, int channels, int height, int width)
    {
        if (channels == 1)
        {
            return planar;
        }

        var plane = height * width;
        var result = new byte[planar.Length];
        for (var i = 0; i < plane; i++)
        {
            for (var c = 0; c < channels; c++)
            {
                result[(i * channels) + c] = planar[(c * plane) + i];
            }
        }

        return result;
    }

    /// <summary>
    /// Planar image with <paramref name="from"/> channels → <paramref name="to"/> channels:
    /// grey is repeated for RGB; RGB becomes grey by ITU-R BT.601 luma.
    /// </summary>
    public static void ConvertChannels(ReadOnlySpan<byte> src, int from, int to, int plane, Span<byte> dst)
    {
        if (from == to)
        {
            src[..(plane * from)].CopyTo(dst);
        }
        else if (from == 1 && to == 3)
        {
            for (var c = 0; c < 3; c++)
            {
                src[..plane].CopyTo(dst.Slice(c * plane, plane));
            }
        }
        else if (from == 3 && to == 1)
        {
            for (var i = 0; i < plane; i++)
            {
                var v = (299 * src[i]) + (587 * src[plane + i]) + (114 * src[(2 * plane) + i]);
                dst[i] = (byte)((v + 500) / 1000);
            }
        }
        else
        {
            throw new ArgumentException($"cannot convert {from} channels to {to}");
        }
    }
}
