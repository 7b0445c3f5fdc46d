using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace Gan.Host.Io;

/// <summary>An 8-bit image: <see cref="Channels"/> is 1 (grey) or 3 (RGB); pixels row-major, interleaved.</summary>
internal sealed record RasterImage(int Width, int Height, int Channels, byte[] Pixels);

/// <summary>
/// PNG encoder and decoder on System.IO.Compression. The decoder reads every standard PNG: grey,
/// grey+alpha, RGB, RGBA and palette images, bit depths 1 to 16, all five row filters and Adam7
/// interlacing; it checks chunk CRCs. Alpha is ignored and 16-bit samples keep their high byte,
/// so the result is always 8-bit grey or RGB. The encoder writes 8-bit grey or RGB.
/// </summary>
internal static class Png
{
    private static readonly byte[] Signature = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>True when <paramref name="bytes"/> start with the PNG signature.</summary>
    public static bool HasSignature(ReadOnlySpan<byte> bytes) => bytes.Length >= 8 && bytes[..8].SequenceEqual(Signature);

    // ---------------------------------------------------------------------------------------
    // Encoder
    // ---------------------------------------------------------------------------------------

    public static byte[] Encode(RasterImage image)
    {
        if (image.Channels is not (1 or 3))
        {
            throw new ArgumentException("PNG encoder takes 1 or 3 channels", nameof(image));
        }

        var stride = image.Width * image.Channels;
        if (image.Pixels.Length != stride * image.Height)
        {
            throw new ArgumentException("pixel buffer does not match the image size", nameof(image));
        }

        using var output = new MemoryStream();
        output.Write(Signature);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, image.Width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), image.Height);
        ihdr[8] = 8;
        ihdr[9] = (byte)(image.Channels == 1 ? 0 : 2);
        WriteChunk(output, "IHDR", ihdr);

        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            var bpp = image.Channels;
            var prior = new byte[stride];
            var filtered = new byte[stride];
            var best = new byte[stride + 1];
            for (var y = 0; y < image.Height; y++)
            {
                var row = image.Pixels.AsSpan(y * stride, stride);
                var bestScore = long.MaxValue;
                for (byte f = 0; f <= 4; f++)
                {
                    long score = 0;
                    for (var i = 0; i < stride; i++)
                    {
                        int a = i >= bpp ? row[i - bpp] : 0, b = prior[i], c = i >= bpp ? prior[i - bpp] : 0;
                        var v = (byte)(row[i] - Predict(f, a, b, c));
                        filtered[i] = v;
                        score += v < 128 ? v : 256 - v;
                    }

                    if (score < bestScore)
                    {
                        bestScore = score;
                        best[0] = f;
                        filtered.CopyTo(best.AsSpan(1));
                    }
                }

                z.Write(best);
                row.CopyTo(prior);
            }
        }

        WriteChunk(output, "IDAT", compressed.ToArray());
        WriteChunk(output, "IEND", []);
        return output.ToArray();
    }

    private static void WriteChunk(Stream s, string type, byte[] data)
    {
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, data.Length);
        s.Write(word);
        var typeBytes = Encoding.ASCII.GetBytes(type);
        s.Write(typeBytes);
        s.Write(data);
        var crc = Crc32.Update(Crc32.Update(0xFFFFFFFFu, typeBytes), data) ^ 0xFFFFFFFFu;
        BinaryPrimitives.WriteUInt32BigEndian(word, crc);
        s.Write(word);
    }

    private static int Predict(int filter, int a, int b, int c) => filter switch
    {
        0 => 0,
        1 => a,
        2 => b,
        3 => (a + b) >> 1,
        _ => Paeth(a, b, c),
    };

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c, pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }

    // ---------------------------------------------------------------------------------------
    // Decoder
    // ---------------------------------------------------------------------------------------

    /// <summary>A PNG that cannot be decoded; the message says why.</summary>
    internal sealed class PngException(string message) : Exception(message);

    public static RasterImage Decode(byte[] bytes)
    {
        if (!HasSignature(bytes))
        {
            throw new PngException("not a PNG file (bad signature)");
        }

        int width = 0, height = 0, depth = 0, colorType = -1, interlace = 0;
        byte[]? palette = null;
        using var idat = new MemoryStream();
        var pos = 8;
        var sawEnd = false;
        while (!sawEnd)
        {
            if (pos + 8 > bytes.Length)
            {
                throw new PngException("truncated (the file ends before its IEND chunk)");
            }

            var length = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(pos));
            var type = Encoding.ASCII.GetString(bytes, pos + 4, 4);
            if (length > int.MaxValue || pos + 12L + length > bytes.Length)
            {
                throw new PngException($"truncated (chunk {type} runs past the end of the file)");
            }

            var data = bytes.AsSpan(pos + 8, (int)length);
            var stored = BinaryPrimitives.ReadUInt32BigEndian(bytes.AsSpan(pos + 8 + (int)length));
            var crc = Crc32.Update(Crc32.Update(0xFFFFFFFFu, bytes.AsSpan(pos + 4, 4)), data) ^ 0xFFFFFFFFu;
            if (crc != stored)
            {
                throw new PngException($"corrupt (CRC mismatch in chunk {type})");
            }

            switch (type)
            {
                case "IHDR":
                    if (data.Length != 13)
                    {
                        throw new PngException("corrupt (bad IHDR chunk)");
                    }

                    width = BinaryPrimitives.ReadInt32BigEndian(data);
                    height = BinaryPrimitives.ReadInt32BigEndian(data[4..]);
                    depth = data[8];
                    colorType = data[9];
                    interlace = data[12];
                    if (data[10] != 0 || data[11] != 0 || interlace > 1)
                    {
                        throw new PngException("unsupported (unknown compression, filter or interlace method)");
                    }

                    break;
                case "PLTE":
                    palette = data.ToArray();
                    break;
                case "IDAT":
                    idat.Write(data);
                    break;
                case "IEND":
                    sawEnd = true;
                    break;
                default:
                    if (char.IsUpper(type[0]))
                    {
                        throw new PngException($"unsupported (unknown critical chunk {type})");
                    }

                    break;
            }

            pos += 12 + (int)length;
        }

        if (colorType < 0)
        {
            throw new PngException("corrupt (no IHDR chunk)");
        }

        var samples = colorType switch
        {
            0 => 1,
            2 => 3,
            3 => 1,
            4 => 2,
            6 => 4,
            _ => throw new PngException($"corrupt (unknown colour type {colorType})"),
        };
        var validDepth = colorType switch
        {
            0 => depth is 1 or 2 or 4 or 8 or 16,
            3 => depth is 1 or 2 or 4 or 8,
            _ => depth is 8 or 16,
        };
        if (!validDepth)
        {
            throw new PngException($"corrupt (bit depth {depth} with colour type {colorType})");
        }

        if (width <= 0 || height <= 0 || (long)width * height > 1L << 28)
        {
            throw new PngException($"unsupported size {width}×{height}");
        }

        if (colorType == 3 && (palette is null || palette.Length % 3 != 0))
        {
            throw new PngException("corrupt (palette image without a valid PLTE chunk)");
        }

        byte[] raw;
        try
        {
            idat.Position = 0;
            using var z = new ZLibStream(idat, CompressionMode.Decompress);
            using var inflated = new MemoryStream();
            z.CopyTo(inflated);
            raw = inflated.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new PngException($"corrupt (compressed image data: {e.Message.TrimEnd('.')})");
        }

        var outChannels = colorType is 2 or 3 or 6 ? 3 : 1;
        var pixels = new byte[(long)width * height * outChannels];
        var bitsPerPixel = samples * depth;
        var bpp = Math.Max(1, bitsPerPixel / 8);
        var offset = 0;

        void Pass(int x0, int y0, int dx, int dy)
        {
            var pw = (width - x0 + dx - 1) / dx;
            var ph = (height - y0 + dy - 1) / dy;
            if (pw <= 0 || ph <= 0)
            {
                return;
            }

            var stride = (int)(((long)pw * bitsPerPixel + 7) / 8);
            var prior = new byte[stride];
            var row = new byte[stride];
            for (var r = 0; r < ph; r++)
            {
                if (offset + 1 + stride > raw.Length)
                {
                    throw new PngException("truncated (the image data ends early)");
                }

                var filter = raw[offset];
                if (filter > 4)
                {
                    throw new PngException($"corrupt (unknown row filter {filter})");
                }

                for (var i = 0; i < stride; i++)
                {
                    int a = i >= bpp ? row[i - bpp] : 0, b = prior[i], c = i >= bpp ? prior[i - bpp] : 0;
                    row[i] = (byte)(raw[offset + 1 + i] + Predict(filter, a, b, c));
                }

                offset += 1 + stride;
                var y = y0 + (r * dy);
                for (var p = 0; p < pw; p++)
                {
                    var x = x0 + (p * dx);
                    Store(row, p, pixels, ((y * width) + x) * outChannels);
                }

                (prior, row) = (row, prior);
            }
        }

        void Store(byte[] row, int p, byte[] dst, int at)
        {
            switch (colorType)
            {
                case 0:
                    dst[at] = Sample(row, p, depth, scale: true);
                    break;
                case 3:
                    var index = Sample(row, p, depth, scale: false);
                    if (index * 3 + 2 >= palette!.Length)
                    {
                        throw new PngException($"corrupt (palette index {index} out of range)");
                    }

                    dst[at] = palette[index * 3];
                    dst[at + 1] = palette[(index * 3) + 1];
                    dst[at + 2] = palette[(index * 3) + 2];
                    break;
                default:
                    var step = depth / 8;
                    var baseIndex = p * samples * step;
                    for (var ch = 0; ch < outChannels; ch++)
                    {
                        dst[at + ch] = row[baseIndex + (ch * step)];
                    }

                    break;
            }
        }

        if (interlace == 0)
        {
            Pass(0, 0, 1, 1);
        }
        else
        {
            Pass(0, 0, 8, 8);
            Pass(4, 0, 8, 8);
            Pass(0, 4, 4, 8);
            Pass(2, 0, 4, 4);
            Pass(0, 2, 2, 4);
            Pass(1, 0, 2, 2);
            Pass(0, 1, 1, 2);
        }

        return new RasterImage(width, height, outChannels, pixels);
    }

    /// <summary>Sample <paramref name="p"/> of a one-sample-per-pixel row (grey or palette).</summary>
    private static byte Sample(byte[] row, int p, int depth, bool scale)
    {
        switch (depth)
        {
            case 8:
                return row[p];
            case 16:
                return row[p * 2];
            default:
                var perByte = 8 / depth;
                var shift = 8 - (depth * ((p % perByte) + 1));
                var v = (row[p / perByte] >> shift) & ((1 << depth) - 1);
                return scale ? (byte)(v * 255 / ((1 << depth) - 1)) : (byte)v;
        }
    }
}

/// <summary>CRC-32 (ISO 3309, as PNG and gzip use it).</summary>
internal static class Crc32
{
    private static readonly uint[] Table = MakeTable();

    private static uint[] MakeTable()
    {
        var t = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            var c = n;
            for (var k = 0; k < 8; k++)
            {
                c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }

            t[n] = c;
        }

        return t;
    }

    /// <summary>Continues a CRC (start with 0xFFFFFFFF; finish by xor with 0xFFFFFFFF).</summary>
    public static uint Update(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (var b in data)
        {
            crc = Table[(crc ^ b) & 0xFF] ^ (crc >> 8);
        }

        return crc;
    }
}
