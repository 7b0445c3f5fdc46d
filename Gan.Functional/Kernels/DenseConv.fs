/// Convolutions whose kernel covers the whole unpadded input, so that the output is 1×1: a
/// discriminator's last layer (dcgan64: 512 → 1 channel, 4×4 on 4×4) and, as its adjoint, a
/// generator's first transposed convolution from z (100 → 512, 1×1 → 4×4). Each is one matrix
/// product over the flattened images, x [N, K] with K = C·kh·kw and w [O, K]: y = x·wᵀ,
/// dx = g·w, dw = gᵀ·x. oneDNN and the one-channel kernels reached 0.4–30 GFLOP/s on them.
module internal Gan.Functional.Kernels.DenseConv

open Gan.Functional

/// True when the convolution of x [N, C, H, W] by w [O, C, H, W] under `spec` has a 1×1
/// output read from the whole image (no padding, no dilation, one group).
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
    && wShape.[2] = xShape.[2]
    && wShape.[3] = xShape.[3]

/// y [N, O] = x [N, K] · w [O, K]ᵀ.
let conv2d (x: float32[]) (xShape: int[]) (w: float32[]) (wShape: int[]) =
    let n, o, k = xShape.[0], wShape.[0], Shape.numel wShape / wShape.[0]
    let y = BufferPool.rent (n * o)
    Blas.sgemm false true n o k x 0 w 0 y 0 false
    y

/// dx [N, K] = g [N, O] · w [O, K].
let inputGrad (g: float32[]) (w: float32[]) (wShape: int[]) (xShape: int[]) =
    let n, o, k = xShape.[0], wShape.[0], Shape.numel wShape / wShape.[0]
    let dx = BufferPool.rent (n * k)
    Blas.sgemm false false n k o g 0 w 0 dx 0 false
    dx

/// dw [O, K] = g [N, O]ᵀ · x [N, K].
let weightGrad (x: float32[]) (xShape: int[]) (g: float32[]) (wShape: int[]) =
    let n, o, k = xShape.[0], wShape.[0], Shape.numel wShape / wShape.[0]
    let dw = BufferPool.rent (o * k)
    Blas.sgemm true false o k n g 0 x 0 dw 0 false
    dw
