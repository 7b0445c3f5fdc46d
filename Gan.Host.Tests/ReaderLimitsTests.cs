using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Gan.Host.Data;
using Gan.Host.Io;
using Gan.Host.Training;
using Xunit.Abstractions;

namespace Gan.Host.Tests;

/// <summary>The bounded readers' named cases (issue 15): each hostile input ends in the reader's clear error.</summary>
public class ReaderLimitsTests(ITestOutputHelper output)
{
    private static byte[] IdxHeader(params int[] dims)
    {
        var h = new byte[4 + (4 * dims.Length)];
        h[2] = 8;
        h[3] = (byte)dims.Length;
        for (var i = 0; i < dims.Length; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(h.AsSpan(4 + (4 * i)), dims[i]);
        }

        return h;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.SmallestSize, leaveOpen: true))
        {
            gz.Write(raw);
        }

        return ms.ToArray();
    }

    private T Refused<T>(Action read)
        where T : Exception
    {
        var e = Assert.Throws<T>(read);
        output.WriteLine(e.Message);
        return e;
    }

    [Fact]
    public void An_IDX_header_whose_dimension_product_wraps_64_bits_is_refused_not_read_as_empty()
    {
        // 65536^4 = 2^64, which wrapped to 0 in a 64-bit product: the file read as an empty array
        var e = Refused<UserError>(() => Idx.Read(IdxHeader(65536, 65536, 65536, 65536), "wrap.idx"));
        Assert.Contains("65536×65536×65536×65536", e.Message);
        Assert.Contains("more than 1,073,741,824 bytes", e.Message);
    }

    [Fact]
    public void A_gzip_IDX_file_that_inflates_past_its_header_is_stopped_at_the_header_size()
    {
        // 100 MB of zeros compress to about 100 KB; the header promises 10 bytes
        var bomb = Gzip([.. IdxHeader(10), .. new byte[100_000_000]]);
        var before = GC.GetAllocatedBytesForCurrentThread();
        var e = Refused<UserError>(() => Idx.Read(bomb, "bomb.gz"));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 4 << 20, "the reader inflated more than it needed");
        Assert.Contains("damaged gzip file", e.Message);
        Assert.Contains("more than the 18 bytes its IDX header gives", e.Message);
    }

    [Fact]
    public void A_gzip_IDX_header_over_the_limit_is_refused_before_anything_is_inflated()
    {
        var e = Refused<UserError>(() => Idx.Read(Gzip(IdxHeader(60000, 28, 28, 28)), "huge.gz"));
        Assert.Contains("more than 1,073,741,824 bytes of data", e.Message);

        // a header under the limit over a short stream: refused after reading what is there, with little allocated
        var before = GC.GetAllocatedBytesForCurrentThread();
        e = Refused<UserError>(() => Idx.Read(Gzip([.. IdxHeader(1000, 1000, 1000), 1, 2, 3]), "short.gz"));
        Assert.True(GC.GetAllocatedBytesForCurrentThread() - before < 4 << 20);
        Assert.Contains("decompresses to 19 bytes, not the 1,000,000,016", e.Message);
    }

    private static byte[] SafetensorsWithHeader(string json, int dataBytes)
    {
        var h = Encoding.UTF8.GetBytes(json);
        var len = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)h.Length);
        return [.. len, .. h, .. new byte[dataBytes]];
    }

    [Fact]
    public void A_safetensors_shape_whose_product_wraps_is_refused()
    {
        // 2^16 four times is 2^64: 0 bytes in wrapping arithmetic, matching data_offsets [0, 0]
        var e = Refused<SafetensorsException>(() => Safetensors.Read(
            SafetensorsWithHeader("{\"w\":{\"dtype\":\"F32\",\"shape\":[65536,65536,65536,65536],\"data_offsets\":[0,0]}}", 0)));
        Assert.Contains("more than the 268,435,456 elements a tensor may have", e.Message);
        Assert.Contains("'w'", e.Message);
    }

    [Fact]
    public void A_safetensors_file_naming_a_tensor_twice_is_refused()
    {
        var entry = "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
        var e = Refused<SafetensorsException>(() => Safetensors.Read(SafetensorsWithHeader("{" + entry + "," + entry + "}", 4)));
        Assert.Contains("names 'w' twice", e.Message);

        e = Refused<SafetensorsException>(() => Safetensors.Read(
            SafetensorsWithHeader("{\"__metadata__\":{\"format\":\"a\",\"format\":\"b\"}," + entry + "}", 4)));
        Assert.Contains("__metadata__ names 'format' twice", e.Message);
    }

    /// <summary>A config.json as the host has always written it (mlp on MNIST, 10 epochs).</summary>
    internal static string ValidConfig() => """
        {
          "format": 1,
          "model": "mlp",
          "dataset": "mnist",
          "channels": 1,
          "imageSize": 28,
          "noiseDim": 100,
          "epochs": 10,
          "batchSize": 256,
          "learningRate": 0.0002,
          "generatorLrScale": 5,
          "beta1": 0.5,
          "loss": "bce",
          "dSteps": 1,
          "gpWeight": 0,
          "r1Weight": 0,
          "ema": 0,
          "lrDecayEpochs": [],
          "bbox": null,
          "trainSize": null,
          "checkpointEvery": 15,
          "keepCheckpoints": 3,
          "seed": 0,
          "threads": 0,
          "device": "auto",
          "dataDir": "/data/mnist",
          "sampleCount": 16,
          "evalEvery": 0,
          "evaluate": true,
          "syncBatchNorm": false,
          "evalSamples": null
        }

        """;

    [Fact]
    public void The_valid_config_reads_back_and_writes_the_same_text()
    {
        var c = RunConfig.FromJson(ValidConfig(), "run/config.json");
        Assert.Equal(("mlp", "mnist", 10, 256, "/data/mnist"), (c.Model, c.Dataset, c.Epochs, c.BatchSize, c.DataDir));
        Assert.Equal(ValidConfig(), c.ToJson());
    }

    [Theory]
    [InlineData("keepCheckpoints", "0", "keepCheckpoints (--keep-checkpoints) must be between 1 and 1000 (got 0)")]
    [InlineData("checkpointEvery", "0", "checkpointEvery (--checkpoint-every) must be at least 1 (got 0)")]
    [InlineData("sampleCount", "0", "sampleCount must be between 1 and 100,000 (got 0)")]
    [InlineData("dataDir", "null", "dataDir is null; it must be given")]
    [InlineData("batchSize", "2000000000", "batchSize (--batch-size) must be between 1 and 65536 (got 2000000000)")]
    [InlineData("epochs", "0", "epochs (--epochs) must be between 1 and 1000000 (got 0)")]
    [InlineData("learningRate", "-1", "learningRate (--lr) must be a positive number (got -1)")]
    [InlineData("beta1", "1", "beta1 (--beta1) must be at least 0 and below 1 (got 1)")]
    [InlineData("lrDecayEpochs", "[20,10]", "lrDecayEpochs (--lr-decay-epochs) must list epochs in increasing order (got '20,10')")]
    [InlineData("dataset", "\"imagenet\"", "Unknown dataset 'imagenet'")]
    [InlineData("threads", "-1", "threads (--threads) must be between 0 and 1024 (got -1)")]
    [InlineData("evalSamples", "1", "evalSamples (--eval-samples) must be between 10 and 1000000 (got 1)")]
    [InlineData("seed", "-1", "is not a valid run configuration")]
    public void A_stored_setting_the_command_line_would_refuse_is_named(string setting, string value, string expected)
    {
        var o = JsonNode.Parse(ValidConfig())!.AsObject();
        o[setting] = JsonNode.Parse(value);

        var e = Refused<UserError>(() => RunConfig.FromJson(o.ToJsonString(), "run/config.json"));

        Assert.StartsWith("run/config.json ", e.Message);
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void An_oversized_config_json_is_refused_without_reading_it()
    {
        using var dir = new TempDir();
        File.WriteAllText(dir["config.json"], new string(' ', 2 << 20));
        var e = Refused<UserError>(() => RunConfig.Load(dir["config.json"]));
        Assert.Contains("2,097,152 bytes, not a run configuration", e.Message);
    }

    [Fact]
    public void A_bounding_box_list_with_a_name_twice_or_an_absurd_box_is_refused()
    {
        var e = Refused<UserError>(() => ImageFolder.ParseBoundingBoxes("2\nimage_id x_1 y_1 width height\na.jpg 1 2 3 4\na.jpg 1 2 3 4\n", "bbox.txt"));
        Assert.Contains("lists a.jpg twice (again at line 4)", e.Message);
        e = Refused<UserError>(() => ImageFolder.ParseBoundingBoxes("a.jpg 1 2 3 99999999\n", "bbox.txt"));
        Assert.Contains("beyond 1,048,576 pixels at line 1", e.Message);
        e = Refused<UserError>(() => ImageFolder.ParseBoundingBoxes("a.jpg 1 2 0 5\n", "bbox.txt"));
        Assert.Contains("at line 1", e.Message);
        e = Refused<UserError>(() => ImageFolder.ParseBoundingBoxes("a.jpg -1 2 3 5\n", "bbox.txt"));
        Assert.Contains("at line 1", e.Message);
    }
}
