/// Convolutions as im2col/col2im + GEMM for float32 (the CPU backend's fast path). The column
/// matrix of a chunk of images has one row per (channel, ky, kx) and one column per
/// (image, oy, ox); scratch buffers come from the shared pool and go back after each call.
module internal Gan.Functional.Kernels.Im2col

open System
open System.Threading.Tasks
open Gan.Functional

/// Geometry of one convolution, resolved once.
type private Geometry = {
    N: int
    C: int
    H: int
    W: int
    O: int
    KH: int
    KW: int
    OH: int
    OW: int
    G: int
    Spec: ConvSpec
} with

    member g.Cg = g.C / g.G
    member g.Og = g.O / g.G
    member g.Rows = g.Cg * g.KH * g.KW
    member g.L = g.OH * g.OW

let private geometry (spec: ConvSpec) (xShape: int[]) (wShape: int[]) =
    let o = ConvSpec.outputShape "conv2d" spec xShape wShape

    {
        N = xShape.[0]
        C = xShape.[1]
        H = xShape.[2]
        W = xShape.[3]
        O = wShape.[0]
        KH = wShape.[2]
        KW = wShape.[3]
        OH = o.[2]
        OW = o.[3]
        G = spec.Groups
        Spec = spec
    }

/// Images per chunk so that a column buffer stays near 16M floats (64 MB).
let private chunkOf (g: Geometry) =
    let perImage = int64 g.Rows * int64 g.L
    int (max 1L (min (int64 g.N) (16_000_000L / max 1L perImage)))

let private parallelFor threads (n: int) (work: int) (body: int -> unit) =
    if threads > 1 && work > 200_000 then
        Parallel.For(0, n, ParallelOptions(MaxDegreeOfParallelism = threads), fun i -> body i)
        |> ignore
    else
        for i in 0 .. n - 1 do
            body i

/// col[r, (n − n0)·L + oy·OW + ox] = x[n, group·Cg + c, oy·s − pad + ky·d, ox·s − pad + kx·d] (0 outside).
let private im2col threads (g: Geometry) (x: float32[]) (group: int) (n0: int) (nb: int) (col: float32[]) =
    let s = g.Spec
    let cols = nb * g.L

    parallelFor threads g.Rows (g.Rows * cols) (fun r ->
        let c = r / (g.KH * g.KW)
        let ky = (r / g.KW) % g.KH
        let kx = r % g.KW
        let rowBase = r * cols

        for n in 0 .. nb - 1 do
            let plane = ((n0 + n) * g.C + group * g.Cg + c) * g.H * g.W

            for oy in 0 .. g.OH - 1 do
                let iy = oy * s.StrideH - s.PadTop + ky * s.DilationH
                let dst = rowBase + n * g.L + oy * g.OW

                if iy < 0 || iy >= g.H then
                    Array.Clear(col, dst, g.OW)
                else
                    let src = plane + iy * g.W
                    let x0 = kx * s.DilationW - s.PadLeft

                    if s.StrideW = 1 then
                        // one contiguous run with zero margins
                        let lo = max 0 (-x0)
                        let hi = min g.OW (g.W - x0)

                        if hi <= lo then
                            Array.Clear(col, dst, g.OW)
                        else
                            if lo > 0 then
                                Array.Clear(col, dst, lo)

                            Array.Copy(x, src + x0 + lo, col, dst + lo, hi - lo)

                            if hi < g.OW then
                                Array.Clear(col, dst + hi, g.OW - hi)
                    else
                        for ox in 0 .. g.OW - 1 do
                            let ix = ox * s.StrideW + x0
                            col.[dst + ox] <- if ix >= 0 && ix < g.W then x.[src + ix] else 0.0f)

/// dx[n, group·Cg + c, iy, ix] += col[r, …]: the adjoint of im2col. Parallel over channels,
/// whose rows write disjoint planes.
let private col2im threads (g: Geometry) (col: float32[]) (group: int) (n0: int) (nb: int) (dx: float32[]) =
    let s = g.Spec
    let cols = nb * g.L

    parallelFor threads g.Cg (g.Rows * cols) (fun c ->
        for ky in 0 .. g.KH - 1 do
            for kx in 0 .. g.KW - 1 do
                let r = (c * g.KH + ky) * g.KW + kx
                let rowBase = r * cols

                for n in 0 .. nb - 1 do
                    let plane = ((n0 + n) * g.C + group * g.Cg + c) * g.H * g.W

                    for oy in 0 .. g.OH - 1 do
                        let iy = oy * s.StrideH - s.PadTop + ky * s.DilationH

                        if iy >= 0 && iy < g.H then
                            let src = rowBase + n * g.L + oy * g.OW
                            let dst = plane + iy * g.W
                            let x0 = kx * s.DilationW - s.PadLeft

                            for ox in 0 .. g.OW - 1 do
                                let ix = ox * s.StrideW + x0

                                if ix >= 0 && ix < g.W then
                                    dx.[dst + ix] <- dx.[dst + ix] + col.[src + ox])

