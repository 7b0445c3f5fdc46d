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

    /// <summary>Reads an IDX file; a UserError says what is wrong with a bad one.</summary>
    public static IdxArray Read(string path)
    {
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "read", path);
        }

        if (bytes.Length >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B)
        {
            try
            {
                using var gz = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
                using var raw = new MemoryStream();
                gz.CopyTo(raw);
                // The gzip trailer ends with the uncompressed size mod 2^32; a cut-short file
                // decompresses to less without an error, so compare.
                var expected = BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(bytes.Length - 4));
                if (bytes.Length < 18 || (uint)raw.Length != expected)
                {
                    throw new InvalidDataException($"it decompresses to {raw.Length:N0} bytes, not the {expected:N0} its trailer gives");
                }

                bytes = raw.ToArray();
            }
            catch (InvalidDataException e)
            {
                throw new UserError(
                    $"{path} is a damaged gzip file ({e.Message.TrimEnd('.')}); it may be truncated. Delete it and fetch or copy it again.");
            }
        }

        return Parse(bytes, path);
    }

    /// <summary>Parses the bytes of an (uncompressed) IDX file named <paramref name="name"/> in messages.</summary>
    public static IdxArray Parse(byte[] bytes, string name)
    {
        if (bytes.Length < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != UnsignedByte || bytes[3] is 0 or > 4)
        {
            var head = Convert.ToHexString(bytes.AsSpan(0, Math.Min(4, bytes.Length)));
            throw new UserError(
                $"{name} is not an IDX file of bytes: it starts with 0x{head}, where an IDX image or label file starts with "
                + "0x00000803 or 0x00000801 (bad magic number). Replace it with the right file.");
        }

        var rank = bytes[3];
        var headerLength = 4 + (4 * rank);
        if (bytes.Length < headerLength)
        {
            throw new UserError($"{name} is truncated: it ends inside its header ({bytes.Length} bytes). Replace it with a complete copy.");
        }

        var dims = new int[rank];
        long total = 1;
        for (var i = 0; i < rank; i++)
        {
            var d = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4 + (4 * i)));
            if (d < 0)
            {
                throw new UserError($"{name} is corrupt: dimension {i} is {d}. Replace it with a good copy.");
            }

            dims[i] = d;
            total *= d;
        }

        var available = bytes.Length - headerLength;
        if (available < total)
        {
            throw new UserError(
                $"{name} is truncated: its header says {string.Join("×", dims)} = {total:N0} bytes of data, "
                + $"but only {available:N0} follow. Delete it and fetch or copy it again.");
        }

        if (total > int.MaxValue)
        {
            throw new UserError($"{name} is too large ({total:N0} values) for this reader.");
        }

        var data = bytes.AsSpan(headerLength, (int)total).ToArray();
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
