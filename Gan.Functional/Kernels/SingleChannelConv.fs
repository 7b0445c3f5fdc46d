/// Direct float32 kernels for convolutions with one output channel (stride 1, no dilation, one
/// group, padding below the kernel size): a generator's last layer, 64 → 1 channels at 28×28 in
/// dcgan28. oneDNN pads the single output channel to a block of 16 (a few GFLOP/s) and
/// im2col builds a column matrix 9·C times the image for a one-row product; here every output
/// row is accumulated in vector registers straight from a zero-padded copy of the input plane,
/// so no bounds are tested in the inner loops. Images run in parallel, one scratch per thread.
module internal Gan.Functional.Kernels.SingleChannelConv

open System
open System.Numerics
open System.Threading.Tasks
open Gan.Functional

/// True when these kernels serve the convolution of `wShape` [1, C, kh, kw] under `spec`.
let applies (spec: ConvSpec) (wShape: int[]) =
    wShape.Length = 4
    && wShape.[0] = 1
    && spec.Groups = 1
    && spec.StrideH = 1
    && spec.StrideW = 1
    && spec.DilationH = 1
    && spec.DilationW = 1
    && spec.PadTop < wShape.[2]
    && spec.PadBottom < wShape.[2]
    && spec.PadLeft < wShape.[3]
    && spec.PadRight < wShape.[3]

let private lanes = Vector<float32>.Count

/// (N, C, H, W, kh, kw, output height, output width) of a stride-1 convolution.
let private geometry (spec: ConvSpec) (xShape: int[]) (wShape: int[]) =
    let h, w, kh, kw = xShape.[2], xShape.[3], wShape.[2], wShape.[3]

    struct (xShape.[0],
            xShape.[1],
            h,
            w,
            kh,
            kw,
            h + spec.PadTop + spec.PadBottom - kh + 1,
            w + spec.PadLeft + spec.PadRight - kw + 1)

/// Each weight broadcast to a vector, in [C, kh, kw] order.
let private broadcast (w: float32[]) =
    Array.map (fun (v: float32) -> Vector<float32>(v)) w

let private eachImage threads (n: int) (scratch: int) (body: float32[] -> int -> unit) =
    Parallel.For(
        0,
        n,
        ParallelOptions(MaxDegreeOfParallelism = threads),
        (fun () -> Array.zeroCreate<float32> scratch),
        (fun b _ (buf: float32[]) ->
            body buf b
            buf),
        ignore
    )
    |> ignore

/// Stores the first `count` lanes of `v` at dst[o..].
let inline private store (v: Vector<float32>) (dst: float32[]) (o: int) (count: int) =
    if count = lanes then
        v.CopyTo(dst, o)
    else
        for i in 0 .. count - 1 do
            dst.[o + i] <- v.[i]

/// Stores four consecutive blocks starting at block vb of a row of `width` at dst[o..].
let private store4 a0 a1 a2 a3 (dst: float32[]) (o: int) (vb: int) (width: int) =
    let at i = vb * lanes + i * lanes
    store a0 dst (o + at 0) (min lanes (width - at 0))
    store a1 dst (o + at 1) (min lanes (width - at 1))
    store a2 dst (o + at 2) (min lanes (width - at 2))
    store a3 dst (o + at 3) (min lanes (width - at 3))

/// Copies the [C, H, W] image at x[xo..] into a [C, hp, wp] plane at row `top`, column `left`.
/// The plane's border is never written, so a thread's zero-initialised scratch stays padded with
/// zeros from image to image (clearing it each time doubled the memory traffic).
let private padInto (x: float32[]) (xo: int) c h w (buf: float32[]) hp wp top left =
    for ch in 0 .. c - 1 do
        for iy in 0 .. h - 1 do
            Array.Copy(x, xo + (ch * h + iy) * w, buf, (ch * hp + iy + top) * wp + left, w)

/// One output row of `width` floats at dst[o..]: Σ over taps t of wv[wBase + t] times src
/// from srcBase + tapSrc[t], vector block by vector block, four blocks at a time so that each
/// weight broadcast serves four FMAs. Both the forward pass and the input gradient are this, with
/// other taps.
let private accumulateRow
    (src: float32[])
    (srcBase: int)
    (wv: Vector<float32>[])
    (wBase: int)
    (tapSrc: int[])
    (dst: float32[])
    (o: int)
    (width: int)
    =
    let blocks = (width + lanes - 1) / lanes
    let mutable vb = 0

    while vb + 4 <= blocks do
        let mutable a0 = Vector<float32>.Zero
        let mutable a1 = Vector<float32>.Zero
        let mutable a2 = Vector<float32>.Zero
        let mutable a3 = Vector<float32>.Zero
        let b0 = srcBase + vb * lanes

        for t in 0 .. tapSrc.Length - 1 do
            let wk = wv.[wBase + t]
            let s0 = b0 + tapSrc.[t]
            a0 <- a0 + wk * Vector<float32>(src, s0)
            a1 <- a1 + wk * Vector<float32>(src, s0 + lanes)
            a2 <- a2 + wk * Vector<float32>(src, s0 + 2 * lanes)
            a3 <- a3 + wk * Vector<float32>(src, s0 + 3 * lanes)

        store4 a0 a1 a2 a3 dst o vb width
        vb <- vb + 4

    while vb < blocks do
        let mutable acc = Vector<float32>.Zero
        let b0 = srcBase + vb * lanes

        for t in 0 .. tapSrc.Length - 1 do
            acc <- acc + wv.[wBase + t] * Vector<float32>(src, b0 + tapSrc.[t])

        store acc dst (o + vb * lanes) (min lanes (width - vb * lanes))
        vb <- vb + 1

