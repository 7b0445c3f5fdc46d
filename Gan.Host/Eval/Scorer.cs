using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gan.Functional.CSharp;
using Gan.Host.Data;

namespace Gan.Host.Eval;

/// <summary>One measured number: its JSON/CSV key, a label for the table, the value and how to print it.</summary>
internal sealed record Metric(string Key, string Label, double Value, double? Std = null, string? Note = null);

/// <summary>The metrics of one evaluation.</summary>
internal sealed record EvalResult(string Dataset, int Samples, IReadOnlyList<Metric> Metrics)
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;

    /// <summary>The CSV/JSON columns in order: each key, then key_std where the metric has a spread.</summary>
    public IEnumerable<(string Key, double Value)> Columns()
    {
        foreach (var m in Metrics)
        {
            yield return (m.Key, m.Value);
            if (m.Std is { } s)
            {
                yield return (m.Key + "_std", s);
            }
        }
    }

    /// <summary>An aligned two-column table.</summary>
    public IEnumerable<string> Table()
    {
        var width = Metrics.Max(m => m.Label.Length);
        yield return string.Create(C, $"{Dataset}: {Samples:N0} samples");
        foreach (var m in Metrics)
        {
            var value = Show(m.Value) + (m.Std is { } s ? " ± " + Show(s) : "") + (m.Note is { } n ? $"  ({n})" : "");
            yield return $"  {m.Label.PadRight(width)}  {value}";
        }
    }

    public string ToJson()
    {
        var o = new JsonObject();
        foreach (var (key, value) in Columns())
        {
            o[key] = double.IsFinite(value) ? JsonValue.Create(value) : null;
        }

        o["samples"] = Samples;
        o["dataset"] = Dataset;
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n";
    }

    public static string Show(double v) =>
        double.IsNaN(v) ? "n/a"
        : v == Math.Round(v) && Math.Abs(v) < 1e9 ? v.ToString("0", C)
        : v.ToString(Math.Abs(v) >= 1000 || (v != 0 && Math.Abs(v) < 1e-3) ? "0.###e+0" : "0.####", C);
}

/// <summary>
/// Scores a generator's output for the dataset it was trained on: classifier metrics (IS, FCD,
/// KID, class coverage) for mnist and fashion-mnist, mode metrics for ring8 and grid25, mode
/// coverage for stacked-mnist, ImageNet ResNet-18 feature metrics (FID, KID, precision, recall,
/// density, coverage) for emoji. The same code serves `evaluate` and `train --eval-every`.
/// </summary>
internal sealed class Scorer : IDisposable
{
    private readonly LoadedBackbone? backbone;
    private readonly ColourReference? colour;

    private Scorer(string dataset, LoadedBackbone? backbone, ColourReference? colour = null)
    {
        Dataset = dataset;
        info = DatasetInfo.Parse(dataset);
        this.backbone = backbone;
        this.colour = colour;
    }

    private readonly DatasetInfo info;

    public string Dataset { get; }

    /// <summary>The default sample count of `evaluate` (the library's evaluation protocol).</summary>
    public int DefaultSamples => info.EvalSamples;

    /// <summary>The default sample count of the metrics during training.</summary>
    public int DefaultTrainingSamples => info.TrainingEvalSamples;

    public void Dispose() => colour?.Dispose();

    /// <summary>True when <paramref name="dataset"/> has metrics.</summary>
    public static bool CanScore(string dataset)
    {
        try
        {
            return DatasetInfo.Parse(dataset).HasMetrics;
        }
        catch (InvalidSettingsException)
        {
            return false;
        }
    }

    /// <summary>A scorer for <paramref name="dataset"/>, training the classifier backbone first if it needs one that is not cached.</summary>
    public static Scorer For(string dataset, string? dataDir, HostContext ctx)
    {
        if (!CanScore(dataset))
        {
            throw new UserError(
                $"There are no metrics for the dataset {dataset}: the classifier backbones exist for mnist and fashion-mnist "
                + "(stacked-mnist uses the mnist one), ring8/grid25 have mode metrics and emoji ImageNet ResNet-18 feature metrics. "
                + "Score other images against emoji (`evaluate --images DIR --dataset emoji`) or with another tool.",
                ExitCodes.Usage);
        }

        var info = DatasetInfo.Parse(dataset);
        if (info.IsMixture)
        {
            return new Scorer(dataset, null);
        }

        if (info.Kind == DatasetKind.Emoji)
        {
            return new Scorer(dataset, null, ColourReference.Load(dataDir ?? Path.Combine(ctx.CacheRoot, "emoji"), 0, ctx));
        }

        // Stacked MNIST labels each channel with the MNIST classifier.
        return new Scorer(dataset, ClassifierCache.Ensure(info.ClassifierBackbone!, dataDir, ctx));
    }

