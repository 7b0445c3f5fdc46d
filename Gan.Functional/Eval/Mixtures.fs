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
/// train on them with <c>Training.step</c>, and helpers for Stacked MNIST (three digits as the
/// three channels of one image, 1,000 modes).
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

    // ------------------------------------------------------------------ Stacked MNIST

    /// The number of samples the Stacked MNIST metrics are computed on (VEEGAN, PacGAN: 26,000).
    let stackedSamples = 26000

    /// `count` triples of indices into a pool of `poolSize` single-digit images, uniform and
    /// independent, from `key`: the composition of each Stacked MNIST image.
    let stackedTriples (key: Key) (count: int) (poolSize: int) : int[][] =
        if poolSize < 1 then
            invalidArg "poolSize" (sprintf "stackedTriples: the pool must not be empty, got %d" poolSize)

        let idx = Random.randInt key 0 poolSize (3 * count)
        Array.init count (fun i -> idx.[3 * i .. 3 * i + 2])

    /// Stacks single-channel images [N, 1, H, W] into [M, 3, H, W]: image i's channel c is
    /// images[triples[i][c]]. Keeps the dtype; not differentiable.
    let stackDigits (images: Tensor) (triples: int[][]) : Tensor =
        let s = Tensor.shape images

        if s.Length <> 4 || s.[1] <> 1 then
            Shape.fail "stackDigits" (sprintf "expected [N, 1, H, W], got %s" (Shape.show s))

        let plane = s.[2] * s.[3]

        for t in triples do
            if t.Length <> 3 || t |> Array.exists (fun i -> i < 0 || i >= s.[0]) then
                invalidArg "triples" (sprintf "stackDigits: each triple needs 3 indices in [0, %d)" s.[0])

        let shape = [| triples.Length; 3; s.[2]; s.[3] |]

        let build (src: 'T[]) =
            let out = Array.zeroCreate (triples.Length * 3 * plane)

            triples
            |> Array.iteri (fun i t ->
                for c in 0..2 do
                    System.Array.Copy(src, t.[c] * plane, out, (3 * i + c) * plane, plane))

            out

        match Tensor.dtype images with
        | Float32 -> Tensor.ofArray shape (build (Tensor.toArray images))
        | Float64 -> Tensor.ofArray64 shape (build (Tensor.toArray64 images))

    /// The Stacked MNIST mode of three digits: 100·d1 + 10·d2 + d3.
    let stackedMode (d1: int) (d2: int) (d3: int) =
        if [ d1; d2; d3 ] |> List.exists (fun d -> d < 0 || d > 9) then
            invalidArg "d1" (sprintf "stackedMode: digits must be in 0..9, got %d, %d, %d" d1 d2 d3)

        100 * d1 + 10 * d2 + d3

    /// The true modes of stacked images built from `triples` of images with digit `labels`.
    let stackedLabels (labels: int[]) (triples: int[][]) : int[] =
        triples
        |> Array.map (fun t -> stackedMode labels.[t.[0]] labels.[t.[1]] labels.[t.[2]])

    /// The modes of images [N, 3, H, W]: each channel, as a [N, 1, H, W] batch, is labelled by
    /// `classify` (e.g. the MNIST classifier's predicted digits), then combined by
    /// <see cref="stackedMode"/>.
    let stackedModes (classify: Tensor -> int[]) (images: Tensor) : int[] =
        let s = Tensor.shape images

        if s.Length <> 4 || s.[1] <> 3 then
            Shape.fail "stackedModes" (sprintf "expected [N, 3, H, W], got %s" (Shape.show s))

        let digits = Array.init 3 (fun c -> classify (Tensor.narrow 1 c 1 images))

        for c in 0..2 do
            if digits.[c].Length <> s.[0] then
                invalidArg
                    "classify"
                    (sprintf "stackedModes: classify returned %d labels for %d images" digits.[c].Length s.[0])

        Array.init s.[0] (fun i -> stackedMode digits.[0].[i] digits.[1].[i] digits.[2].[i])

    /// Modes covered (of 1,000) and the KL of the mode histogram to uniform.
    let stackedCoverage (modes: int[]) : Coverage = Metrics.coverage 1000 modes
