/// Reference CPU kernels for 2-D convolution and max pooling over contiguous row-major NCHW
/// buffers. They are `inline` so one body serves float32 and float64 (SRTP arithmetic); they
/// know nothing of gradients and always allocate their output.
///
/// Strategy (shared by all three conv kernels): loop over (sample, group, channel pair, kernel
/// tap) and, for each tap, over the output rows and columns that land inside the input. Those
/// ranges are computed once per tap (see <see cref="validRange"/>), so the two innermost loops
/// carry no bounds tests for padding, and the innermost one walks an output row contiguously.
/// It is im2col without materialising the column matrix.
module internal Gan.Functional.Kernels.ReferenceConv

open Gan.Functional

/// The output positions `o` in `[0, outSize)` whose input coordinate `o * stride + offset`
/// lies in `[0, inSize)`, as a half-open range `[lo, hi)` (empty when `hi <= lo`).
/// Why: hoists the padding test out of the inner loops; the valid set is contiguous.
let validRange (offset: int) (stride: int) (inSize: int) (outSize: int) : struct (int * int) =
    // o * stride + offset >= 0  <=>  o >= ceil(-offset / stride)
    let lo = if offset >= 0 then 0 else (-offset + stride - 1) / stride
    // o * stride + offset <= inSize - 1  <=>  o <= floor((inSize - 1 - offset) / stride)
    let last = inSize - 1 - offset
    let hi = if last < 0 then 0 else min outSize (last / stride + 1)
    struct (min lo outSize, hi)

/// Checks that a buffer holds exactly the elements its shape describes.
let checkLength op (name: string) (length: int) (shape: int[]) =
    if length <> Shape.numel shape then
        Shape.fail
            op
            (sprintf "%s has %d values but shape %s needs %d" name length (Shape.show shape) (Shape.numel shape))

/// Checks that the upstream gradient's shape is conv2d's output shape for `xShape` and `wShape`.
let checkGradShape op spec (xShape: int[]) (wShape: int[]) (gShape: int[]) =
    let expected = ConvSpec.outputShape op spec xShape wShape

    if gShape <> expected then
        Shape.fail
            op
            (sprintf
                "gradient shape %s does not match conv output %s for input %s and weight %s"
                (Shape.show gShape)
                (Shape.show expected)
                (Shape.show xShape)
                (Shape.show wShape))

/// <summary>
/// 2-D cross-correlation, as PyTorch's <c>conv2d</c> without bias:
/// <c>y[n, o, i, j] = Σ_{c, p, q} x[n, g·Cg + c, i·sH − padTop + p·dH, j·sW − padLeft + q·dW] · w[o, c, p, q]</c>
/// where <c>g = o / (O / groups)</c>, <c>Cg = C / groups</c>, and out-of-range input positions
/// (the padding) read as zero.
/// </summary>
/// <remarks>
/// Shapes: <c>x</c> is <c>xShape = [N, C, H, W]</c>, <c>w</c> is <c>wShape = [O, C/groups, kH, kW]</c>;
/// the result has shape <c>ConvSpec.outputShape "conv2d" spec xShape wShape = [N, O, oH, oW]</c>.
/// Throws <see cref="T:Gan.Functional.ShapeMismatchException"/> when the shapes do not fit.
/// </remarks>
let inline conv2d (spec: ConvSpec) (x: ^T[]) (xShape: int[]) (w: ^T[]) (wShape: int[]) : ^T[] =
    let op = "conv2d"
    let yShape = ConvSpec.outputShape op spec xShape wShape
    checkLength op "input" x.Length xShape
    checkLength op "weight" w.Length wShape
    let n, c, h, wd = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
    let o, kh, kw = wShape.[0], wShape.[2], wShape.[3]
    let oh, ow = yShape.[2], yShape.[3]
    let groups = spec.Groups
    let cg, og = c / groups, o / groups
    let sh, sw = spec.StrideH, spec.StrideW
    let y: ^T[] = Array.zeroCreate (Shape.numel yShape)

    for b in 0 .. n - 1 do
        for g in 0 .. groups - 1 do
            for oc in g * og .. g * og + og - 1 do
                let yPlane = (b * o + oc) * oh * ow

                for ci in 0 .. cg - 1 do
                    let xPlane = (b * c + g * cg + ci) * h * wd
                    let wKernel = (oc * cg + ci) * kh * kw

                    for p in 0 .. kh - 1 do
                        let offH = p * spec.DilationH - spec.PadTop
                        let struct (iLo, iHi) = validRange offH sh h oh

                        for q in 0 .. kw - 1 do
                            let offW = q * spec.DilationW - spec.PadLeft
                            let struct (jLo, jHi) = validRange offW sw wd ow
                            let wv = w.[wKernel + p * kw + q]

                            for i in iLo .. iHi - 1 do
                                // Input index of output column j is xRow + j * sw.
                                let xRow = xPlane + (i * sh + offH) * wd + offW
                                let yRow = yPlane + i * ow

                                if sw = 1 then
                                    for j in jLo .. jHi - 1 do
                                        y.[yRow + j] <- y.[yRow + j] + wv * x.[xRow + j]
                                else
                                    for j in jLo .. jHi - 1 do
                                        y.[yRow + j] <- y.[yRow + j] + wv * x.[xRow + j * sw]

    y

