namespace Gan.Functional.Eval

open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan

/// An equal-weight mixture of isotropic 2-D Gaussians: a toy dataset whose modes can be counted.
type Mixture = {
    /// "ring8" or "grid25".
    Name: string
    /// The mode centres, [x; y] each.
    Means: float[][]
    /// The standard deviation of every mode along each axis.
    Std: float
}

/// Mode metrics of 2-D samples against a mixture, as VEEGAN (Srivastava et al. 2017) and
/// PacGAN (Lin et al. 2018) define them.
type ModeMetrics = {
    /// The number of samples scored.
    Samples: int
    /// Samples within `Sigmas`·σ of their nearest mode centre.
    HighQuality: int
    /// HighQuality / Samples.
    HighQualityShare: float
    /// Modes that are the nearest mode of at least one high-quality sample.
    ModesCovered: int
    /// Modes that are the nearest mode of at least `Threshold` high-quality samples.
    ModesCoveredAtThreshold: int
    /// The threshold of `ModesCoveredAtThreshold` (20 by default).
    Threshold: int
    /// The radius, in standard deviations, within which a sample is of high quality (3).
    Sigmas: float
    /// High-quality samples per mode.
    ModeCounts: int[]
    /// KL(p ‖ uniform) of the normalised `ModeCounts`: 0 for a perfectly balanced generator,
    /// ln K when all high-quality samples fall on one mode, NaN when there are none.
    KlToUniform: float
}

/// 2-D Gaussian mixtures (ring8, grid25) as datasets, their mode metrics, a small MLP GAN to
/// train on them with <c>Training.step</c> (Stacked MNIST is in <c>StackedMnist</c>).
module Mixtures =

    /// PacGAN's 2D-ring: 8 modes on the unit circle, (cos 2πi/8, sin 2πi/8), std 0.01.
    let ring8 = {
        Name = "ring8"
        Means =
            Array.init 8 (fun i ->
                let a = 2.0 * System.Math.PI * float i / 8.0
                [| cos a; sin a |])
        Std = 0.01
    }

    /// PacGAN's 2D-grid: 25 modes at {−4, −2, 0, 2, 4}², std 0.05 (row-major: mode 5i + j is
    /// at (−4 + 2i, −4 + 2j)).
    let grid25 = {
        Name = "grid25"
        Means = Array.init 25 (fun m -> [| -4.0 + 2.0 * float (m / 5); -4.0 + 2.0 * float (m % 5) |])
        Std = 0.05
    }

    /// The mixtures' names.
    let names = [ "ring8"; "grid25" ]

    /// A mixture by name; unknown names raise an ArgumentException listing the known ones.
    let byName (name: string) =
        match name with
        | "ring8" -> ring8
        | "grid25" -> grid25
        | other -> invalidArg "name" (sprintf "unknown mixture '%s'; known: %s" other (String.concat ", " names))

    /// The default number of samples the mode metrics are computed on (PacGAN: 2,500).
    let defaultSamples = 2500

    /// `n` points [n, 2] (float32) from `key`: each picks a mode uniformly, then adds
    /// N(0, Std²) noise per axis (drawn in float64).
    let sample (mixture: Mixture) (key: Key) (n: int) : Tensor =
        if n < 0 then
            invalidArg "n" (sprintf "sample: n must be non-negative, got %d" n)

        let km, kn = Random.split key
        let modes = Random.randInt km 0 mixture.Means.Length n
        let noise = RawTensor.toFloat64Array (Random.normal kn Float64 [| n; 2 |])

        let data =
            Array.init (2 * n) (fun e ->
                let i, axis = e / 2, e % 2
                float32 (mixture.Means.[modes.[i]].[axis] + mixture.Std * noise.[e]))

        Tensor.ofArray [| n; 2 |] data

    /// Each point's nearest mode and its Euclidean distance to that mode's centre.
    let nearestModes (mixture: Mixture) (points: float[][]) : (int * float)[] =
        points
        |> Array.mapi (fun i p ->
            if p.Length <> 2 then
                invalidArg "points" (sprintf "nearestModes: point %d has %d coordinates, not 2" i p.Length)

            let mutable best = 0
            let mutable bestD2 = infinity

            for m in 0 .. mixture.Means.Length - 1 do
                let dx = p.[0] - mixture.Means.[m].[0]
                let dy = p.[1] - mixture.Means.[m].[1]
                let d2 = dx * dx + dy * dy

                if d2 < bestD2 then
                    best <- m
                    bestD2 <- d2

            best, sqrt bestD2)

    /// Mode metrics of `points` (rows [x; y]) with a chosen radius in standard deviations and
    /// count threshold: a point is of high quality when it lies within sigmas·Std of its nearest
    /// mode; that mode then counts it. A non-finite point is never of high quality.
    let modeMetricsWith (sigmas: float) (threshold: int) (mixture: Mixture) (points: float[][]) : ModeMetrics =
        let counts = Array.zeroCreate mixture.Means.Length
        let radius = sigmas * mixture.Std
        let mutable hq = 0

        for m, d in nearestModes mixture points do
            if d <= radius then
                counts.[m] <- counts.[m] + 1
                hq <- hq + 1

        {
            Samples = points.Length
            HighQuality = hq
            HighQualityShare =
                (if points.Length = 0 then
                     nan
                 else
                     float hq / float points.Length)
            ModesCovered = counts |> Array.filter (fun c -> c >= 1) |> Array.length
            ModesCoveredAtThreshold = counts |> Array.filter (fun c -> c >= threshold) |> Array.length
            Threshold = threshold
            Sigmas = sigmas
            ModeCounts = counts
            KlToUniform = Metrics.klToUniform counts
        }

    /// Mode metrics with VEEGAN/PacGAN's settings: high quality within 3σ; modes covered by at
    /// least 1 and at least 20 high-quality samples. Score <see cref="defaultSamples"/> samples.
    let modeMetrics (mixture: Mixture) (points: float[][]) = modeMetricsWith 3.0 20 mixture points

    // ------------------------------------------------------------------ a GAN for 2-D points

    /// The zoo's MLP GAN for 2-D points (<c>Zoo.toy2dWith</c>), trainable with
    /// <c>Training.step</c> on batches [N, 2] drawn by <see cref="sample"/>.
    let mlpGanWith (noiseDim: int) (width: int) (layers: int) (minibatchDiscrimination: bool) : GanModel =
        Zoo.toy2dWith noiseDim width layers minibatchDiscrimination

    /// The zoo's "toy2d" (false) or "toy2d-mbd" (true): z of 2 dimensions, 3 hidden layers of
    /// 128 units.
    let mlpGan (minibatchDiscrimination: bool) =
        if minibatchDiscrimination then Zoo.toy2dMbd else Zoo.toy2d
