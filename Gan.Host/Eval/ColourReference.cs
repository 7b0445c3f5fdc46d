using System.Buffers.Binary;
using System.Security.Cryptography;
using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Eval;

/// <summary>
/// What colour images are scored against: emoji's held-out images through the ImageNet ResNet-18
/// (<see cref="ResNet18Features"/>). Their features are computed once and cached beside the data
/// (emoji-heldout-resnet18.f32, keyed by the SHA-256 of the held-out file).
/// </summary>
internal sealed class ColourReference : IDisposable
{
    private static readonly byte[] Magic = "GANFEAT1"u8.ToArray();
    private const int HeaderSize = 48;

    private ColourReference(ResNet18Features net, double[][] real)
    {
        Net = net;
        Real = real;
    }

    public ResNet18Features Net { get; }

    /// <summary>The held-out images' features, one row each.</summary>
    public double[][] Real { get; }

    /// <summary>The reference of emoji (its data in <paramref name="dataDir"/>, fetched there first if missing).</summary>
    public static ColourReference Load(string dataDir, int threads, HostContext ctx)
    {
        using var held = Emoji.Load(dataDir, heldOut: true, ctx);
        if (held.Count <= Gan.Functional.CSharp.FeatureMetrics.DensityCoverageK)
        {
            throw new UserError(
                $"emoji's held-out split in {dataDir} has {held.Count} images; the colour metrics need more than "
                + $"{Gan.Functional.CSharp.FeatureMetrics.DensityCoverageK} (density and coverage use that many neighbours).");
        }

        var net = ResNet18Features.Open(threads);
        var heldPath = Path.Combine(dataDir, Emoji.HeldOutFile);
        byte[] key;
        using (var f = File.OpenRead(heldPath))
        {
            key = SHA256.HashData(f);
        }

        var cache = Path.Combine(dataDir, "emoji-heldout-resnet18.f32");
        double[][]? real = null;
        WriterLock.Once(
            cache + ".lock",
            $"the ResNet-18 features of emoji's held-out images ({cache})",
            ctx.Info,
            () => (real = TryRead(cache, key, held.Count)) is not null,
            () =>
            {
                ctx.Info($"emoji: ImageNet ResNet-18 features of the {held.Count:N0} held-out images (once; cached in {cache}) …");
                real = net.Of(held.Count, i => held.Image(i).ToArray(), Emoji.Size, Emoji.Size);
                try
                {
                    Write(cache, key, real);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw IoErrors.Describe(e, "write", cache);
                }
            });

        return new ColourReference(net, real!);
    }

    private static double[][]? TryRead(string path, byte[] key, int count)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var bytes = File.ReadAllBytes(path);
        if (bytes.Length != HeaderSize + ((long)count * ResNet18Features.Dim * 4)
            || !bytes.AsSpan(0, 8).SequenceEqual(Magic)
            || BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(8)) != count
            || BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(12)) != ResNet18Features.Dim
            || !bytes.AsSpan(16, 32).SequenceEqual(key))
        {
            return null;
        }

        var rows = new double[count][];
        for (var i = 0; i < count; i++)
        {
            var row = new double[ResNet18Features.Dim];
            for (var j = 0; j < row.Length; j++)
            {
                row[j] = BinaryPrimitives.ReadSingleLittleEndian(bytes.AsSpan(HeaderSize + (((i * row.Length) + j) * 4)));
            }

            rows[i] = row;
        }

        return rows;
    }

    private static void Write(string path, byte[] key, double[][] rows)
    {
        var bytes = new byte[HeaderSize + (rows.Length * ResNet18Features.Dim * 4)];
        Magic.CopyTo(bytes, 0);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(8), rows.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(12), ResNet18Features.Dim);
        key.CopyTo(bytes, 16);
        for (var i = 0; i < rows.Length; i++)
        {
            for (var j = 0; j < ResNet18Features.Dim; j++)
            {
                BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(HeaderSize + (((i * ResNet18Features.Dim) + j) * 4)), (float)rows[i][j]);
            }
        }

        AtomicFile.WriteAllBytes(path, bytes);
    }

    public void Dispose() => Net.Dispose();
}