/// <summary>
/// The adjoint of <see cref="conv2d"/> with respect to its input (a transposed convolution):
/// <c>dx[n, g·Cg + c, a, b] = Σ g[n, o, i, j] · w[o, c, p, q]</c> over every <c>(o, i, j, p, q)</c> with
/// <c>i·sH − padTop + p·dH = a</c> and <c>j·sW − padLeft + q·dW = b</c>, <c>o</c> in group <c>g</c>.
/// Equivalently <c>⟨conv2d(x, w), g⟩ = ⟨x, conv2dInputGrad(g, w)⟩</c> for all <c>x</c>.
/// </summary>
/// <remarks>
/// Shapes: <c>g</c> must have shape <c>ConvSpec.outputShape spec xShape wShape</c>; the result has shape
/// <c>xShape</c>. Input positions no output reads (the remainder when the stride does not divide
/// the extent, e.g. ConvTranspose2d's output_padding) receive zero.
/// </remarks>
let inline conv2dInputGrad (spec: ConvSpec) (g: ^T[]) (gShape: int[]) (w: ^T[]) (wShape: int[]) (xShape: int[]) : ^T[] =
    let op = "conv2dInputGrad"
    checkGradShape op spec xShape wShape gShape
    checkLength op "gradient" g.Length gShape
    checkLength op "weight" w.Length wShape
    let n, c, h, wd = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
    let o, kh, kw = wShape.[0], wShape.[2], wShape.[3]
    let oh, ow = gShape.[2], gShape.[3]
    let groups = spec.Groups
    let cg, og = c / groups, o / groups
    let sh, sw = spec.StrideH, spec.StrideW
    let dx: ^T[] = Array.zeroCreate (Shape.numel xShape)

    for b in 0 .. n - 1 do
        for grp in 0 .. groups - 1 do
            // Input channel outermost so one dx plane stays hot while every output channel scatters into it.
            for ci in 0 .. cg - 1 do
                let xPlane = (b * c + grp * cg + ci) * h * wd

                for oc in grp * og .. grp * og + og - 1 do
                    let gPlane = (b * o + oc) * oh * ow
                    let wKernel = (oc * cg + ci) * kh * kw

                    for p in 0 .. kh - 1 do
                        let offH = p * spec.DilationH - spec.PadTop
                        let struct (iLo, iHi) = validRange offH sh h oh

                        for q in 0 .. kw - 1 do
                            let offW = q * spec.DilationW - spec.PadLeft
                            let struct (jLo, jHi) = validRange offW sw wd ow
                            let wv = w.[wKernel + p * kw + q]

                            for i in iLo .. iHi - 1 do
                                let xRow = xPlane + (i * sh + offH) * wd + offW
                                let gRow = gPlane + i * ow

                                if sw = 1 then
                                    for j in jLo .. jHi - 1 do
                                        dx.[xRow + j] <- dx.[xRow + j] + wv * g.[gRow + j]
                                else
                                    for j in jLo .. jHi - 1 do
                                        let xi = xRow + j * sw
                                        dx.[xi] <- dx.[xi] + wv * g.[gRow + j]

    dx

