using Gan.Host;
using Gan.Host.Io;

[assembly: CollectionBehavior(DisableTestParallelization = true)]

namespace Gan.Host.Tests;

/// <summary>A temporary directory, deleted at the end of the test.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Path = Directory.CreateTempSubdirectory("gan-host-test-").FullName;

    public string Path { get; }

    public string this[string relative] => System.IO.Path.Combine(Path, relative);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>What one in-process run of the host printed and returned.</summary>
public sealed record HostRun(int Code, string Out, string Err)
{
    /// <summary>The error paragraph without the "error: " prefix.</summary>
    public string Error => Err.StartsWith("error: ", StringComparison.Ordinal) ? Err[7..].Trim() : Err.Trim();
}

/// <summary>Runs Gan.Host in process against a sandbox: its own working and cache directories and no npm.</summary>
internal static class Host
{
    public static HostRun Run(TempDir sandbox, params string[] args) => Run(sandbox, null, CancellationToken.None, args);

    public static HostRun Run(TempDir sandbox, Action<int>? afterStep, CancellationToken cancel, params string[] args) =>
        Run(sandbox, afterStep, cancel, null, args);

    public static HostRun Run(TempDir sandbox, Action<int>? afterStep, CancellationToken cancel, string? npm, params string[] args)
    {
        var output = new StringWriter();
        var errors = new StringWriter();
        var ctx = new HostContext
        {
            Out = output,
            Err = errors,
            Interactive = false,
            WorkingDirectory = sandbox.Path,
            CacheRoot = sandbox["cache"],
            SystemFashionMnistDirs = [],
            FindNpm = () => npm,
            Cancel = cancel,
            AfterStep = afterStep,
            ClassifierRecipe = _ => TinyClassifierRecipe(),
        };
        var code = App.Run(args, ctx);
        return new HostRun(code, output.ToString(), errors.ToString());
    }

    /// <summary>The classifier recipe of the tests: one short epoch, so tiny data trains in a moment (never the full recipe).</summary>
    public static Gan.Functional.CSharp.ClassifierRecipeOptions TinyClassifierRecipe() => new()
    {
        Seed = 0,
        Epochs = 1,
        BatchSize = 16,
        LearningRate = 2e-3,
        LrDecay = 0.5,
        MaxShift = 1,
    };

    /// <summary>
    /// Fake labelled MNIST in <paramref name="dir"/>: train and t10k images with labels, digit d drawn
    /// as a bright square at a place that depends on d (so a classifier can learn it).
    /// </summary>
    public static void WriteFakeLabeledMnist(string dir, int trainCount = 64, int testCount = 32)
    {
        Directory.CreateDirectory(dir);
        foreach (var (prefix, count, seed) in new[] { ("train", trainCount, 1), ("t10k", testCount, 2) })
        {
            var rng = new Random(seed);
            var data = new byte[count * 784];
            var labels = new byte[count];
            for (var n = 0; n < count; n++)
            {
                var d = n % 10;
                labels[n] = (byte)d;
                int cx = 4 + ((d % 5) * 5) + rng.Next(-1, 2), cy = 8 + ((d / 5) * 10) + rng.Next(-1, 2);
                for (var y = Math.Max(0, cy - 3); y < Math.Min(28, cy + 3); y++)
                {
                    for (var x = Math.Max(0, cx - 3); x < Math.Min(28, cx + 3); x++)
                    {
                        data[(n * 784) + (y * 28) + x] = (byte)(200 + rng.Next(56));
                    }
                }
            }

            Idx.Write(System.IO.Path.Combine(dir, $"{prefix}-images-idx3-ubyte"), [count, 28, 28], data, false);
            Idx.Write(System.IO.Path.Combine(dir, $"{prefix}-labels-idx1-ubyte"), [count], labels, false);
        }
    }

    /// <summary>Fake MNIST: <paramref name="count"/> 28×28 images of a bright blob on black, as an IDX file in <paramref name="dir"/>.</summary>
    public static string WriteFakeMnist(string dir, int count = 64, bool gzip = false)
    {
        var data = new byte[count * 28 * 28];
        var rng = new Random(1234);
        for (var n = 0; n < count; n++)
        {
            int cx = rng.Next(8, 20), cy = rng.Next(8, 20), r = rng.Next(3, 7);
            for (var y = 0; y < 28; y++)
            {
                for (var x = 0; x < 28; x++)
                {
                    var d2 = ((x - cx) * (x - cx)) + ((y - cy) * (y - cy));
                    data[(n * 784) + (y * 28) + x] = d2 <= r * r ? (byte)(200 + rng.Next(56)) : (byte)0;
                }
            }
        }

        Directory.CreateDirectory(dir);
        var path = System.IO.Path.Combine(dir, gzip ? "train-images-idx3-ubyte.gz" : "train-images-idx3-ubyte");
        Idx.Write(path, [count, 28, 28], data, gzip);
        return path;
    }

    /// <summary>The common flags of a tiny, fast run on fake MNIST in <paramref name="sandbox"/> (mlp unless <paramref name="extra"/> names a model).</summary>
    public static string[] TinyTrain(TempDir sandbox, string outDir, params string[] extra)
    {
        string[] model = extra.Contains("--model") ? [] : ["--model", "mlp"];
        var data = sandbox["data"];
        if (!File.Exists(System.IO.Path.Combine(data, "train-images-idx3-ubyte")))
        {
            WriteFakeMnist(data);
        }

        return ["train", "--data-dir", data, "--out", outDir, "--batch-size", "16", "--seed", "7", .. model, .. extra];
    }
}
