using System.Security.Cryptography;
using Gan.Host.Data;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Gan.Host.Eval;

/// <summary>
/// ImageNet ResNet-18 features (the 512 values of its global average pool) of colour images, by
/// ONNX Runtime on the two ONNX files of the NuGet package Microsoft.ML.DnnImageFeaturizer.ResNet18
/// (MIT; a CNTK conversion, batch fixed at 1), copied beside the host at build time: each image is
/// resized (bilinear) to 224×224, given as RGB planar floats 0–255 to ResNetPreprocess.onnx (which
/// reorders to BGR and subtracts its mean image), and that to ResNet18.onnx.
/// </summary>
internal sealed class ResNet18Features : IDisposable
{
    public const int Dim = 512;
    public const int InputSize = 224;

    /// <summary>SHA-256 of ResNet18.onnx and ResNetPreprocess.onnx as the package ships them.</summary>
    public static readonly IReadOnlyDictionary<string, string> Files = new Dictionary<string, string>
    {
        ["ResNet18.onnx"] = "e2552f19db2dfdb01b3669537b6a0f1b44da38d18279535492ed5dfc2ef1ff8f",
        ["ResNetPreprocess.onnx"] = "84bf8def78d0befaa3f6e73745d57d7016c6a192ead76f79686bd438c1047004",
    };

    /// <summary>Where the build puts the model files.</summary>
    public static string ModelDirectory => Path.Combine(AppContext.BaseDirectory, "models", "resnet18");

    private readonly InferenceSession prep;
    private readonly InferenceSession net;
    private readonly int threads;

    private ResNet18Features(InferenceSession prep, InferenceSession net, int threads)
    {
        this.prep = prep;
        this.net = net;
        this.threads = threads;
    }

    /// <summary>
    /// Loads the two models from <paramref name="dir"/> (default <see cref="ModelDirectory"/>),
    /// checking their SHA-256 first; <paramref name="threads"/> images run at once (0: one per core).
    /// </summary>
    public static ResNet18Features Open(int threads = 0, string? dir = null)
    {
        dir ??= ModelDirectory;
        foreach (var (name, sha) in Files)
        {
            var path = Path.Combine(dir, name);
            if (!File.Exists(path))
            {
                throw new UserError(
                    $"The ImageNet ResNet-18 model file {path} is missing. The build copies it there from the NuGet package "
                    + "Microsoft.ML.DnnImageFeaturizer.ResNet18 0.24.0; rebuild Gan.Host (`dotnet build`) so it is restored and copied.");
            }

            string actual;
            using (var f = File.OpenRead(path))
            {
                actual = Convert.ToHexStringLower(SHA256.HashData(f));
            }

            if (actual != sha)
            {
                throw new UserError($"The model file {path} has SHA-256 {actual}, not {sha} as in Microsoft.ML.DnnImageFeaturizer.ResNet18 0.24.0; rebuild Gan.Host to copy it again.");
            }
        }

        // one image per call (the batch is fixed at 1): images run in parallel, each on one thread
        var options = new SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1 };
        var n = threads > 0 ? threads : Environment.ProcessorCount;
        return new ResNet18Features(
            new InferenceSession(Path.Combine(dir, "ResNetPreprocess.onnx"), options),
            new InferenceSession(Path.Combine(dir, "ResNet18.onnx"), options),
            n);
    }

    /// <summary>The features of one 8-bit RGB image, planar (3, <paramref name="height"/>, <paramref name="width"/>).</summary>
    public float[] Of(ReadOnlySpan<byte> planar, int height, int width)
    {
        var plane = height * width;
        if (planar.Length != 3 * plane)
        {
            throw new ArgumentException($"expected 3×{height}×{width} bytes, got {planar.Length}", nameof(planar));
        }

        var input = new float[3 * InputSize * InputSize];
        var resized = new byte[InputSize * InputSize];
        var resampler = new Resampler(0, 0, width, height, InputSize, InputSize, width, height);
        for (var c = 0; c < 3; c++)
        {
            resampler.Plane(planar.Slice(c * plane, plane), width, height, resized);
            for (var i = 0; i < resized.Length; i++)
            {
                input[(c * resized.Length) + i] = resized[i];
            }
        }

        int[] shape = [1, 3, InputSize, InputSize];
        using var pre = prep.Run([NamedOnnxValue.CreateFromTensor("OriginalInput", new DenseTensor<float>(input, shape))]);
        var preprocessed = pre.First().AsTensor<float>();
        using var output = net.Run([NamedOnnxValue.CreateFromTensor("Input247", preprocessed)]);
        var features = output.First().AsEnumerable<float>().ToArray();
        if (features.Length != Dim)
        {
            throw new InvalidOperationException($"ResNet18.onnx gave {features.Length} values, not {Dim}");
        }

        return features;
    }

    /// <summary>The features of <paramref name="count"/> images (image i from <paramref name="image"/>), as float64 rows.</summary>
    public double[][] Of(int count, Func<int, byte[]> image, int height, int width, Action<int>? progress = null)
    {
        var rows = new double[count][];
        var done = 0;
        Parallel.For(0, count, new ParallelOptions { MaxDegreeOfParallelism = threads }, i =>
        {
            rows[i] = Array.ConvertAll(Of(image(i), height, width), v => (double)v);
            var d = Interlocked.Increment(ref done);
            progress?.Invoke(d);
        });
        return rows;
    }

    public void Dispose()
    {
        prep.Dispose();
        net.Dispose();
    }
}