/// <summary>
/// The gradient of <see cref="conv2d"/> with respect to its weight:
/// <c>dw[o, c, p, q] = Σ_{n, i, j} g[n, o, i, j] · x[n, grp·Cg + c, i·sH − padTop + p·dH, j·sW − padLeft + q·dW]</c>
/// (padding reads as zero, <c>grp</c> the group of <c>o</c>). Equivalently
/// <c>⟨conv2d(x, w), g⟩ = ⟨w, conv2dWeightGrad(x, g)⟩</c> for all <c>w</c>.
/// </summary>
/// <remarks>
/// Shapes: <c>x</c> is <c>xShape = [N, C, H, W]</c>, <c>g</c> must have shape
/// <c>ConvSpec.outputShape spec xShape wShape</c>; the result has shape <c>wShape = [O, C/groups, kH, kW]</c>.
/// </remarks>
let inline conv2dWeightGrad
    (spec: ConvSpec)
    (x: ^T[])
    (xShape: int[])
    (g: ^T[])
    (gShape: int[])
    (wShape: int[])
    : ^T[] =
    let op = "conv2dWeightGrad"
    checkGradShape op spec xShape wShape gShape
    checkLength op "input" x.Length xShape
    checkLength op "gradient" g.Length gShape
    let n, c, h, wd = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
    let o, kh, kw = wShape.[0], wShape.[2], wShape.[3]
    let oh, ow = gShape.[2], gShape.[3]
    let groups = spec.Groups
    let cg, og = c / groups, o / groups
    let sh, sw = spec.StrideH, spec.StrideW
    let dw: ^T[] = Array.zeroCreate (Shape.numel wShape)

    for b in 0 .. n - 1 do
        for grp in 0 .. groups - 1 do
            for oc in grp * og .. grp * og + og - 1 do
                let gPlane = (b * o + oc) * oh * ow

                for ci in 0 .. cg - 1 do
                    let xPlane = (b * c + grp * cg + ci) * h * wd
                    let wKernel = (oc * cg + ci) * kh * kw

                    for p in 0 .. kh - 1 do
                        let offH = p * spec.DilationH - spec.PadTop
                        let struct (iLo, iHi) = validRange offH sh h oh

                        for q in 0 .. kw - 1 do
                            let offW = q * spec.DilationW - spec.PadLeft
                            let struct (jLo, jHi) = validRange offW sw wd ow
                            // Accumulate the tap in a local: one store per tap and sample.
                            let mutable acc = LanguagePrimitives.GenericZero< ^T>

                            for i in iLo .. iHi - 1 do
                                let xRow = xPlane + (i * sh + offH) * wd + offW
                                let gRow = gPlane + i * ow

                                if sw = 1 then
                                    for j in jLo .. jHi - 1 do
                                        acc <- acc + g.[gRow + j] * x.[xRow + j]
                                else
                                    for j in jLo .. jHi - 1 do
                                        acc <- acc + g.[gRow + j] * x.[xRow + j * sw]

                            let wi = wKernel + p * kw + q
                            dw.[wi] <- dw.[wi] + acc

    dw

