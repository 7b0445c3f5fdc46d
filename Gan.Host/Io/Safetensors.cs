using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using Gan.Functional.CSharp;

namespace Gan.Host.Io;

/// <summary>The tensors and string metadata of a safetensors file.</summary>
internal sealed record SafetensorsFile(IReadOnlyList<NamedTensor> Tensors, IReadOnlyDictionary<string, string> Metadata);

/// <summary>A safetensors file that cannot be read; the message says why.</summary>
internal sealed class SafetensorsException(string message) : Exception(message);

/// <summary>
/// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON (padded with
/// spaces to a multiple of 8) mapping each tensor name to its dtype, shape and [begin, end) byte
/// offsets into the data that follows, plus an optional "__metadata__" map of strings; then the
/// raw little-endian data. F32 and F64 tensors are supported.
/// </summary>
internal static class Safetensors
{
    private const string MetadataKey = "__metadata__";
    private const long MaxHeader = 100L << 20;

    /// <summary>
    /// The most elements one tensor may have (2^28, 1 GiB of F32): the largest tensor of a zoo
    /// checkpoint has 6.5 million (mbd28's [1024, 6304]), the classifier's test features 1.3 million.
    /// </summary>
    public const long MaxTensorElements = 1L << 28;

    /// <summary>The largest safetensors file read (one array: 2 GiB less a little; every zoo checkpoint, Adam moments included, is well under 1 GB).</summary>
    public const long MaxFileBytes = 0x7FFF_FFC7;

    public static void Write(Stream stream, IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        var list = tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        using var json = new MemoryStream();
        long offset = 0;
        using (var w = new Utf8JsonWriter(json))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WriteString(k, v);
                }

