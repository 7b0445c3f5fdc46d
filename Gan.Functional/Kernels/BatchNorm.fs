/// Fused float32 batch normalisation for the CPU backend: the forward pass reads x three times
/// (sum, squared deviations, the affine map) and writes y once; the backward pass reads g and x
/// twice and writes dx once, where the composed version takes about fifteen full-size passes.
/// x is viewed as [N, C, L]; channels run in parallel.
module internal Gan.Functional.Kernels.FastBatchNorm

open System
open System.Numerics
open System.Numerics.Tensors
open System.Threading.Tasks

let private dims (shape: int[]) =
    shape.[0], shape.[1], (shape |> Array.skip 2 |> Array.fold (*) 1)

let private channels threads (total: int) (c: int) (body: int -> unit) =
    if threads > 1 && total >= 65536 && c > 1 then
        Parallel.For(0, c, ParallelOptions(MaxDegreeOfParallelism = threads), body)
        |> ignore
    else
        for ch in 0 .. c - 1 do
            body ch

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

/// (y, mean, biased variance).
let forward threads (x: float32[]) (shape: int[]) (gamma: float32[]) (beta: float32[]) (eps: float) =
    let n, c, l = dims shape
    let m = float (n * l)
    let y = BufferPool.rent x.Length
    let mean = Array.zeroCreate<float32> c
    let var = Array.zeroCreate<float32> c

    channels threads x.Length c (fun ch ->
        let mutable s = 0.0

        for b in 0 .. n - 1 do
            s <- s + float (TensorPrimitives.Sum(ReadOnlySpan(x, (b * c + ch) * l, l)))

        let mu = s / m
        let mutable q = 0.0

        for b in 0 .. n - 1 do
            q <- q + sumSquaredDeviation x ((b * c + ch) * l) l (float32 mu)

        let v = q / m
        let a = float gamma.[ch] / sqrt (v + eps)
        let shift = float32 (float beta.[ch] - mu * a)

        for b in 0 .. n - 1 do
            let o = (b * c + ch) * l
            affine x o l (float32 a) shift y

        mean.[ch] <- float32 mu
        var.[ch] <- float32 v)

    y, mean, var

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
    let dgamma = Array.zeroCreate<float32> c
    let dbeta = Array.zeroCreate<float32> c

    channels threads x.Length c (fun ch ->
        let mu = float mean.[ch]
        let inv = 1.0 / sqrt (float var.[ch] + eps)
        let mutable sg = 0.0
        let mutable sgx = 0.0

        for b in 0 .. n - 1 do
            let o = (b * c + ch) * l
            let gs = ReadOnlySpan(g, o, l)
            sg <- sg + float (TensorPrimitives.Sum gs)
            sgx <- sgx + float (TensorPrimitives.Dot(gs, ReadOnlySpan(x, o, l)))

        // Σ g·x̂ = (Σ g·x − μ·Σ g)/σ
        let dg = (sgx - mu * sg) * inv
        let gm = float gamma.[ch]
        let a = gm * inv
        let bx = -gm * inv * inv * dg / m
        let c0 = -gm * inv * sg / m - bx * mu

        for b in 0 .. n - 1 do
            let o = (b * c + ch) * l
            let d = Span(dx, o, l)
            affine g o l (float32 a) (float32 c0) dx
            TensorPrimitives.MultiplyAdd(ReadOnlySpan(x, o, l), float32 bx, Span<float32>.op_Implicit d, d)

        dgamma.[ch] <- float32 dg
        dbeta.[ch] <- float32 sg)

    dx, dgamma, dbeta