/// <summary>
/// Max pooling by index: for every output element <c>[n, c, i, j]</c>, the flat index into <c>x</c> of
/// the maximum of the window <c>x[n, c, i·sH − padTop + p·dH, j·sW − padLeft + q·dW]</c>,
/// <c>0 ≤ p &lt; kh</c>, <c>0 ≤ q &lt; kw</c>. Padding positions count as −∞ and are never selected;
/// ties go to the first maximum in row-major window order; a NaN wins (the first NaN), so NaN
/// propagates as in PyTorch.
/// </summary>
/// <remarks>
/// Shapes: <c>x</c> is <c>xShape = [N, C, H, W]</c>; returns the indices and the output shape
/// <c>[N, C, oH, oW]</c> with <c>oH = ⌊(H + padTop + padBottom − dH(kh − 1) − 1) / sH⌋ + 1</c> (likewise oW).
/// <c>spec.Groups</c> is ignored. Throws <see cref="T:Gan.Functional.ShapeMismatchException"/> when
/// the output would be empty or some window lies wholly in the padding.
/// </remarks>
let inline maxPool2dIndices (kh: int) (kw: int) (spec: ConvSpec) (x: ^T[]) (xShape: int[]) : int[] * int[] =
    let op = "maxPool2d"

    if kh < 1 || kw < 1 then
        Shape.fail op (sprintf "kernel size must be >= 1, got %dx%d" kh kw)

    if xShape.Length <> 4 then
        Shape.fail op (sprintf "expected 4-D input [N,C,H,W], got %s" (Shape.show xShape))

    checkLength op "input" x.Length xShape
    let n, c, h, wd = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
    // A depthwise "weight" of the window's size reuses conv2d's validation and shape rule.
    let yShape =
        ConvSpec.outputShape op { spec with Groups = 1 } [| n; 1; h; wd |] [| 1; 1; kh; kw |]

    let oh, ow = yShape.[2], yShape.[3]
    let yShape = [| n; c; oh; ow |]
    let dh, dwl = spec.DilationH, spec.DilationW
    // Per output row (column): the in-range window taps [lo, hi) and the input coordinate of tap 0.
    // Taps are contiguous because the coordinate is monotone in the tap. Hoisted out of the planes.
    let rowLo = Array.zeroCreate oh
    let rowHi = Array.zeroCreate oh
    let rowBase = Array.zeroCreate oh

    for i in 0 .. oh - 1 do
        let start = i * spec.StrideH - spec.PadTop
        let struct (lo, hi) = validRange start dh h kh

        if hi <= lo then
            Shape.fail
                op
                (sprintf "output row %d's window lies wholly in the padding for input %s" i (Shape.show xShape))

        rowLo.[i] <- lo
        rowHi.[i] <- hi
        rowBase.[i] <- start

    let colLo = Array.zeroCreate ow
    let colHi = Array.zeroCreate ow
    let colBase = Array.zeroCreate ow

    for j in 0 .. ow - 1 do
        let start = j * spec.StrideW - spec.PadLeft
        let struct (lo, hi) = validRange start dwl wd kw

        if hi <= lo then
            Shape.fail
                op
                (sprintf "output column %d's window lies wholly in the padding for input %s" j (Shape.show xShape))

        colLo.[j] <- lo
        colHi.[j] <- hi
        colBase.[j] <- start

    let idx: int[] = Array.zeroCreate (n * c * oh * ow)
    let mutable out = 0

    for plane in 0 .. n * c - 1 do
        let xPlane = plane * h * wd

        for i in 0 .. oh - 1 do
            let pLo, pHi, r0 = rowLo.[i], rowHi.[i], rowBase.[i]

            for j in 0 .. ow - 1 do
                let qLo, qHi, c0 = colLo.[j], colHi.[j], colBase.[j]
                // Start from the first in-range tap, so no -infinity constant is needed.
                let mutable best = xPlane + (r0 + pLo * dh) * wd + c0 + qLo * dwl
                let mutable bestV = x.[best]

                for p in pLo .. pHi - 1 do
                    let xRow = xPlane + (r0 + p * dh) * wd + c0

                    for q in qLo .. qHi - 1 do
                        let xi = xRow + q * dwl
                        let v = x.[xi]
                        // Strict > keeps the first maximum; v <> v is NaN, taken once, then kept.
                        if v > bestV || (v <> v && bestV = bestV) then
                            best <- xi
                            bestV <- v

                idx.[out] <- best
                out <- out + 1

    idx, yShape

/// <summary>
/// The kernels instantiated at float64, compiled once and not inline.
/// </summary>
/// <remarks>
/// Why: an optimized build of another assembly (the tests, even with InternalsVisibleTo) cannot
/// inline `inline` values of this internal module (dotnet/fsharp#7110: their bodies are hidden
/// from its optimization data), so callers outside Gan.Functional use these. They also give
/// callers inside the library one shared instance instead of an inlined copy per call site.
/// </remarks>
module F64 =
    /// <see cref="conv2d"/> at float64.
    let conv2d spec (x: float[]) xShape (w: float[]) wShape : float[] = conv2d spec x xShape w wShape

    /// <see cref="conv2dInputGrad"/> at float64.
    let conv2dInputGrad spec (g: float[]) gShape (w: float[]) wShape xShape : float[] =
        conv2dInputGrad spec g gShape w wShape xShape

    /// <see cref="conv2dWeightGrad"/> at float64.
    let conv2dWeightGrad spec (x: float[]) xShape (g: float[]) gShape wShape : float[] =
        conv2dWeightGrad spec x xShape g gShape wShape

    /// <see cref="maxPool2dIndices"/> at float64.
    let maxPool2dIndices kh kw spec (x: float[]) xShape = maxPool2dIndices kh kw spec x xShape

/// The kernels instantiated at float32, compiled once and not inline (see <see cref="F64"/>).
module F32 =
    /// <see cref="conv2d"/> at float32.
    let conv2d spec (x: float32[]) xShape (w: float32[]) wShape : float32[] = conv2d spec x xShape w wShape

    /// <see cref="conv2dInputGrad"/> at float32.
    let conv2dInputGrad spec (g: float32[]) gShape (w: float32[]) wShape xShape : float32[] =
        conv2dInputGrad spec g gShape w wShape xShape

    /// <see cref="conv2dWeightGrad"/> at float32.
    let conv2dWeightGrad spec (x: float32[]) xShape (g: float32[]) gShape wShape : float32[] =
        conv2dWeightGrad spec x xShape g gShape wShape

    /// <see cref="maxPool2dIndices"/> at float32.
    let maxPool2dIndices kh kw spec (x: float32[]) xShape = maxPool2dIndices kh kw spec x xShape