/// Copies y[n, group·Og + o, :] ↔ t[o, (n − n0)·L + :] for a chunk (toNchw: t → y).
let private shuffle (g: Geometry) (y: float32[]) (t: float32[]) (group: int) (n0: int) (nb: int) (toNchw: bool) =
    let cols = nb * g.L

    for o in 0 .. g.Og - 1 do
        for n in 0 .. nb - 1 do
            let yOff = ((n0 + n) * g.O + group * g.Og + o) * g.L
            let tOff = o * cols + n * g.L

            if toNchw then
                Array.Copy(t, tOff, y, yOff, g.L)
            else
                Array.Copy(y, yOff, t, tOff, g.L)

/// Runs `body group n0 nb col tmp` over every group and chunk of images, with pooled column
/// ([Rows, nb·L]) and channel-major ([Og, nb·L]) scratch buffers. They come from BufferPool,
/// not ArrayPool.Shared: the shared pool rounds to powers of two and keeps its arrays per
/// thread and core (valid64: six 16 MB column buffers held through every step, measured with
/// dotnet-gcdump), where BufferPool's are exact and go back to the GC once idle for a phase.
let private eachChunk (g: Geometry) (body: int -> int -> int -> float32[] -> float32[] -> unit) =
    let nbMax = chunkOf g
    let col = BufferPool.rent (g.Rows * nbMax * g.L)
    let tmp = BufferPool.rent (g.Og * nbMax * g.L)

    try
        for group in 0 .. g.G - 1 do
            let mutable n0 = 0

            while n0 < g.N do
                let nb = min nbMax (g.N - n0)
                body group n0 nb col tmp
                n0 <- n0 + nb
    finally
        BufferPool.give col
        BufferPool.give tmp

/// conv2d: y[n, o] = Σ W[o, r]·col[r, n] per group.
let conv2d (knobs: CpuKnobs) threads (spec: ConvSpec) (x: float32[]) (xShape: int[]) (w: float32[]) (wShape: int[]) =
    let g = geometry spec xShape wShape
    let y = BufferPool.rent (g.N * g.O * g.L)

    eachChunk g (fun group n0 nb col tmp ->
        im2col threads g x group n0 nb col
        Blas.sgemm knobs false false g.Og (nb * g.L) g.Rows w (group * g.Og * g.Rows) col 0 tmp 0 false
        shuffle g y tmp group n0 nb true)

    y

/// The adjoint of conv2d in x (transposed convolution): dx = col2im(Wᵀ·g).
let conv2dInputGrad
    (knobs: CpuKnobs)
    threads
    (spec: ConvSpec)
    (gy: float32[])
    (w: float32[])
    (wShape: int[])
    (xShape: int[])
    =
    let g = geometry spec xShape wShape
    let dx = BufferPool.rentZeroed (g.N * g.C * g.H * g.W)

    eachChunk g (fun group n0 nb col tmp ->
        shuffle g gy tmp group n0 nb false
        Blas.sgemm knobs true false g.Rows (nb * g.L) g.Og w (group * g.Og * g.Rows) tmp 0 col 0 false
        col2im threads g col group n0 nb dx)

    dx

/// The adjoint of conv2d in W: dW = Σ over chunks g·colᵀ.
let conv2dWeightGrad
    (knobs: CpuKnobs)
    threads
    (spec: ConvSpec)
    (x: float32[])
    (xShape: int[])
    (gy: float32[])
    (wShape: int[])
    =
    let g = geometry spec xShape wShape
    let dw = BufferPool.rentZeroed (g.O * g.Rows)

    eachChunk g (fun group n0 nb col tmp ->
        im2col threads g x group n0 nb col
        shuffle g gy tmp group n0 nb false
        Blas.sgemm knobs false true g.Og g.Rows (nb * g.L) tmp 0 col 0 dw (group * g.Og * g.Rows) (n0 > 0))

    dw