    /// <summary>G's output for <paramref name="count"/> latent vectors drawn from <paramref name="seed"/>, generated in chunks.</summary>
    public static float[] Generate(GanTrainer trainer, int count, ulong seed, bool useEma)
    {
        var info = trainer.Model;
        var per = info.ImageShape.Aggregate(1, (a, b) => a * b);
        var z = trainer.Noise(count, seed);
        var output = new float[count * per];
        const int chunk = 250;
        for (var start = 0; start < count; start += chunk)
        {
            var n = Math.Min(chunk, count - start);
            var part = trainer.Generate(z.AsSpan(start * info.NoiseDim, n * info.NoiseDim).ToArray(), n, useEma);
            part.CopyTo(output, start * per);
        }

        return output;
    }

    /// <summary>Scores <paramref name="count"/> outputs of a generator with the given per-sample shape and pixel range.</summary>
    public EvalResult ScoreGenerated(float[] output, int count, int[] shape, bool zeroToOne, ulong seed)
    {
        if (info.IsMixture)
        {
            if (shape.Length != 1 || shape[0] != 2)
            {
                throw new UserError($"The generator makes {string.Join("×", shape)} outputs, not the 2-D points of {Dataset}.");
            }

            return ScorePoints(output, count);
        }

        if (shape.Length != 3)
        {
            throw new UserError($"The generator makes {string.Join("×", shape)} outputs, not images; {Dataset} is scored on images.");
        }

        if (colour is not null)
        {
            var (c, h, w) = (shape[0], shape[1], shape[2]);
            var plane = h * w;
            return ScoreColour(i =>
            {
                var bytes = new byte[3 * plane];
                for (var ch = 0; ch < 3; ch++)
                {
                    for (var p = 0; p < plane; p++)
                    {
                        // grey output is repeated over R, G and B
                        double v = output[(((i * c) + (c == 3 ? ch : 0)) * plane) + p];
                        var unit = zeroToOne ? v : (v + 1) / 2;
                        bytes[(ch * plane) + p] = double.IsNaN(unit) ? (byte)0 : (byte)Math.Clamp((int)Math.Round(unit * 255), 0, 255);
                    }
                }

                return bytes;
            }, count, h, w, seed);
        }

        var stacked = info.Kind == DatasetKind.StackedMnist;
        var unit = ToClassifierInput(output, count, shape[0], shape[1], shape[2], zeroToOne, stacked ? 3 : 1);
        return stacked ? ScoreStacked(unit, count) : ScoreImages(unit, count, seed);
    }

    /// <summary>Classifier metrics of grey 28×28 images with pixels in [0, 1].</summary>
    public EvalResult ScoreImages(float[] unit, int count, ulong seed)
    {
        if (count < 10)
        {
            throw new UserError($"The metrics need at least 10 images (the Inception Score averages 10 splits); got {count}.", ExitCodes.Usage);
        }

        var s = backbone!.Net.Score(unit, count, backbone.RealFeatures, seed);
        return new EvalResult(Dataset, count,
        [
            new Metric("inception_score", "Inception Score (10 splits)", s.InceptionScore, s.InceptionScoreStd),
            new Metric("fcd", "FCD vs the real test set", s.Fcd),
            new Metric("kid", "KID (cubic kernel, 100 subsets)", s.Kid, s.KidStd),
            new Metric("class_kl", "class histogram KL to uniform", s.ClassKl, null, $"{s.ClassesCovered}/10 classes predicted"),
        ]);
    }

