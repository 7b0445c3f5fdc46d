namespace Gan.Functional.CSharp

open Gan.Functional
open Gan.Functional.Eval

/// The mode metrics of 2-D samples against a Gaussian mixture (VEEGAN/PacGAN).
[<Sealed>]
type ModeScoreResult internal (m: ModeMetrics, modes: int) =
    /// Samples scored.
    member _.Samples = m.Samples
    /// The number of modes of the mixture.
    member _.Modes = modes
    /// Modes nearest to at least one high-quality sample.
    member _.ModesCovered = m.ModesCovered
    /// Modes nearest to at least `Threshold` high-quality samples.
    member _.ModesCoveredAtThreshold = m.ModesCoveredAtThreshold
    /// The threshold of ModesCoveredAtThreshold (20).
    member _.Threshold = m.Threshold
    /// Samples within 3σ of their nearest mode.
    member _.HighQuality = m.HighQuality
    /// HighQuality / Samples.
    member _.HighQualityShare = m.HighQualityShare
    /// KL(mode histogram ‖ uniform) of the high-quality samples (NaN when there are none).
    member _.KlToUniform = m.KlToUniform
    /// High-quality samples per mode.
    member _.ModeCounts = Array.copy m.ModeCounts

/// Coverage of the 1,000 Stacked MNIST modes.
[<Sealed>]
type StackedScoreResult internal (c: Eval.Coverage, samples: int) =
    /// Samples scored.
    member _.Samples = samples
    /// Modes (of 1,000) with at least one sample.
    member _.ModesCovered = c.Covered
    /// KL(mode histogram ‖ uniform).
    member _.KlToUniform = c.KlToUniform

/// The 2-D Gaussian mixtures ring8 and grid25 (PacGAN's settings) and Stacked MNIST helpers.
[<AbstractClass; Sealed>]
type Mixture =
    /// "ring8", "grid25".
    static member Names = List.toArray Mixtures.names

    /// True for a mixture name.
    static member IsMixture(name: string) = List.contains name Mixtures.names

    /// The mode centres of a mixture ([x, y] each); ArgumentException for an unknown name.
    static member Means(name: string) : float[][] =
        (Mixtures.byName name).Means |> Array.map Array.copy

    /// The standard deviation of each mode.
    static member Std(name: string) = (Mixtures.byName name).Std

    /// `count` points from the mixture, drawn from `seed`: float32 [count, 2], flat.
    static member Sample(name: string, seed: uint64, count: int) : float32[] =
        Tensor.toArray (Mixtures.sample (Mixtures.byName name) (Random.key seed) count)

    /// The default number of samples of the mode metrics (2,500).
    static member DefaultSamples = Mixtures.defaultSamples

    /// Mode metrics of `count` points (float32 [count, 2], flat): high quality within 3σ,
    /// the 20-sample threshold.
    static member Score(name: string, points: float32[], count: int) =
        if points.Length <> 2 * count then
            invalidArg "points" (sprintf "expected %d points of 2 values, got %d values" count points.Length)

        let m = Mixtures.byName name

        let rows =
            Array.init count (fun i -> [| float points.[2 * i]; float points.[2 * i + 1] |])

        ModeScoreResult(Mixtures.modeMetrics m rows, m.Means.Length)

    /// The number of samples of the Stacked MNIST metrics (26,000).
    static member StackedSamples = StackedMnist.samples

    /// `count` triples of indices into a pool of `poolSize` digit images, drawn from `seed`.
    static member StackedTriples(seed: uint64, count: int, poolSize: int) : int[][] =
        StackedMnist.triples (Random.key seed) count poolSize

    /// Modes covered of 1,000 and KL to uniform of Stacked MNIST modes (100·d1 + 10·d2 + d3).
    static member StackedCoverage(modes: int[]) =
        StackedScoreResult(StackedMnist.coverage modes, modes.Length)
