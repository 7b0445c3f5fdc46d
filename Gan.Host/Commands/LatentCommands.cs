using Gan.Functional.CSharp;
using Gan.Host.Cli;
using Gan.Host.Io;
using Gan.Host.Training;

namespace Gan.Host.Commands;

/// <summary>`interpolate` and `arithmetic`: pictures of the generator's latent space.</summary>
internal static class LatentCommands
{
    /// <summary>Rows of walks from one random z to another (straight or along a great circle), <c>--steps</c> images each.</summary>
    public static int Interpolate(InterpolateRequest req, HostContext ctx)
    {
        var (gen, outPath, kernels) = Prepare(req, "interpolate", ctx);
        var d = gen.Info.NoiseDim;
        var ends = gen.Trainer.Noise(2 * req.Rows, req.Seed);
        var z = new float[req.Rows * req.Steps * d];
        for (var r = 0; r < req.Rows; r++)
        {
            var z0 = ends.AsSpan(2 * r * d, d).ToArray();
            var z1 = ends.AsSpan(((2 * r) + 1) * d, d).ToArray();
            var walk = req.Spherical ? Latent.Slerp(z0, z1, req.Steps) : Latent.Lerp(z0, z1, req.Steps);
            walk.CopyTo(z, r * req.Steps * d);
        }

        Write(gen, z, req.Rows * req.Steps, req.Steps, req.UseEma, outPath);
        ctx.Info(kernels);
        ctx.Info($"wrote {outPath}: {req.Rows} {(req.Spherical ? "spherical" : "linear")} walk(s) of {req.Steps} steps (seed {req.Seed}) with {gen.Describe(req.UseEma)}");
        return ExitCodes.Ok;
    }

    /// <summary>The std of the noise added to the result vector for its variants (Radford et al. add ±0.25).</summary>
    public const float VariantNoise = 0.25f;

    /// <summary>
    /// S3's vector arithmetic: rows a, b, c show the chosen samples (indices into the noise of
    /// `sample --seed S`) and, last, G of their mean z; the bottom row shows G(mean(a) − mean(b) +
    /// mean(c)) last, and before it variants of that vector with N(0, 0.25²) noise added.
    /// </summary>
    public static int Arithmetic(ArithmeticRequest req, HostContext ctx)
    {
        var (gen, outPath, kernels) = Prepare(req, "arithmetic", ctx);
        var d = gen.Info.NoiseDim;
        var all = req.A.Concat(req.B).Concat(req.C).ToArray();
        // `sample` draws its noise as rows of one counter-based stream, so index i is the same z for any count.
        var noise = gen.Trainer.Noise(all.Max() + 1, req.Seed);
        float[] Row(int i) => noise.AsSpan(i * d, d).ToArray();
        float[][] Group(int[] idx) => idx.Select(Row).ToArray();

        var groups = new[] { req.A, req.B, req.C };
        var cols = groups.Max(g => g.Length) + 1;
        var blank = new float[d];
        var slots = new List<float[]?>();
        foreach (var g in groups)
        {
            slots.AddRange(g.Select(i => (float[]?)Row(i)));
            slots.AddRange(Enumerable.Repeat<float[]?>(null, cols - 1 - g.Length));
            slots.Add(Latent.Arithmetic(Group(g), [blank], [blank]));
        }

        var result = Latent.Arithmetic(Group(req.A), Group(req.B), Group(req.C));
        var jitter = gen.Trainer.Noise(cols - 1, req.Seed + 1);
        for (var k = 0; k < cols - 1; k++)
        {
            slots.Add(result.Select((v, j) => v + (VariantNoise * jitter[(k * d) + j])).ToArray());
        }

        slots.Add(result);
        var z = slots.SelectMany(s => s ?? blank).ToArray();
        var images = gen.Trainer.Generate(z, slots.Count, req.UseEma);
        var per = images.Length / slots.Count;
        var black = gen.Info.OutputsZeroToOne ? 0f : -1f;
        for (var n = 0; n < slots.Count; n++)
        {
            if (slots[n] is null)
            {
                Array.Fill(images, black, n * per, per);
            }
        }

        WritePng(gen, images, slots.Count, cols, outPath);
        ctx.Info(kernels);
        ctx.Info($"wrote {outPath}: rows a [{string.Join(",", req.A)}], b [{string.Join(",", req.B)}], c [{string.Join(",", req.C)}] each ending in G(mean); "
            + $"bottom row: G(mean(a) - mean(b) + mean(c)) last, {cols - 1} noisy variant(s) before it (seed {req.Seed}, {gen.Describe(req.UseEma)})");
        return ExitCodes.Ok;
    }

    private static (LoadedGenerator Gen, string OutPath, string Kernels) Prepare(LatentRequest req, string command, HostContext ctx)
    {
        var outPath = ctx.Resolve(req.Out);
        if (!outPath.EndsWith(".png", StringComparison.OrdinalIgnoreCase))
        {
            throw new UserError($"--out {req.Out} must name a .png file: {command} writes PNG.", ExitCodes.Usage);
        }

        var kernels = Engine.ConfigureCpu(req.Threads);
        var gen = LoadedGenerator.Load(req.Run, req.Checkpoint, ctx);
        if (!gen.MakesImages)
        {
            throw new UserError($"{command} draws images, but {gen.Info.Name} generates 2-D points; `sample` draws them as a scatter plot.", ExitCodes.Usage);
        }

        return (gen, outPath, kernels);
    }

    private static void Write(LoadedGenerator gen, float[] z, int count, int columns, bool useEma, string outPath) =>
        WritePng(gen, gen.Trainer.Generate(z, count, useEma), count, columns, outPath);

    private static void WritePng(LoadedGenerator gen, float[] images, int count, int columns, string outPath)
    {
        var s = gen.Info.ImageShape;
        var grid = Grid.Make(images, count, s[0], s[1], s[2], gen.Info.OutputsZeroToOne, columns);
        try
        {
            AtomicFile.WriteAllBytes(outPath, ImageCodec.EncodePng(grid));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write", outPath);
        }
    }
}
