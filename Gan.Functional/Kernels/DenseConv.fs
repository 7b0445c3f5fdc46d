/// Convolutions with a 1×1 output and no padding: the kernel reads one kh×kw window at the
/// top left of each image (all of it when the kernel is the image's size). A discriminator's
/// last layer (dcgan64: 512 → 1 channel, 4×4 on 4×4; valid64: 128 → 256, 5×5 stride 3 on 6×6)
/// and, as its adjoint, a generator's first transposed convolution from z (dcgan64: 100 → 512,
/// 1×1 → 4×4). Each is one matrix product over the flattened windows, X [N, K] with
/// K = C·kh·kw and w [O, K]: y = X·wᵀ, dX = g·w, dw = gᵀ·X. oneDNN and the one-channel kernels
/// ran them far below GEMM speed (docs/performance.md, "Fourth pass").
module internal Gan.Functional.Kernels.DenseConv

open System
open Gan.Functional

/// True when the convolution of x [N, C, H, W] by w [O, C, kh, kw] under `spec` has a 1×1
/// output and no padding, dilation or groups.
let applies (spec: ConvSpec) (xShape: int[]) (wShape: int[]) =
    xShape.Length = 4
    && wShape.Length = 4
    && spec.Groups = 1
    && spec.DilationH = 1
    && spec.DilationW = 1
    && spec.PadTop = 0
    && spec.PadBottom = 0
    && spec.PadLeft = 0
    && spec.PadRight = 0
    && wShape.[1] = xShape.[1]
    && wShape.[2] <= xShape.[2]
    && wShape.[3] <= xShape.[3]
    && (xShape.[2] - wShape.[2]) / spec.StrideH = 0
    && (xShape.[3] - wShape.[3]) / spec.StrideW = 0

let private whole (xShape: int[]) (wShape: int[]) =
    wShape.[2] = xShape.[2] && wShape.[3] = xShape.[3]

/// The windows X [N, C·kh·kw] of x: x itself when the kernel covers the image, else a copy
/// (from the pool; the second result says whether to give it back).
let private windows (x: float32[]) (xShape: int[]) (wShape: int[]) =
    if whole xShape wShape then
        x, false
    else
        let n, c, h, w = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
        let kh, kw = wShape.[2], wShape.[3]
        let xw = BufferPool.rent (n * c * kh * kw)

        for plane in 0 .. n * c - 1 do
            for i in 0 .. kh - 1 do
                Array.Copy(x, (plane * h + i) * w, xw, (plane * kh + i) * kw, kw)

        xw, true

/// Runs `f` on the windows of x, then gives a copied one back.
let private withWindows (x: float32[]) (xShape: int[]) (wShape: int[]) (f: float32[] -> unit) =
    let xw, owned = windows x xShape wShape
    f xw

    if owned then
        BufferPool.give xw

let private dims (xShape: int[]) (wShape: int[]) =
    xShape.[0], wShape.[0], Shape.numel wShape / wShape.[0]

/// y [N, O] = X [N, K] · w [O, K]ᵀ.
let conv2d (knobs: CpuKnobs) (x: float32[]) (xShape: int[]) (w: float32[]) (wShape: int[]) =
    let n, o, k = dims xShape wShape
    let y = BufferPool.rent (n * o)
    withWindows x xShape wShape (fun xw -> Blas.sgemm knobs false true n o k xw 0 w 0 y 0 false)
    y

/// dx: dX [N, K] = g [N, O] · w [O, K], placed in the windows of zeros [N, C, H, W].
let inputGrad (knobs: CpuKnobs) (g: float32[]) (w: float32[]) (wShape: int[]) (xShape: int[]) =
    let n, o, k = dims xShape wShape
    let dxw = BufferPool.rent (n * k)
    Blas.sgemm knobs false false n k o g 0 w 0 dxw 0 false

    if whole xShape wShape then
        dxw
    else
        let c, h, wd = xShape.[1], xShape.[2], xShape.[3]
        let kh, kw = wShape.[2], wShape.[3]
        let dx = BufferPool.rentZeroed (n * c * h * wd)

        for plane in 0 .. n * c - 1 do
            for i in 0 .. kh - 1 do
                Array.Copy(dxw, (plane * kh + i) * kw, dx, (plane * h + i) * wd, kw)

        BufferPool.give dxw
        dx

/// dw [O, K] = g [N, O]ᵀ · X [N, K].
let weightGrad (knobs: CpuKnobs) (x: float32[]) (xShape: int[]) (g: float32[]) (wShape: int[]) =
    let n, o, k = dims xShape wShape
    let dw = BufferPool.rent (o * k)
    withWindows x xShape wShape (fun xw -> Blas.sgemm knobs true false o k n g 0 xw 0 dw 0 false)
    dw
