namespace Gan.Host.Data;

/// <summary>Training examples as float batches of a model's input shape, by example index.</summary>
internal abstract class BatchSource
{
    /// <summary>The number of examples.</summary>
    public abstract int Count { get; }

    /// <summary>Floats per example.</summary>
    public abstract int ImageSize { get; }

    /// <summary>Writes the examples at <paramref name="indices"/> into <paramref name="batch"/>.</summary>
    public abstract void Fill(ReadOnlySpan<int> indices, float[] batch);
}

/// <summary>2-D points (a Gaussian mixture's training set), used as they are: the toy generators' output is linear.</summary>
internal sealed class PointSource(float[] points, int count) : BatchSource
{
    public override int Count => count;

    public override int ImageSize => 2;

    public override void Fill(ReadOnlySpan<int> indices, float[] batch)
    {
        for (var n = 0; n < indices.Length; n++)
        {
            batch[2 * n] = points[2 * indices[n]];
            batch[(2 * n) + 1] = points[(2 * indices[n]) + 1];
        }
    }
}

/// <summary>
/// Turns images of a set into float batches of a model's shape (NCHW, row-major), converting
/// channels and resizing when the set differs from the model (e.g. MNIST for 64×64 models), and
/// scaling pixels to [−1, 1] as (x − 127.5)/127.5, or to [0, 1] as x/255 for sigmoid generators.
/// </summary>
internal sealed class BatchLoader : BatchSource
{
    private readonly ImageSet set;
    private readonly int channels;
    private readonly int height;
    private readonly int width;
    private readonly bool zeroToOne;
    private readonly Resampler? resampler;

    public BatchLoader(ImageSet set, int channels, int height, int width, bool zeroToOne)
    {
        this.set = set;
        this.channels = channels;
        this.height = height;
        this.width = width;
        this.zeroToOne = zeroToOne;
        if (set.Height != height || set.Width != width)
        {
            resampler = new Resampler(0, 0, set.Width, set.Height, width, height, set.Width, set.Height);
        }
    }

    public override int Count => set.Count;

    public override int ImageSize => channels * height * width;

    /// <summary>Writes the images at <paramref name="indices"/> into <paramref name="batch"/>.</summary>
    public override void Fill(ReadOnlySpan<int> indices, float[] batch)
    {
        var converted = new byte[set.Height * set.Width * channels];
        var resized = new byte[ImageSize];
        var plane = set.Height * set.Width;
        for (var n = 0; n < indices.Length; n++)
        {
            ReadOnlySpan<byte> img = set.Image(indices[n]);
            if (set.Channels != channels)
            {
                Pixels.ConvertChannels(img, set.Channels, channels, plane, converted);
                img = converted;
            }

            if (resampler is not null)
            {
                for (var c = 0; c < channels; c++)
                {
                    resampler.Plane(img.Slice(c * plane, plane), set.Width, set.Height, resized.AsSpan(c * height * width, height * width));
                }

                img = resized;
            }

            var dst = batch.AsSpan(n * ImageSize, ImageSize);
            if (zeroToOne)
            {
                for (var i = 0; i < dst.Length; i++)
                {
                    dst[i] = img[i] / 255f;
                }
            }
            else
            {
                for (var i = 0; i < dst.Length; i++)
                {
                    dst[i] = (img[i] - 127.5f) / 127.5f;
                }
            }
        }
    }
}

/// <summary>
/// Counter-based randomness for the host (data order, sample noise seeds): every draw derives
/// from the run's seed and a position (epoch, purpose), never from the clock or shared state, so
/// a resumed run sees exactly the data order an uninterrupted one would.
/// </summary>
internal static class RunRandom
{
    private const ulong ShufflePurpose = 0x5348_5546_464C_4531; // "SHUFFLE1"
    private const ulong SamplesPurpose = 0x5341_4D50_4C45_5331; // "SAMPLES1"
    private const ulong DataPurpose = 0x4441_5441_5345_5431; // "DATASET1"
    private const ulong EvalPurpose = 0x4556_414C_5541_5431; // "EVALUAT1"

    /// <summary>SplitMix64's finaliser: a bijective mix of 64 bits.</summary>
    public static ulong Mix(ulong z)
    {
        z += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public static ulong Derive(ulong seed, ulong purpose, ulong index) => Mix(Mix(Mix(seed) ^ purpose) ^ index);

    /// <summary>The seed of the fixed noise batch drawn at the start of a run.</summary>
    public static ulong SampleNoiseSeed(ulong seed) => Derive(seed, SamplesPurpose, 0);

    /// <summary>The seed of a generated training set (mixture points, Stacked MNIST triples).</summary>
    public static ulong DatasetSeed(ulong seed) => Derive(seed, DataPurpose, 0);

    /// <summary>The seed of the noise --eval-every scores (the same every time, so the metrics follow the generator alone).</summary>
    public static ulong EvalSeed(ulong seed) => Derive(seed, EvalPurpose, 0);

    /// <summary>The order of <paramref name="count"/> examples in 0-based <paramref name="epoch"/>.</summary>
    public static int[] Permutation(int count, ulong seed, int epoch)
    {
        var state = Derive(seed, ShufflePurpose, (ulong)epoch);
        var p = new int[count];
        for (var i = 0; i < count; i++)
        {
            p[i] = i;
        }

        for (var i = count - 1; i > 0; i--)
        {
            state += 0x9E3779B97F4A7C15UL;
            var r = Mix(state);
            // Lemire's multiply-shift: unbiased enough for i < 2^31 with 64-bit r.
            var j = (int)(((UInt128)r * (ulong)(i + 1)) >> 64);
            (p[i], p[j]) = (p[j], p[i]);
        }

        return p;
    }
}