/// y[n, 0, oy, ox] = Σ_c,ky,kx w[0, c, ky, kx]·x[n, c, oy + ky − pt, ox + kx − pl].
let conv2d threads (spec: ConvSpec) (x: float32[]) (xShape: int[]) (w: float32[]) (wShape: int[]) =
    let struct (n, c, h, wd, kh, kw, ho, wo) = geometry spec xShape wShape
    let blocks = (wo + lanes - 1) / lanes
    let hp, wp = ho + kh - 1, blocks * lanes + kw - 1
    let wv = broadcast w
    // tap (c, ky, kx) reads the padded plane at row oy + ky of channel c, column ox + kx
    let tapSrc =
        Array.init (c * kh * kw) (fun t -> (t / (kh * kw) * hp + t / kw % kh) * wp + t % kw)

    let y = BufferPool.rent (n * ho * wo)

    eachImage threads n (c * hp * wp) (fun xp b ->
        padInto x (b * c * h * wd) c h wd xp hp wp spec.PadTop spec.PadLeft

        for oy in 0 .. ho - 1 do
            accumulateRow xp (oy * wp) wv 0 tapSrc y ((b * ho + oy) * wo) wo)

    y

/// dx[n, c, iy, ix] = Σ_ky,kx w[0, c, ky, kx]·g[n, 0, iy − ky + pt, ix − kx + pl] (valid terms):
/// a full correlation of g, padded by kh − 1 − pt rows and kw − 1 − pl columns, with w flipped.
let conv2dInputGrad threads (spec: ConvSpec) (g: float32[]) (w: float32[]) (wShape: int[]) (xShape: int[]) =
    let struct (n, c, h, wd, kh, kw, ho, wo) = geometry spec xShape wShape
    let blocks = (wd + lanes - 1) / lanes
    let hg, wg = h + kh - 1, blocks * lanes + kw - 1
    let wv = broadcast w
    // tap (ky, kx) of channel c reads the padded g at row iy + kh − 1 − ky, column ix + kw − 1 − kx
    let tapSrc =
        Array.init (kh * kw) (fun t -> (kh - 1 - t / kw) * wg + kw - 1 - t % kw)

    let dx = BufferPool.rent (n * c * h * wd)

    eachImage threads n (hg * wg) (fun gp b ->
        padInto g (b * ho * wo) 1 ho wo gp hg wg (kh - 1 - spec.PadTop) (kw - 1 - spec.PadLeft)

        for ch in 0 .. c - 1 do
            for iy in 0 .. h - 1 do
                accumulateRow gp (iy * wg) wv (ch * kh * kw) tapSrc dx (((b * c + ch) * h + iy) * wd) wd)

    dx

/// dw[0, c, ky, kx] = Σ_n,oy,ox g[n, 0, oy, ox]·x[n, c, oy + ky − pt, ox + kx − pl].
let conv2dWeightGrad threads (spec: ConvSpec) (x: float32[]) (xShape: int[]) (g: float32[]) (wShape: int[]) =
    let struct (n, c, h, wd, kh, kw, ho, wo) = geometry spec xShape wShape
    let blocks = (wo + lanes - 1) / lanes
    let hp, wp = ho + kh - 1, blocks * lanes + kw - 1
    let plane = c * hp * wp
    let rowG = blocks * lanes
    let dw = Array.zeroCreate<float>(c * kh * kw)
    let gate = obj ()

    Parallel.For(
        0,
        n,
        ParallelOptions(MaxDegreeOfParallelism = threads),
        // per thread: the padded image, g's rows padded with zeros to whole vectors, partial dw
        (fun () -> struct (Array.zeroCreate<float32>(plane + ho * rowG), Array.zeroCreate<float>(c * kh * kw))),
        (fun b _ (struct (buf: float32[], part: float[])) ->
            // the rows of g are padded to whole vectors with zeros no copy ever overwrites
            padInto x (b * c * h * wd) c h wd buf hp wp spec.PadTop spec.PadLeft

            for oy in 0 .. ho - 1 do
                Array.Copy(g, (b * ho + oy) * wo, buf, plane + oy * rowG, wo)

            for ch in 0 .. c - 1 do
                for ky in 0 .. kh - 1 do
                    for kx in 0 .. kw - 1 do
                        let mutable acc = Vector<float32>.Zero

                        for oy in 0 .. ho - 1 do
                            let row = (ch * hp + oy + ky) * wp + kx
                            let grow = plane + oy * rowG

                            for vb in 0 .. blocks - 1 do
                                acc <-
                                    acc
                                    + Vector<float32>(buf, grow + vb * lanes) * Vector<float32>(buf, row + vb * lanes)

                        let k = (ch * kh + ky) * kw + kx
                        part.[k] <- part.[k] + float (Vector.Sum acc)

            struct (buf, part)),
        (fun (struct (_, part: float[])) ->
            lock gate (fun () ->
                for k in 0 .. part.Length - 1 do
                    dw.[k] <- dw.[k] + part.[k]))
    )
    |> ignore

    Array.map float32 dw
