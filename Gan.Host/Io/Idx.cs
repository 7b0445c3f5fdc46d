using System.Buffers.Binary;
using System.IO.Compression;

namespace Gan.Host.Io;

/// <summary>An IDX array of unsigned bytes (the MNIST file format): dimensions and row-major data.</summary>
internal sealed record IdxArray(int[] Dimensions, byte[] Data)
{
    public long Count => Dimensions.Length == 0 ? 1 : Dimensions[0];
}

/// <summary>
/// Reads and writes IDX files (raw or gzip-compressed): a big-endian magic of two zero bytes, a
/// type code (0x08: unsigned byte) and the number of dimensions, then one big-endian int32 per
/// dimension, then the data.
/// </summary>
internal static class Idx
{
    private const byte UnsignedByte = 0x08;

    /// <summary>
    /// The most data bytes one IDX file may hold (1 GiB): MNIST's and Fashion-MNIST's largest file
    /// holds 47,040,000. Checked against the header before anything is allocated.
    /// </summary>
    public const long MaxDataBytes = 1L << 30;

    /// <summary>Reads an IDX file (raw or gzip); a UserError says what is wrong with a bad one.</summary>
    public static IdxArray Read(string path)
    {
        try
        {
            using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
            // a compressed file is never much larger than its content, so one cap serves both kinds
            if (file.Length > MaxDataBytes + (1 << 20))
            {
                throw new UserError(
                    $"{path} is {file.Length:N0} bytes, larger than any IDX dataset file this reader takes ({MaxDataBytes:N0} bytes of data). "
                    + "Check that --data-dir points at the dataset.");
            }

            return Read(file, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "read", path);
        }
    }

    /// <summary>Reads an IDX file (raw or gzip) from <paramref name="bytes"/>, named <paramref name="name"/> in messages.</summary>
    public static IdxArray Read(byte[] bytes, string name) => Read(new MemoryStream(bytes, writable: false), name);

    private static IdxArray Read(Stream stream, string name)
    {
        Span<byte> sig = stackalloc byte[2];
        var got = stream.ReadAtLeast(sig, 2, throwOnEndOfStream: false);
        stream.Position = 0;
        if (got == 2 && sig[0] == 0x1F && sig[1] == 0x8B)
        {
            try
            {
                using var gz = new GZipStream(stream, CompressionMode.Decompress, leaveOpen: true);
                return ReadGzip(gz, name);
            }
            catch (InvalidDataException e)
            {
                throw Damaged(name, e.Message.TrimEnd('.'));
            }
        }

        var bytes = new byte[stream.Length];
        stream.ReadExactly(bytes);
        return Parse(bytes, name);
    }

    private static UserError Damaged(string name, string why) =>
        new($"{name} is a damaged gzip file ({why}); it may be cut short or corrupt. Delete it and fetch or copy it again.");

    /// <summary>
    /// The IDX content of a gzip stream: the header first, then exactly the data bytes it gives
    /// (never more out of the decompressor, and nothing allocated before the size is checked).
    /// </summary>
    private static IdxArray ReadGzip(Stream gz, string name)
    {
        var head = new byte[4 + (4 * 4)];
        var n = gz.ReadAtLeast(head.AsSpan(0, 4), 4, throwOnEndOfStream: false);
        CheckMagic(head.AsSpan(0, n), name);
        var rank = head[3];
        var headerLength = 4 + (4 * rank);
        n += gz.ReadAtLeast(head.AsSpan(4, headerLength - 4), headerLength - 4, throwOnEndOfStream: false);
        if (n < headerLength)
        {
            throw Damaged(name, $"it decompresses to {n:N0} bytes, which end inside its IDX header");
        }

        var (dims, total) = Dimensions(head, rank, name);
        // grown as data arrives, so a header that promises much over a short stream allocates little
        var data = new byte[Math.Min(total, 1 << 20)];
        var read = 0;
        while (read < total)
        {
            if (read == data.Length)
            {
                Array.Resize(ref data, (int)Math.Min(total, 2L * data.Length));
            }

            var r = gz.Read(data, read, data.Length - read);
            if (r == 0)
            {
                break;
            }

            read += r;
        }

        if (read < total)
        {
            throw Damaged(name, $"it decompresses to {headerLength + read:N0} bytes, not the {headerLength + total:N0} its IDX header gives");
        }

        // one more byte: the end of the stream (where gzip's CRC is checked), or data the header does not cover
        Span<byte> one = stackalloc byte[1];
        if (gz.Read(one) != 0)
        {
            throw Damaged(name, $"it decompresses to more than the {headerLength + total:N0} bytes its IDX header gives");
        }

        return new IdxArray(dims, data);
    }