    /// <summary>
    /// ImageNet ResNet-18 feature metrics of <paramref name="count"/> 8-bit RGB images (planar
    /// 3×<paramref name="height"/>×<paramref name="width"/>, image i from <paramref name="image"/>)
    /// against the held-out images: FID, KID, precision/recall (k = 3), density/coverage (k = 5).
    /// </summary>
    public EvalResult ScoreColour(Func<int, byte[]> image, int count, int height, int width, ulong seed)
    {
        if (count < 10)
        {
            throw new UserError($"The colour metrics need at least 10 images; got {count}.", ExitCodes.Usage);
        }

        var fake = colour!.Net.Of(count, image, height, width);
        var s = FeatureMetrics.Score(colour.Real, fake, seed);
        var against = $"{colour.Real.Length:N0} held-out images";
        return new EvalResult(Dataset, count,
        [
            new Metric("fid_rn18", "FID on ImageNet ResNet-18 features", s.Fd, null, $"vs {against}; not comparable with Inception-v3 FIDs"),
            new Metric("kid_rn18", "KID on ResNet-18 features (100 subsets)", s.Kid, s.KidStd),
            new Metric("precision", $"precision (k = {FeatureMetrics.PrecisionRecallK})", s.Precision),
            new Metric("recall", $"recall (k = {FeatureMetrics.PrecisionRecallK})", s.Recall),
            new Metric("density", $"density (k = {FeatureMetrics.DensityCoverageK})", s.Density),
            new Metric("coverage", $"coverage (k = {FeatureMetrics.DensityCoverageK})", s.Coverage),
        ]);
    }

    private EvalResult ScorePoints(float[] points, int count)
    {
        var m = Mixture.Score(Dataset, points, count);
        return new EvalResult(Dataset, count,
        [
            new Metric("modes_covered", "modes covered (≥ 1 high-quality sample)", m.ModesCovered, null, $"of {m.Modes}"),
            new Metric("modes_covered_20", $"modes covered (≥ {m.Threshold} high-quality samples)", m.ModesCoveredAtThreshold, null, $"of {m.Modes}"),
            new Metric("high_quality_share", "high-quality share (within 3σ of a mode)", m.HighQualityShare),
            new Metric("kl", "mode histogram KL to uniform", m.KlToUniform),
        ]);
    }

    private EvalResult ScoreStacked(float[] unit, int count)
    {
        var modes = backbone!.Net.StackedModes(unit, count);
        var c = Mixture.StackedCoverage(modes);
        return new EvalResult(Dataset, count,
        [
            new Metric("modes_covered", "modes covered (of 1,000)", c.ModesCovered),
            new Metric("kl", "mode histogram KL to uniform", c.KlToUniform),
        ]);
    }

    /// <summary>
    /// Generator output (count × C × H × W in [−1, 1], or [0, 1] when <paramref name="zeroToOne"/>)
    /// as the classifier's input: [0, 1], 28×28 (resized as the training data was), with
    /// <paramref name="channels"/> channels (colour averaged to grey when 1 is wanted).
    /// </summary>
    public static float[] ToClassifierInput(float[] output, int count, int c, int h, int w, bool zeroToOne, int channels)
    {
        if (channels == 3 && c != 3)
        {
            throw new UserError($"The generator makes {c}-channel images; stacked-mnist needs 3 channels (one digit each).");
        }

        var plane = h * w;
        var resampler = h != 28 || w != 28 ? new Resampler(0, 0, w, h, 28, 28, w, h) : null;
        var result = new float[count * channels * 784];
        Parallel.For(0, count, n =>
        {
            var src = new byte[plane];
            var dst = new byte[784];
            for (var oc = 0; oc < channels; oc++)
            {
                for (var i = 0; i < plane; i++)
                {
                    double v = 0;
                    if (channels == 1)
                    {
                        for (var ic = 0; ic < c; ic++)
                        {
                            v += output[(((n * c) + ic) * plane) + i];
                        }

                        v /= c;
                    }
                    else
                    {
                        v = output[(((n * c) + oc) * plane) + i];
                    }

                    var unit = zeroToOne ? v : (v + 1) / 2;
                    src[i] = double.IsNaN(unit) ? (byte)0 : (byte)Math.Clamp((int)Math.Round(unit * 255), 0, 255);
                }

                ReadOnlySpan<byte> img = src;
                if (resampler is not null)
                {
                    resampler.Plane(src, w, h, dst);
                    img = dst;
                }

                var o = ((n * channels) + oc) * 784;
                for (var i = 0; i < 784; i++)
                {
                    result[o + i] = img[i] / 255f;
                }
            }
        });
        return result;
    }
}
