/// Fused float32 batch normalisation for the CPU backend: the forward pass reads x three times
/// (sum, squared deviations, the affine map) and writes y once; the backward pass reads g and x
/// twice and writes dx once, where the composed version takes about fifteen full-size passes.
/// x is viewed as [N, C, L]; threads take contiguous ranges of images.
module internal Gan.Functional.Kernels.FastBatchNorm

open System
open System.Numerics
open System.Threading.Tasks

let private dims (shape: int[]) =
    shape.[0], shape.[1], (shape |> Array.skip 2 |> Array.fold (*) 1)

// The loops below are written out instead of calling TensorPrimitives on spans: a channel of a
// small feature map is many short runs (4×4 maps: 16 floats per image and channel), where a
// library call per run cost more than the arithmetic (measured on dcgan28's [64, 256, 4, 4]
// backward; docs/performance.md, "Measurements behind the code").

/// Σ x[o..o+len), vectorised, accumulated in float32 lanes per segment.
let private sum (x: float32[]) (o: int) (len: int) =
    let w = Vector<float32>.Count
    let mutable acc = Vector<float32>.Zero
    let mutable i = 0

    while i + w <= len do
        acc <- acc + Vector<float32>(x, o + i)
        i <- i + w

    let mutable s = Vector.Sum acc

    while i < len do
        s <- s + x.[o + i]
        i <- i + 1

    s

/// Σ g[o..o+len)·x[o..o+len).
let private dot (g: float32[]) (x: float32[]) (o: int) (len: int) =
    let w = Vector<float32>.Count
    let mutable acc = Vector<float32>.Zero
    let mutable i = 0

    while i + w <= len do
        acc <- acc + Vector<float32>(g, o + i) * Vector<float32>(x, o + i)
        i <- i + w

    let mutable s = Vector.Sum acc

    while i < len do
        s <- s + g.[o + i] * x.[o + i]
        i <- i + 1

    s

/// dst[o..o+len) = g·a + x·b + c.
let private affine2
    (g: float32[])
    (x: float32[])
    (o: int)
    (len: int)
    (a: float32)
    (b: float32)
    (c: float32)
    (dst: float32[])
    =
    let w = Vector<float32>.Count
    let va = Vector<float32>(a)
    let vb = Vector<float32>(b)
    let vc = Vector<float32>(c)
    let mutable i = 0

    while i + w <= len do
        (Vector<float32>(g, o + i) * va + Vector<float32>(x, o + i) * vb + vc).CopyTo(dst, o + i)
        i <- i + w

    while i < len do
        dst.[o + i] <- g.[o + i] * a + x.[o + i] * b + c
        i <- i + 1

/// Σ (x[o..o+len) − mu)², vectorised, accumulated in float32 lanes per segment.
let private sumSquaredDeviation (x: float32[]) (o: int) (len: int) (mu: float32) =
    let w = Vector<float32>.Count
    let m = Vector<float32>(mu)
    let mutable acc = Vector<float32>.Zero
    let mutable i = 0

    while i + w <= len do
        let d = Vector<float32>(x, o + i) - m
        acc <- acc + d * d
        i <- i + w

    let mutable s = float (Vector.Sum acc)

    while i < len do
        let d = float (x.[o + i] - mu)
        s <- s + d * d
        i <- i + 1

    s

/// dst[o..o+len) = src[o..o+len)·a + b.
let private affine (src: float32[]) (o: int) (len: int) (a: float32) (b: float32) (dst: float32[]) =
    let w = Vector<float32>.Count
    let va = Vector<float32>(a)
    let vb = Vector<float32>(b)
    let mutable i = 0

    while i + w <= len do
        (Vector<float32>(src, o + i) * va + vb).CopyTo(dst, o + i)
        i <- i + w

    while i < len do
        dst.[o + i] <- src.[o + i] * a + b
        i <- i + 1

