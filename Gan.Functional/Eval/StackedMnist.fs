namespace Gan.Functional.Eval

open Gan.Functional

/// Stacked MNIST (VEEGAN, PacGAN): three MNIST digits stacked as the channels of one colour
/// image, 1,000 modes (100·d1 + 10·d2 + d3) whose coverage measures mode collapse.
module StackedMnist =

    /// The number of samples the Stacked MNIST metrics are computed on (VEEGAN, PacGAN: 26,000).
    let samples = 26000

    /// `count` triples of indices into a pool of `poolSize` single-digit images, uniform and
    /// independent, from `key`: the composition of each Stacked MNIST image.
    let triples (key: Key) (count: int) (poolSize: int) : int[][] =
        if poolSize < 1 then
            invalidArg "poolSize" (sprintf "StackedMnist.triples: the pool must not be empty, got %d" poolSize)

        let idx = Random.randInt key 0 poolSize (3 * count)
        Array.init count (fun i -> idx.[3 * i .. 3 * i + 2])

    /// Stacks single-channel images [N, 1, H, W] into [M, 3, H, W]: image i's channel c is
    /// images[triples[i][c]]. Keeps the dtype; not differentiable.
    let stack (images: Tensor) (triples: int[][]) : Tensor =
        let s = Tensor.shape images

        if s.Length <> 4 || s.[1] <> 1 then
            Shape.fail "StackedMnist.stack" (sprintf "expected [N, 1, H, W], got %s" (Shape.show s))

        let plane = s.[2] * s.[3]

        for t in triples do
            if t.Length <> 3 || t |> Array.exists (fun i -> i < 0 || i >= s.[0]) then
                invalidArg "triples" (sprintf "StackedMnist.stack: each triple needs 3 indices in [0, %d)" s.[0])

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
    let mode (d1: int) (d2: int) (d3: int) =
        if [ d1; d2; d3 ] |> List.exists (fun d -> d < 0 || d > 9) then
            invalidArg "d1" (sprintf "StackedMnist.mode: digits must be in 0..9, got %d, %d, %d" d1 d2 d3)

        100 * d1 + 10 * d2 + d3

    /// The true modes of stacked images built from `triples` of images with digit `labels`.
    let labels (labels: int[]) (triples: int[][]) : int[] =
        triples
        |> Array.map (fun t -> mode labels.[t.[0]] labels.[t.[1]] labels.[t.[2]])

    /// The modes of images [N, 3, H, W]: each channel, as a [N, 1, H, W] batch, is labelled by
    /// `classify` (e.g. the MNIST classifier's predicted digits), then combined by
    /// <see cref="mode"/>.
    let modes (classify: Tensor -> int[]) (images: Tensor) : int[] =
        let s = Tensor.shape images

        if s.Length <> 4 || s.[1] <> 3 then
            Shape.fail "StackedMnist.modes" (sprintf "expected [N, 3, H, W], got %s" (Shape.show s))

        let digits = Array.init 3 (fun c -> classify (Tensor.narrow 1 c 1 images))

        for c in 0..2 do
            if digits.[c].Length <> s.[0] then
                invalidArg
                    "classify"
                    (sprintf "StackedMnist.modes: classify returned %d labels for %d images" digits.[c].Length s.[0])

        Array.init s.[0] (fun i -> mode digits.[0].[i] digits.[1].[i] digits.[2].[i])

    /// Modes covered (of 1,000) and the KL of the mode histogram to uniform.
    let coverage (modes: int[]) : Coverage = Metrics.coverage 1000 modes
