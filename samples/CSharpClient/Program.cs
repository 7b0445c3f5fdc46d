// A C# client of Gan.Functional that uses only the facade (namespace Gan.Functional.CSharp):
// list the model zoo, train the "mlp" GAN for a few steps on synthetic images, sample from it,
// and check that an exported state restores to a trainer that behaves identically.
// Run: dotnet run -c Release --project samples/CSharpClient   (exit code 1 when a check fails)

using System.Globalization;
using Gan.Functional.CSharp;

CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

// 1. The model zoo, with parameter counts (colour models counted with 3 channels).
Console.WriteLine("Model zoo:");
foreach (var m in Engine.Models(3))
{
    Console.WriteLine(
        $"  {m.Name,-8} G {m.GeneratorParameters,10:N0}  D {m.DiscriminatorParameters,10:N0}  {m.Summary}");
}

// 2. A trainer for "mlp" with its SEEDS.md defaults, but small batches.
// (TrainOptions and NamedTensor allow null in F#, so C# sees the facade's results as nullable.)
var options = TrainOptions.ForModel("mlp", 1);
options.BatchSize = 16;
options.Seed = 7;
var trainer = GanTrainer.Create(options);
var info = trainer.Model;
int[] imageShape = info.ImageShape; // [C, H, W]
int pixelsPerImage = imageShape.Aggregate(1, (a, b) => a * b);
Console.WriteLine();
Console.WriteLine(
    $"Training {info.Name}: z {info.NoiseDim}, images [{string.Join(", ", imageShape)}], " +
    $"batch {options.BatchSize}, " +
    $"lr D {trainer.DiscriminatorLearningRate(0):G3} / G {trainer.GeneratorLearningRate(0):G3}");

// 3. A fake batch: one soft Gaussian blob per image, in the model's pixel range [-1, 1].
float[] batch = Blobs(options.BatchSize, imageShape[1], imageShape[2], seed: 1);
Console.WriteLine($"Fake batch: {options.BatchSize} images, values in [{batch.Min():F3}, {batch.Max():F3}]");

// 4. A few training steps.
for (int step = 0; step < 3; step++)
{
    var r = trainer.Step(batch, options.BatchSize, epoch: 0);
    Console.WriteLine(
        $"  step {trainer.StepCount}: D loss {r.DiscriminatorLoss:F4}  G loss {r.GeneratorLoss:F4}  " +
        $"D(x) {r.RealScore:F4}  D(G(z)) {r.FakeScore:F4}");
    Require(double.IsFinite(r.DiscriminatorLoss) && double.IsFinite(r.GeneratorLoss), "losses are finite");
}

Require(trainer.IsFinite(), "every parameter is finite after training");

// 5. Four samples from fixed noise.
const int sampleCount = 4;
float[] z = trainer.Noise(sampleCount, seed: 123);
float[] samples = trainer.Generate(z, sampleCount, useEma: false);
Console.WriteLine();
Console.WriteLine(
    $"Samples: [{sampleCount}, {string.Join(", ", imageShape)}] = {samples.Length} values " +
    $"in [{samples.Min():F3}, {samples.Max():F3}]");
Require(samples.Length == sampleCount * pixelsPerImage, "sample size matches [4, C, H, W]");
Require(samples.All(v => v >= -1f && v <= 1f), "tanh samples lie in [-1, 1]");

// 6. Export the whole training state and restore it into a new trainer.
NamedTensor[] exported = trainer.ExportState();
long values = exported.Sum(t => (long)(t.Float32Data?.Length ?? t.Float64Data?.Length ?? 0));
Console.WriteLine();
Console.WriteLine($"Exported {exported.Length} named tensors ({values:N0} values), e.g.:");
foreach (var t in exported.Take(3))
{
    Console.WriteLine($"  {t.Name} [{string.Join(", ", t.Shape)}]");
}

var restored = GanTrainer.Restore(options, exported);
Require(restored.StepCount == trainer.StepCount, "the restored trainer has the same step count");
Require(
    restored.Generate(z, sampleCount, useEma: false).SequenceEqual(samples),
    "the restored trainer generates identical samples");

// The restored state carries the optimizer moments and the random key too, so one more step on
// the same batch must give the same metrics and the same generator on both trainers.
var a = trainer.Step(batch, options.BatchSize, epoch: 0);
var b = restored.Step(batch, options.BatchSize, epoch: 0);
Require(
    a.DiscriminatorLoss.Equals(b.DiscriminatorLoss) && a.GeneratorLoss.Equals(b.GeneratorLoss),
    "the next step gives identical losses on both trainers");
Require(
    trainer.Generate(z, sampleCount, false).SequenceEqual(restored.Generate(z, sampleCount, false)),
    "the next step gives identical generators on both trainers");
Console.WriteLine("Restored trainer: identical samples, and an identical step after the restore.");
Console.WriteLine("CSharpClient: all checks passed");
return 0;

// Stops the program with exit code 1 when a check fails.
static void Require(bool ok, string what)
{
    if (!ok)
    {
        Console.Error.WriteLine($"CSharpClient: check failed: {what}");
        Environment.Exit(1);
    }
}

// `count` h×w images, flat NCHW with one channel: a Gaussian blob of random centre and width
// on a dark background, scaled to [-1, 1] like the (x - 127.5) / 127.5 of real MNIST pixels.
static float[] Blobs(int count, int h, int w, int seed)
{
    var rng = new Random(seed);
    var data = new float[count * h * w];
    for (int n = 0; n < count; n++)
    {
        double cy = rng.NextDouble() * (h - 8) + 4;
        double cx = rng.NextDouble() * (w - 8) + 4;
        double sigma = 2 + rng.NextDouble() * 3;
        for (int y = 0; y < h; y++)
        {
            for (int x = 0; x < w; x++)
            {
                double d2 = ((y - cy) * (y - cy)) + ((x - cx) * (x - cx));
                double pixel = 255 * Math.Exp(-d2 / (2 * sigma * sigma));
                data[(n * h * w) + (y * w) + x] = (float)((pixel - 127.5) / 127.5);
            }
        }
    }

    return data;
}