/// Runs `body t b0 b1` for T contiguous ranges of the batch (one per thread), so that each
/// thread streams whole images in memory order: per-channel work on a small feature map would
/// otherwise jump between 64-byte runs 16 KB apart ([N, 256, 4, 4]).
let private batches threads (total: int) (n: int) (body: int -> int -> int -> unit) =
    let t = if threads > 1 && total >= 65536 then min threads n else 1

    if t = 1 then
        body 0 0 n
    else
        Parallel.For(0, t, ParallelOptions(MaxDegreeOfParallelism = t), (fun i -> body i (i * n / t) ((i + 1) * n / t)))
        |> ignore

/// Per-channel sums in float64 of `f x o l` over every image, partials per thread.
let private perChannel threads (total: int) n c l (f: int -> int -> float) =
    let t = if threads > 1 && total >= 65536 then min threads n else 1
    let partial = Array.zeroCreate<float>(t * c)

    batches threads total n (fun i b0 b1 ->
        for b in b0 .. b1 - 1 do
            for ch in 0 .. c - 1 do
                partial.[i * c + ch] <- partial.[i * c + ch] + f ((b * c + ch) * l) ch)

    Array.init c (fun ch ->
        let mutable s = 0.0

        for i in 0 .. t - 1 do
            s <- s + partial.[i * c + ch]

        s)

/// (y, mean, biased variance).
let forward threads (x: float32[]) (shape: int[]) (gamma: float32[]) (beta: float32[]) (eps: float) =
    let n, c, l = dims shape
    let m = float (n * l)
    let y = BufferPool.rent x.Length
    let sums = perChannel threads x.Length n c l (fun o _ -> float (sum x o l))
    let mu = sums |> Array.map (fun s -> s / m)

    let q =
        perChannel threads x.Length n c l (fun o ch -> sumSquaredDeviation x o l (float32 mu.[ch]))

    let v = q |> Array.map (fun q -> q / m)
    let a = Array.init c (fun ch -> float gamma.[ch] / sqrt (v.[ch] + eps))
    let shift = Array.init c (fun ch -> float32 (float beta.[ch] - mu.[ch] * a.[ch]))
    let a32 = Array.map float32 a

    batches threads x.Length n (fun _ b0 b1 ->
        for b in b0 .. b1 - 1 do
            for ch in 0 .. c - 1 do
                affine x ((b * c + ch) * l) l a32.[ch] shift.[ch] y)

    y, Array.map float32 mu, Array.map float32 v

/// (dx, dgamma, dbeta); dx = A·g + B·x + C per channel, the closed form expanded.
let backward
    threads
    (g: float32[])
    (x: float32[])
    (shape: int[])
    (gamma: float32[])
    (mean: float32[])
    (var: float32[])
    (eps: float)
    =
    let n, c, l = dims shape
    let m = float (n * l)
    let dx = BufferPool.rent x.Length
    let sg = perChannel threads x.Length n c l (fun o _ -> float (sum g o l))
    let sgx = perChannel threads x.Length n c l (fun o _ -> float (dot g x o l))
    let dgamma = Array.zeroCreate<float32> c
    let dbeta = Array.zeroCreate<float32> c
    let ca = Array.zeroCreate<float32> c
    let cb = Array.zeroCreate<float32> c
    let cc = Array.zeroCreate<float32> c

    for ch in 0 .. c - 1 do
        let mu = float mean.[ch]
        let inv = 1.0 / sqrt (float var.[ch] + eps)
        // Σ g·x̂ = (Σ g·x − μ·Σ g)/σ
        let dg = (sgx.[ch] - mu * sg.[ch]) * inv
        let gm = float gamma.[ch]
        let bx = -gm * inv * inv * dg / m
        ca.[ch] <- float32 (gm * inv)
        cb.[ch] <- float32 bx
        cc.[ch] <- float32 (-gm * inv * sg.[ch] / m - bx * mu)
        dgamma.[ch] <- float32 dg
        dbeta.[ch] <- float32 sg.[ch]

    batches threads x.Length n (fun _ b0 b1 ->
        for b in b0 .. b1 - 1 do
            for ch in 0 .. c - 1 do
                affine2 g x ((b * c + ch) * l) l ca.[ch] cb.[ch] cc.[ch] dx)

    dx, dgamma, dbeta