                w.WriteEndObject();
            }

            foreach (var t in list)
            {
                var size = ByteLength(t);
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.Float32Data is not null ? "F32" : "F64");
                w.WriteStartArray("shape");
                foreach (var d in t.Shape)
                {
                    w.WriteNumberValue(d);
                }

                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + size);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += size;
            }

            w.WriteEndObject();
        }

        var header = json.ToArray();
        var padded = (header.Length + 7) / 8 * 8;
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)padded);
        stream.Write(len);
        stream.Write(header);
        for (var i = header.Length; i < padded; i++)
        {
            stream.WriteByte((byte)' ');
        }

        foreach (var t in list)
        {
            if (t.Float32Data is { } f)
            {
                WriteLittleEndian(stream, f);
            }
            else
            {
                WriteLittleEndian(stream, t.Float64Data ?? []);
            }
        }
    }

    public static void WriteFile(string path, IEnumerable<NamedTensor> tensors, IReadOnlyDictionary<string, string>? metadata) =>
        AtomicFile.Write(path, s => Write(s, tensors, metadata));

    private static long ByteLength(NamedTensor t)
    {
        long count = t.Float32Data?.Length ?? t.Float64Data?.Length ?? throw new ArgumentException($"tensor {t.Name} has no data");
        var expected = t.Shape.Aggregate(1L, (a, d) => a * d);
        if (count != expected)
        {
            throw new ArgumentException($"tensor {t.Name}: {count} values for shape [{string.Join(", ", t.Shape)}]");
        }

        return count * (t.Float32Data is not null ? 4 : 8);
    }

    private static void WriteLittleEndian<T>(Stream s, T[] values)
        where T : unmanaged
    {
        if (BitConverter.IsLittleEndian)
        {
            s.Write(MemoryMarshal.AsBytes(values.AsSpan()));
            return;
        }

        var bytes = MemoryMarshal.AsBytes(values.AsSpan()).ToArray();
        var size = Marshal.SizeOf<T>();
        for (var i = 0; i < bytes.Length; i += size)
        {
            bytes.AsSpan(i, size).Reverse();
        }

        s.Write(bytes);
    }

    /// <summary>Reads a whole safetensors file; a SafetensorsException says what is wrong with a bad one.</summary>
    public static SafetensorsFile Read(byte[] bytes)
    {
        if (bytes.Length < 8)
        {
            throw new SafetensorsException($"truncated: {bytes.Length} bytes, shorter than the 8-byte header length");
        }

        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeader)
        {
            throw new SafetensorsException($"corrupt: its header length field says {headerLength:N0} bytes");
        }

        if (8 + (long)headerLength > bytes.Length)
        {
            throw new SafetensorsException(
                $"truncated: its header should be {headerLength:N0} bytes, but the file ends after {bytes.Length - 8:N0}");
        }

        var dataStart = 8 + (int)headerLength;
        var dataLength = bytes.Length - dataStart;
        if (!System.Text.Unicode.Utf8.IsValid(bytes.AsSpan(8, (int)headerLength)))
        {
            throw new SafetensorsException("corrupt: its header is not valid UTF-8 text");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength));
        }
        catch (JsonException e)
        {
            throw new SafetensorsException($"corrupt: its header is not valid JSON ({e.Message.TrimEnd('.')})");
        }

        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new SafetensorsException("corrupt: its header is not a JSON object");
            }

            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var entries = new List<(string Name, string DType, int[] Shape, long Count, long Begin, long End)>();
            // JSON allows a name twice; a second tensor (or metadata entry) of the same name would silently replace the first
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                if (!names.Add(p.Name))
                {
                    throw new SafetensorsException($"corrupt: its header names '{p.Name}' twice");
                }

                if (p.Name == MetadataKey)
                {
                    if (p.Value.ValueKind != JsonValueKind.Object)
                    {
                        throw new SafetensorsException("corrupt: __metadata__ is not an object");
                    }

                    foreach (var m in p.Value.EnumerateObject())
                    {
                        if (!metadata.TryAdd(m.Name, m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString() ?? "" : m.Value.GetRawText()))
                        {
                            throw new SafetensorsException($"corrupt: its __metadata__ names '{m.Name}' twice");
                        }
                    }

                    continue;
                }

                entries.Add(ParseEntry(p));
            }

            long expectedData = 0;
            var tensors = new List<NamedTensor>(entries.Count);
            foreach (var e in entries.OrderBy(e => e.Begin))
            {
                var elemSize = e.DType == "F32" ? 4 : 8;
                var count = e.Count;
                if (e.End - e.Begin != count * elemSize)
                {
                    throw new SafetensorsException(
                        $"corrupt: tensor '{e.Name}' of shape [{string.Join(", ", e.Shape)}] needs {count * elemSize:N0} bytes, its offsets span {e.End - e.Begin:N0}");
                }

                if (e.Begin != expectedData)
                {
                    throw new SafetensorsException($"corrupt: tensor '{e.Name}' starts at byte {e.Begin:N0} of the data, not at {expectedData:N0} (overlap or hole)");
                }

                if (e.End > dataLength)
                {
                    throw new SafetensorsException(
                        $"truncated: tensor '{e.Name}' ends at byte {e.End:N0} of the data, but the file holds only {dataLength:N0} bytes of data");
                }

                expectedData = e.End;
                var span = bytes.AsSpan(dataStart + (int)e.Begin, (int)(e.End - e.Begin));
                tensors.Add(e.DType == "F32"
                    ? new NamedTensor(e.Name, e.Shape, ReadLittleEndian<float>(span), null)
                    : new NamedTensor(e.Name, e.Shape, null, ReadLittleEndian<double>(span)));
            }

            if (expectedData != dataLength)
            {
                throw new SafetensorsException($"corrupt: {dataLength - expectedData:N0} bytes of data after the last tensor");
            }

            return new SafetensorsFile(tensors.OrderBy(t => t.Name, StringComparer.Ordinal).ToList(), metadata);
        }
    }

    private static (string Name, string DType, int[] Shape, long Count, long Begin, long End) ParseEntry(JsonProperty p)
    {
        var v = p.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array
            || offsets.GetArrayLength() != 2)
        {
            throw new SafetensorsException($"corrupt: the header entry of '{p.Name}' lacks dtype, shape or data_offsets");
        }

        var dt = dtype.GetString() ?? "";
        if (dt is not ("F32" or "F64"))
        {
            throw new SafetensorsException($"unsupported: tensor '{p.Name}' has dtype {dt}; only F32 and F64 are read");
        }

        var dims = new List<int>();
        foreach (var d in shape.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out var n) || n < 0)
            {
                throw new SafetensorsException($"corrupt: tensor '{p.Name}' has a bad shape {shape.GetRawText()}");
            }

            dims.Add(n);
        }

        // the element count in checked steps: a product that passes the cap is refused before it could wrap
        long count = dims.Contains(0) ? 0 : 1;
        foreach (var d in dims)
        {
            if (count != 0 && count > MaxTensorElements / d)
            {
                throw new SafetensorsException(
                    $"corrupt: tensor '{p.Name}' has shape {shape.GetRawText()}, more than the {MaxTensorElements:N0} elements a tensor may have");
            }

            count *= d;
        }

        if (offsets[0].ValueKind != JsonValueKind.Number || offsets[1].ValueKind != JsonValueKind.Number
            || !offsets[0].TryGetInt64(out var begin) || !offsets[1].TryGetInt64(out var end) || begin < 0 || end < begin)
        {
            throw new SafetensorsException($"corrupt: tensor '{p.Name}' has bad data_offsets {offsets.GetRawText()}");
        }

        return (p.Name, dt, dims.ToArray(), count, begin, end);
    }

    private static T[] ReadLittleEndian<T>(ReadOnlySpan<byte> span)
        where T : unmanaged
    {
        var result = MemoryMarshal.Cast<byte, T>(span).ToArray();
        if (!BitConverter.IsLittleEndian)
        {
            var bytes = MemoryMarshal.AsBytes(result.AsSpan());
            var size = Marshal.SizeOf<T>();
            for (var i = 0; i < bytes.Length; i += size)
            {
                bytes.Slice(i, size).Reverse();
            }
        }

        return result;
    }

    /// <summary>The string form of a header (for error messages and tests).</summary>
    public static string HeaderText(byte[] bytes)
    {
        var n = (int)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        return Encoding.UTF8.GetString(bytes, 8, n);
    }
}
