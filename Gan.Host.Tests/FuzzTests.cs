using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Gan.Functional.CSharp;
using Gan.Host.Data;
using Gan.Host.Io;
using Gan.Host.Training;
using Xunit.Abstractions;

namespace Gan.Host.Tests;

/// <summary>
/// Generated bad input for every reader of outside data (issue 15): bit flips, truncations,
/// header edits with extreme values, random bytes and valid files with trailing data, from a
/// seeded generator. Each input must give a value or the reader's own clear error: no other
/// exception, and no allocation near the reader's limit. <c>GAN_FUZZ_CASES=N</c> runs N per
/// reader instead of 10,000 (a longer soak); <c>GAN_FUZZ_SEED=S</c> replays another seed.
/// </summary>
public class FuzzTests(ITestOutputHelper output)
{
    private static readonly int Cases = int.TryParse(Environment.GetEnvironmentVariable("GAN_FUZZ_CASES"), out var n) && n > 0 ? n : 10_000;
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("GAN_FUZZ_SEED"), out var s) ? s : 15;

    /// <summary>The largest allocation one small fuzz input may cause (far below every reader's limit but the image reader's).</summary>
    private const long AllocationBound = 64L << 20;

    /// <summary>The image reader may allocate what its pixel limit allows (RGBA) before it finds the data missing.</summary>
    private const long ImageAllocationBound = (ImageCodec.MaxPixels * 4) + (64L << 20);

    private static readonly long[] Extremes =
    [
        0, 1, -1, 2, 255, 256, 65535, 65536, int.MaxValue, int.MinValue, (long)int.MaxValue + 1, uint.MaxValue,
        long.MaxValue, long.MinValue, 1L << 32, 1L << 40, 1L << 62,
    ];

    /// <summary>
    /// One mutation of <paramref name="seedInput"/>; <paramref name="headerEnd"/> is where header edits
    /// aim (the first bytes hold what a reader sizes its buffers from).
    /// </summary>
    private static byte[] Mutate(Random rng, byte[] seedInput, int headerEnd)
    {
        var b = (byte[])seedInput.Clone();
        switch (rng.Next(7))
        {
            case 0: // bit flips
                for (var k = rng.Next(1, 9); k > 0 && b.Length > 0; k--)
                {
                    b[rng.Next(b.Length)] ^= (byte)(1 << rng.Next(8));
                }

                return b;
            case 1: // truncation
                return b[..rng.Next(b.Length + 1)];
            case 2: // header edit with an extreme value, 4 or 8 bytes, either byte order
                {
                    if (b.Length < 8)
                    {
                        return b;
                    }

                    var width = rng.Next(2) == 0 ? 4 : 8;
                    var at = rng.Next(Math.Max(1, Math.Min(headerEnd, b.Length) - width + 1));
                    var v = Extremes[rng.Next(Extremes.Length)];
                    var span = b.AsSpan(at, Math.Min(width, b.Length - at));
                    if (span.Length == 8)
                    {
                        if (rng.Next(2) == 0)
                        {
                            BinaryPrimitives.WriteInt64BigEndian(span, v);
                        }
                        else
                        {
                            BinaryPrimitives.WriteInt64LittleEndian(span, v);
                        }
                    }
                    else if (span.Length >= 4)
                    {
                        if (rng.Next(2) == 0)
                        {
                            BinaryPrimitives.WriteInt32BigEndian(span, (int)v);
                        }
                        else
                        {
                            BinaryPrimitives.WriteInt32LittleEndian(span, (int)v);
                        }
                    }

                    return b;
                }

            case 3: // random bytes
                {
                    var r = new byte[rng.Next(0, 600)];
                    rng.NextBytes(r);
                    return r;
                }

            case 4: // valid file with trailing data
                {
                    var tail = new byte[rng.Next(1, 64)];
                    rng.NextBytes(tail);
                    return [.. b, .. tail];
                }

            case 5: // bytes inserted inside
                {
                    var at = rng.Next(b.Length + 1);
                    var ins = new byte[rng.Next(1, 16)];
                    rng.NextBytes(ins);
                    return [.. b[..at], .. ins, .. b[at..]];
                }

            default: // a random byte set anywhere in the header
                if (b.Length > 0)
                {
                    b[rng.Next(Math.Min(headerEnd, b.Length))] = (byte)rng.Next(256);
                }

                return b;
        }
    }

    /// <summary>
    /// Runs <paramref name="read"/> on <see cref="Cases"/> inputs; each must return or throw an
    /// exception <paramref name="expected"/> accepts, and allocate less than <see cref="AllocationBound"/>.
    /// </summary>
    private (int Ok, int Refused, long MaxAllocated) Fuzz(string reader, Func<Random, byte[]> generate, Action<byte[]> read, Func<Exception, bool> expected, long bound = AllocationBound)
    {
        var rng = new Random(Seed);
        int ok = 0, refused = 0;
        long maxAllocated = 0;
        var messages = new Dictionary<string, int>();
        for (var i = 0; i < Cases; i++)
        {
            var input = generate(rng);
            var before = GC.GetAllocatedBytesForCurrentThread();
            try
            {
                read(input);
                ok++;
            }
            catch (Exception e) when (expected(e))
            {
                refused++;
                var key = e.Message.Length > 60 ? e.Message[..60] : e.Message;
                messages[key] = messages.GetValueOrDefault(key) + 1;
            }
            catch (Exception e)
            {
                Assert.Fail($"{reader}: input {i} (GAN_FUZZ_SEED={Seed}) threw {e.GetType().Name}: {e.Message}\ninput: {Convert.ToHexString(input.AsSpan(0, Math.Min(256, input.Length)))}");
            }

            var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
            maxAllocated = Math.Max(maxAllocated, allocated);
            Assert.True(allocated < bound, $"{reader}: input {i} (GAN_FUZZ_SEED={Seed}) allocated {allocated:N0} bytes");
        }

        output.WriteLine($"{reader}: {Cases:N0} inputs, {ok:N0} read, {refused:N0} refused, at most {maxAllocated:N0} bytes allocated by one");
        foreach (var (m, c) in messages.OrderByDescending(p => p.Value).Take(12))
        {
            output.WriteLine($"  {c,6}  {m}");
        }

        Assert.True(refused > Cases / 10, $"{reader}: only {refused} of {Cases} inputs were refused; the mutations do not reach the checks");
        return (ok, refused, maxAllocated);
    }

    private static byte[] IdxBytes(int[] dims, bool gzip)
    {
        var count = dims.Aggregate(1, (a, d) => a * d);
        var data = Enumerable.Range(0, count).Select(i => (byte)(i * 37)).ToArray();
        var header = new byte[4 + (4 * dims.Length)];
        header[2] = 8;
        header[3] = (byte)dims.Length;
        for (var i = 0; i < dims.Length; i++)
        {
            BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4 + (4 * i)), dims[i]);
        }

        byte[] raw = [.. header, .. data];
        return gzip ? Gzip(raw) : raw;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true))
        {
            gz.Write(raw);
        }

        return ms.ToArray();
    }

    [Fact]
    public void IDX_files_raw_and_gzip_give_their_array_or_a_clear_error()
    {
        byte[][] seeds = [IdxBytes([6, 5, 5], false), IdxBytes([12], false), IdxBytes([2, 2, 2, 2], false)];
        var result = Fuzz("IDX", rng =>
        {
            var seed = seeds[rng.Next(seeds.Length)];
            var mutated = Mutate(rng, seed, 20);
            // a third go through gzip: mutated content compressed whole (header edits reach the
            // decompressed header), or a valid gzip file mutated (damaged compression)
            return rng.Next(3) switch
            {
                0 => Gzip(mutated),
                1 => Mutate(rng, Gzip(seed), 24),
                _ => mutated,
            };
        }, bytes =>
        {
            var a = Idx.Read(bytes, "fuzz.idx");
            Assert.Equal(a.Dimensions.Aggregate(1L, (x, d) => x * d), a.Data.LongLength);
        }, e => e is UserError);
        Assert.True(result.Ok > 0);
    }

    private static byte[] SafetensorsBytes()
    {
        using var ms = new MemoryStream();
        Safetensors.Write(ms,
        [
            new NamedTensor("generator.0.weight", [3, 4], Enumerable.Range(0, 12).Select(i => i * 0.5f).ToArray(), null),
            new NamedTensor("generator.0.bias", [3], [1f, 2f, 3f], null),
            new NamedTensor("train.step", [1], null, [42.0]),
        ], new Dictionary<string, string> { ["format"] = "gan-functional-checkpoint/1", ["completed_epochs"] = "2" });
        return ms.ToArray();
    }

    /// <summary>A header of hand-picked hostile entries (shape products that wrap, duplicates, huge offsets) over the valid data.</summary>
    private static byte[] HostileHeader(Random rng)
    {
        string[] shapes = ["[3,4]", "[4294967296]", "[2147483647,2147483647,2147483647,4]", "[65536,65536,65536,65536]", "[-1]", "[0]", "[]", "[1,\"2\"]", "[1e3]", "[268435457]"];
        string[] offsets = ["[0,48]", "[0,0]", "[48,0]", "[-8,40]", "[0,9223372036854775807]", "[9223372036854775800,9223372036854775807]", "[0]"];
        var name = rng.Next(3) == 0 ? "a" : "t" + rng.Next(3);
        var entry = $"\"{name}\":{{\"dtype\":\"{(rng.Next(4) == 0 ? "F64" : "F32")}\",\"shape\":{shapes[rng.Next(shapes.Length)]},\"data_offsets\":{offsets[rng.Next(offsets.Length)]}}}";
        var header = "{" + entry + (rng.Next(2) == 0 ? "," + entry : "") + (rng.Next(3) == 0 ? ",\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}" : "") + "}";
        var json = Encoding.UTF8.GetBytes(header);
        var len = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)json.Length);
        return [.. len, .. json, .. new byte[48]];
    }

    [Fact]
    public void Safetensors_files_give_their_tensors_or_a_clear_error()
    {
        var valid = SafetensorsBytes();
        var headerEnd = 8 + (int)BinaryPrimitives.ReadUInt64LittleEndian(valid);
        Fuzz("safetensors", rng => rng.Next(4) == 0 ? HostileHeader(rng) : Mutate(rng, valid, headerEnd), bytes =>
        {
            var f = Safetensors.Read(bytes);
            Assert.Equal(f.Tensors.Count, f.Tensors.Select(t => t.Name).Distinct().Count());
            foreach (var t in f.Tensors)
            {
                Assert.Equal(t.Shape.Aggregate(1L, (x, d) => x * d), (long)(t.Float32Data?.Length ?? t.Float64Data!.Length));
            }
        }, e => e is SafetensorsException);
    }

    private static string ConfigJson() => ReaderLimitsTests.ValidConfig();

    private static readonly string[] ExtremeJson =
    [
        "0", "-1", "1", "1e308", "-1e308", "2147483648", "18446744073709551616", "null", "\"\"", "\"x\"", "[]", "{}", "true", "0.5",
        "65537", "[0]", "[3,2]", "[1,1]", "\"images:\"", "\"images:/x\"", "\"toy2d\"", "\"ring8\"", "1000001", "\"NaN\"",
    ];

    [Fact]
    public void A_config_json_gives_a_usable_configuration_or_a_clear_error()
    {
        var valid = ConfigJson();
        var names = JsonNode.Parse(valid)!.AsObject().Select(p => p.Key).ToArray();
        var bytes = Encoding.UTF8.GetBytes(valid);
        Fuzz("config.json", rng =>
        {
            if (rng.Next(2) == 0)
            {
                // a value edit: one or two settings set to extreme values, or removed
                var o = JsonNode.Parse(valid)!.AsObject();
                for (var k = rng.Next(1, 3); k > 0; k--)
                {
                    var name = names[rng.Next(names.Length)];
                    if (rng.Next(6) == 0)
                    {
                        o.Remove(name);
                    }
                    else
                    {
                        o[name] = JsonNode.Parse(ExtremeJson[rng.Next(ExtremeJson.Length)]);
                    }
                }

                return Encoding.UTF8.GetBytes(o.ToJsonString());
            }

            return Mutate(rng, bytes, bytes.Length);
        }, input =>
        {
            var c = RunConfig.FromJson(Encoding.UTF8.GetString(input), "fuzz/config.json");
            // what the run needs to be safe: no division by zero, no deleting every checkpoint, no null path
            Assert.InRange(c.Epochs, 1, RunConfig.MaxEpochs);
            Assert.InRange(c.BatchSize, 1, 65536);
            Assert.InRange(c.KeepCheckpoints, 1, 1000);
            Assert.True(c.CheckpointEvery >= 1);
            Assert.InRange(c.SampleCount, 1, RunConfig.MaxSampleCount);
            Assert.NotNull(c.DataDir);
            Assert.NotNull(c.Model);
            Assert.NotNull(c.LrDecayEpochs);
            Assert.True(double.IsFinite(c.LearningRate) && c.LearningRate > 0);
        }, e => e is UserError);
    }

    [Fact]
    public void A_bounding_box_list_gives_its_boxes_or_a_clear_error()
    {
        var valid = Encoding.UTF8.GetBytes("3\nimage_id x_1 y_1 width height\n000001.jpg    95  71 226 313\n000002.jpg 72 94 221 306\n000003.jpg 216 59 91 126\n");
        string[] words = ["-1", "0", "2147483647", "2147483648", "99999999999", "1048577", "x", "", " ", "000001.jpg", "1e3", "\t", "\r"];
        Fuzz("bbox list", rng =>
        {
            if (rng.Next(3) == 0)
            {
                // a field replaced by an extreme word
                var lines = Encoding.UTF8.GetString(valid).Split('\n');
                var li = rng.Next(2, 5);
                var fields = lines[li].Split(' ', StringSplitOptions.RemoveEmptyEntries);
                fields[rng.Next(fields.Length)] = words[rng.Next(words.Length)];
                lines[li] = string.Join(' ', fields);
                return Encoding.UTF8.GetBytes(string.Join('\n', lines));
            }

            return Mutate(rng, valid, valid.Length);
        }, input =>
        {
            var boxes = ImageFolder.ParseBoundingBoxes(Encoding.UTF8.GetString(input), "fuzz/list_bbox_celeba.txt");
            Assert.All(boxes.Values, b => Assert.True(b.X >= 0 && b.Y >= 0 && b.W >= 1 && b.H >= 1 && b.W <= ImageFolder.MaxBoxCoordinate));
        }, e => e is UserError);
    }

    private static RasterImage Picture(int w, int h, int channels)
    {
        var pixels = new byte[w * h * channels];
        for (var i = 0; i < pixels.Length; i++)
        {
            pixels[i] = (byte)((i * 29) ^ (i / 7));
        }

        return new RasterImage(w, h, channels, pixels);
    }

    [Fact]
    public void PNG_and_JPEG_files_give_their_image_or_a_clear_error()
    {
        // through ImageCodec.Decode, the one reader of outside images (as ImageFolder and evaluate
        // --images call it); JPEG also with a scale request, as --bbox data is decoded
        byte[][] seeds =
        [
            ImageCodec.EncodePng(Picture(13, 9, 3)), ImageCodec.EncodePng(Picture(8, 8, 1)),
            ImageCodec.EncodeJpeg(Picture(24, 16, 3), 90), ImageCodec.EncodeJpeg(Picture(16, 16, 1), 75),
        ];
        var result = Fuzz("PNG/JPEG", rng =>
        {
            var seed = seeds[rng.Next(seeds.Length)];
            return Mutate(rng, seed, Math.Min(seed.Length, 40));
        }, bytes =>
        {
            var (image, _) = ImageCodec.Decode(bytes, "fuzz.img", minScale: bytes.Length % 2 == 0 ? (w, h) => 0.3 : null);
            Assert.True(image.Width > 0 && image.Height > 0 && (long)image.Width * image.Height <= ImageCodec.MaxPixels);
            Assert.Equal((long)image.Width * image.Height * image.Channels, image.Pixels.LongLength);
        }, e => e is UserError, ImageAllocationBound);
        Assert.True(result.Ok > 0);
    }
}
