using System.Buffers.Binary;
using System.Text;
using Gan.Functional.CSharp;
using Gan.Host.Io;

namespace Gan.Host.Tests;

public class SafetensorsTests
{
    private static byte[] Write(IEnumerable<NamedTensor> tensors, Dictionary<string, string>? meta = null)
    {
        using var ms = new MemoryStream();
        Safetensors.Write(ms, tensors, meta);
        return ms.ToArray();
    }

    private static NamedTensor[] Sample() =>
    [
        new("generator.0.weight", [2, 3], [1f, -2f, 3.5f, float.Epsilon, float.MaxValue, -0f], null),
        new("train.step", [], null, [42.0]),
        new("train.key", [2], null, [123456789.0, 4294967295.0]),
        new("discriminator.1.bias", [0], [], null),
    ];

    [Fact]
    public void Float32_and_float64_tensors_and_metadata_survive_a_round_trip_bit_for_bit()
    {
        var bytes = Write(Sample(), new() { ["model"] = "mlp", ["config"] = "{\"a\": 1}" });

        var file = Safetensors.Read(bytes);

        Assert.Equal("mlp", file.Metadata["model"]);
        Assert.Equal("{\"a\": 1}", file.Metadata["config"]);
        var byName = file.Tensors.ToDictionary(t => t.Name);
        foreach (var t in Sample())
        {
            var r = byName[t.Name];
            Assert.Equal(t.Shape, r.Shape);
            Assert.Equal(t.Float32Data, r.Float32Data);
            Assert.Equal(t.Float64Data, r.Float64Data);
        }
    }

    [Fact]
    public void The_header_is_padded_to_a_multiple_of_8_and_lists_dtype_shape_and_offsets()
    {
        var bytes = Write(Sample());

        var n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        var header = Safetensors.HeaderText(bytes);
        Assert.Contains("\"generator.0.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[", header);
        Assert.Contains("\"train.step\":{\"dtype\":\"F64\",\"shape\":[],", header);
        Assert.Equal(8 + (long)n + (6 * 4) + 8 + 16, bytes.Length);
    }

    [Fact]
    public void A_file_laid_out_by_hand_to_the_specification_is_read_correctly()
    {
        // Another writer's choices: no padding, no metadata, keys not in data order.
        var json = "{\"b\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[8,16]},\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + 16];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(8 + header.Length), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(12 + header.Length), -2f);
        BinaryPrimitives.WriteDoubleLittleEndian(bytes.AsSpan(16 + header.Length), Math.PI);

        var file = Safetensors.Read(bytes);

        Assert.Equal([1.5f, -2f], file.Tensors.Single(t => t.Name == "a").Float32Data!);
        Assert.Equal([Math.PI], file.Tensors.Single(t => t.Name == "b").Float64Data!);
        Assert.Empty(file.Metadata);
    }

    [Fact]
    public void A_file_cut_short_in_its_data_is_reported_as_truncated()
    {
        var bytes = Write(Sample());

        var e = Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes[..(bytes.Length - 4)]));

        Assert.StartsWith("truncated", e.Message);
    }

    [Fact]
    public void A_file_cut_short_in_its_header_is_reported_as_truncated()
    {
        var bytes = Write(Sample());

        Assert.StartsWith("truncated", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes[..40])).Message);
        Assert.StartsWith("truncated", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes[..5])).Message);
    }

    [Fact]
    public void An_absurd_header_length_is_reported_as_corrupt()
    {
        var bytes = Write(Sample());
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, ulong.MaxValue / 2);

        Assert.Contains("header length", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes)).Message);
    }

    [Fact]
    public void A_header_that_is_not_JSON_is_reported_as_corrupt()
    {
        var bytes = Write(Sample());
        bytes[8] = (byte)'[';
        bytes[9] = (byte)'x';

        Assert.Contains("not valid JSON", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes)).Message);
    }

    private static byte[] WithHeader(string json, int dataBytes)
    {
        var header = Encoding.UTF8.GetBytes(json);
        var bytes = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)header.Length);
        header.CopyTo(bytes, 8);
        return bytes;
    }

    [Fact]
    public void Offsets_that_disagree_with_the_shape_are_reported()
    {
        var bytes = WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);

        Assert.Contains("needs 12 bytes", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes)).Message);
    }

    [Fact]
    public void A_hole_between_tensors_is_reported()
    {
        var bytes = WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8);

        Assert.Contains("overlap or hole", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes)).Message);
    }

    [Fact]
    public void An_unsupported_dtype_is_named()
    {
        var bytes = WithHeader("{\"a\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2);

        Assert.Contains("dtype BF16", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes)).Message);
    }

    [Fact]
    public void Bytes_after_the_last_tensor_are_reported()
    {
        var bytes = WithHeader("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12);

        Assert.Contains("after the last tensor", Assert.Throws<SafetensorsException>(() => Safetensors.Read(bytes)).Message);
    }

    [Fact]
    public void An_atomic_write_that_fails_leaves_the_previous_file_and_no_temporary_file()
    {
        using var dir = new TempDir();
        var path = dir["x.safetensors"];
        Safetensors.WriteFile(path, Sample(), null);
        var before = File.ReadAllBytes(path);

        Assert.ThrowsAny<Exception>(() => AtomicFile.Write(path, s =>
        {
            s.Write(new byte[100]);
            throw new IOException("simulated failure");
        }));

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Single(Directory.GetFiles(dir.Path));
    }
}