    private static void CheckMagic(ReadOnlySpan<byte> bytes, string name)
    {
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != UnsignedByte || bytes[3] is 0 or > 4)
        {
            var head = Convert.ToHexString(bytes[..Math.Min(4, bytes.Length)]);
            throw new UserError(
                $"{name} is not an IDX file of bytes: it starts with 0x{head}, where an IDX image or label file starts with "
                + "0x00000803 or 0x00000801 (bad magic number). Replace it with the right file.");
        }
    }

    /// <summary>The dimensions of a header and their product, checked against <see cref="MaxDataBytes"/> without overflow.</summary>
    private static (int[] Dims, int Total) Dimensions(ReadOnlySpan<byte> header, int rank, string name)
    {
        var dims = new int[rank];
        long total = 1;
        for (var i = 0; i < rank; i++)
        {
            var d = BinaryPrimitives.ReadInt32BigEndian(header[(4 + (4 * i))..]);
            if (d < 0)
            {
                throw new UserError($"{name} is corrupt: dimension {i} is {d}. Replace it with a good copy.");
            }

            dims[i] = d;
        }

        // a zero dimension makes the product 0 whatever the others are; otherwise stop before it can pass the cap
        if (!dims.Contains(0))
        {
            foreach (var d in dims)
            {
                if (total > MaxDataBytes / d)
                {
                    throw new UserError(
                        $"{name} is corrupt or not a dataset this reader takes: its header gives dimensions {string.Join("×", dims)}, "
                        + $"more than {MaxDataBytes:N0} bytes of data. Replace it with a good copy.");
                }

                total *= d;
            }
        }
        else
        {
            total = 0;
        }

        return (dims, (int)total);
    }

    /// <summary>Parses the bytes of an (uncompressed) IDX file named <paramref name="name"/> in messages.</summary>
    public static IdxArray Parse(byte[] bytes, string name)
    {
        CheckMagic(bytes, name);
        var rank = bytes[3];
        var headerLength = 4 + (4 * rank);
        if (bytes.Length < headerLength)
        {
            throw new UserError($"{name} is truncated: it ends inside its header ({bytes.Length} bytes). Replace it with a complete copy.");
        }

        var (dims, total) = Dimensions(bytes, rank, name);
        var available = bytes.Length - headerLength;
        if (available < total)
        {
            throw new UserError(
                $"{name} is truncated: its header says {string.Join("×", dims)} = {total:N0} bytes of data, "
                + $"but only {available:N0} follow. Delete it and fetch or copy it again.");
        }

        var data = bytes.AsSpan(headerLength, total).ToArray();
        return new IdxArray(dims, data);
    }

    /// <summary>Writes an unsigned-byte IDX file, gzip-compressed when <paramref name="gzip"/>.</summary>
    public static void Write(string path, int[] dims, byte[] data, bool gzip)
    {
        var header = new byte[4 + (4 * dims.Length)];
        header[2] = UnsignedByte;
        header[3] = (byte)dims.Length;
        for (var i = 0; i < dims.Length; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + (4 * i)), dims[i]);
        }

        AtomicFile.Write(path, s =>
        {
            if (gzip)
            {
                using var gz = new GZipStream(s, CompressionLevel.Fastest, leaveOpen: true);
                gz.Write(header);
                gz.Write(data);
            }
            else
            {
                s.Write(header);
                s.Write(data);
            }
        });
    }
}
