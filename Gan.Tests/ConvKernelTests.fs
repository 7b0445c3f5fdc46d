/// Tests of the reference conv/pool kernels (Gan.Functional.Kernels.ReferenceConv): conv2d against a naive
/// seven-loop definition, the two gradients as exact adjoints of conv2d, max pooling against a
/// direct scan, and a few hand-computed values.
module ConvKernelTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Kernels

/// One random convolution problem. `Seed` drives the data so a counterexample is replayable from
/// its printed record alone.
type ConvCase = {
    N: int
    C: int
    O: int
    H: int
    W: int
    KH: int
    KW: int
    Spec: ConvSpec
    Seed: int
} with

    member c.XShape = [| c.N; c.C; c.H; c.W |]
    member c.WShape = [| c.O; c.C / c.Spec.Groups; c.KH; c.KW |]

/// Output extent straight from the definition (independent of ConvSpec.outSize).
let private extent n padA padB k stride dilation =
    let span = n + padA + padB - dilation * (k - 1)
    if span < 1 then 0 else (span - 1) / stride + 1

let private specGen =
    gen {
        let! sh = Gen.choose (1, 3)
        let! sw = Gen.choose (1, 3)
        let! pt = Gen.choose (0, 2)
        let! pb = Gen.choose (0, 2)
        let! pl = Gen.choose (0, 2)
        let! pr = Gen.choose (0, 2)
        let! dh = Gen.choose (1, 2)
        let! dw = Gen.choose (1, 2)

        return {
            StrideH = sh
            StrideW = sw
            PadTop = pt
            PadBottom = pb
            PadLeft = pl
            PadRight = pr
            DilationH = dh
            DilationW = dw
            Groups = 1
        }
    }

/// Batch 1-2, groups 1-3 with 1-3 channels per group on each side, sizes 1-9, kernel 1-4,
/// stride 1-3, asymmetric padding 0-2, dilation 1-2; geometries with an empty output are regenerated.
let private convCaseGen =
    gen {
        let! n = Gen.choose (1, 2)
        let! groups = Gen.choose (1, 3)
        let! cg = Gen.choose (1, 3)
        let! og = Gen.choose (1, 3)
        let! h = Gen.choose (1, 9)
        let! w = Gen.choose (1, 9)
        let! kh = Gen.choose (1, 4)
        let! kw = Gen.choose (1, 4)
        let! spec = specGen
        let! seed = Gen.choose (0, Int32.MaxValue)

        return {
            N = n
            C = groups * cg
            O = groups * og
            H = h
            W = w
            KH = kh
            KW = kw
            Spec = { spec with Groups = groups }
            Seed = seed
        }
    }
    |> Gen.filter (fun c ->
        let s = c.Spec

        extent c.H s.PadTop s.PadBottom c.KH s.StrideH s.DilationH >= 1
        && extent c.W s.PadLeft s.PadRight c.KW s.StrideW s.DilationW >= 1)

let private randomData (rng: Random) (length: int) =
    Array.init length (fun _ -> rng.NextDouble() * 2.0 - 1.0)

let private dot (a: float[]) (b: float[]) =
    Array.fold2 (fun acc u v -> acc + u * v) 0.0 a b

/// The definition of conv2d, written for obviousness: seven nested loops, a bounds test for
/// padding, and flat indices spelled out. Returns the output and its shape.
let naiveConv2d (s: ConvSpec) (x: float[]) (xShape: int[]) (w: float[]) (wShape: int[]) =
    let n, c, h, wd = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
    let o, cg, kh, kw = wShape.[0], wShape.[1], wShape.[2], wShape.[3]
    let og = o / s.Groups
    let oh = extent h s.PadTop s.PadBottom kh s.StrideH s.DilationH
    let ow = extent wd s.PadLeft s.PadRight kw s.StrideW s.DilationW
    let y = Array.zeroCreate (n * o * oh * ow)

    for b in 0 .. n - 1 do
        for oc in 0 .. o - 1 do
            for i in 0 .. oh - 1 do
                for j in 0 .. ow - 1 do
                    for ci in 0 .. cg - 1 do
                        for p in 0 .. kh - 1 do
                            for q in 0 .. kw - 1 do
                                let ih = i * s.StrideH - s.PadTop + p * s.DilationH
                                let iw = j * s.StrideW - s.PadLeft + q * s.DilationW

                                if ih >= 0 && ih < h && iw >= 0 && iw < wd then
                                    let ic = (oc / og) * cg + ci
                                    let xv = x.[((b * c + ic) * h + ih) * wd + iw]
                                    let wv = w.[((oc * cg + ci) * kh + p) * kw + q]
                                    let yi = ((b * o + oc) * oh + i) * ow + j
                                    y.[yi] <- y.[yi] + xv * wv

    y, [| n; o; oh; ow |]

/// Max pooling by a direct scan of each window in row-major order: padding is skipped, a larger
/// value or the first NaN replaces the best. -1 marks a window with no in-range element.
let naiveMaxPool (kh: int) (kw: int) (s: ConvSpec) (x: float[]) (xShape: int[]) =
    let n, c, h, wd = xShape.[0], xShape.[1], xShape.[2], xShape.[3]
    let oh = extent h s.PadTop s.PadBottom kh s.StrideH s.DilationH
    let ow = extent wd s.PadLeft s.PadRight kw s.StrideW s.DilationW
    let idx = Array.create (n * c * oh * ow) -1

    for b in 0 .. n - 1 do
        for ch in 0 .. c - 1 do
            for i in 0 .. oh - 1 do
                for j in 0 .. ow - 1 do
                    let mutable best = -1

                    for p in 0 .. kh - 1 do
                        for q in 0 .. kw - 1 do
                            let ih = i * s.StrideH - s.PadTop + p * s.DilationH
                            let iw = j * s.StrideW - s.PadLeft + q * s.DilationW

                            if ih >= 0 && ih < h && iw >= 0 && iw < wd then
                                let xi = ((b * c + ch) * h + ih) * wd + iw

                                if
                                    best < 0
                                    || x.[xi] > x.[best]
                                    || (Double.IsNaN x.[xi] && not (Double.IsNaN x.[best]))
                                then
                                    best <- xi

                    idx.[((b * c + ch) * oh + i) * ow + j] <- best

    idx, [| n; c; oh; ow |]

let private convArb = Arb.fromGen convCaseGen

[<Fact>]
let ``conv2d equals a direct loop over random geometries in float64`` () =
    Prop.forAll convArb (fun case ->
        let rng = Random(case.Seed)
        let x = randomData rng (Shape.numel case.XShape)
        let w = randomData rng (Shape.numel case.WShape)
        let expected, expectedShape = naiveConv2d case.Spec x case.XShape w case.WShape
        let shape = ConvSpec.outputShape "conv2d" case.Spec case.XShape case.WShape
        let actual = ReferenceConv.F64.conv2d case.Spec x case.XShape w case.WShape

        shape = expectedShape
        && Array.forall2 (fun (a: float) e -> abs (a - e) <= 1e-9) actual expected)
    |> Prop.check "conv2d float64 vs direct loop"

[<Fact>]
let ``conv2d equals a direct loop over random geometries in float32`` () =
    Prop.forAll convArb (fun case ->
        let rng = Random(case.Seed)
        let x = randomData rng (Shape.numel case.XShape) |> Array.map float32
        let w = randomData rng (Shape.numel case.WShape) |> Array.map float32
        let x64, w64 = Array.map float x, Array.map float w
        let expected, _ = naiveConv2d case.Spec x64 case.XShape w64 case.WShape
        // Σ|x||w| per output bounds the rounding error of a float32 sum, so the tolerance is
        // relative to it rather than to a result that may cancel to near zero.
        let magnitude, _ =
            naiveConv2d case.Spec (Array.map abs x64) case.XShape (Array.map abs w64) case.WShape

        let actual = ReferenceConv.F32.conv2d case.Spec x case.XShape w case.WShape

        Array.zip3 actual expected magnitude
        |> Array.forall (fun (a, e, m) -> abs (float a - e) <= 1e-4 * m))
    |> Prop.check "conv2d float32 vs direct loop"

[<Fact>]
let ``conv2dInputGrad is the adjoint of conv2d in its input`` () =
    Prop.forAll convArb (fun case ->
        let rng = Random(case.Seed)
        let x = randomData rng (Shape.numel case.XShape)
        let w = randomData rng (Shape.numel case.WShape)
        let yShape = ConvSpec.outputShape "conv2d" case.Spec case.XShape case.WShape
        let y = randomData rng (Shape.numel yShape)
        // <conv2d(x, w), y> = <x, conv2dInputGrad(y, w)>
        let lhs = dot (ReferenceConv.F64.conv2d case.Spec x case.XShape w case.WShape) y

        let rhs =
            dot x (ReferenceConv.F64.conv2dInputGrad case.Spec y yShape w case.WShape case.XShape)

        abs (lhs - rhs) <= 1e-9 * (1.0 + abs lhs))
    |> Prop.check "conv2dInputGrad adjoint"

[<Fact>]
let ``conv2dWeightGrad is the adjoint of conv2d in its weight`` () =
    Prop.forAll convArb (fun case ->
        let rng = Random(case.Seed)
        let x = randomData rng (Shape.numel case.XShape)
        let w = randomData rng (Shape.numel case.WShape)
        let yShape = ConvSpec.outputShape "conv2d" case.Spec case.XShape case.WShape
        let y = randomData rng (Shape.numel yShape)
        // <conv2d(x, w), y> = <w, conv2dWeightGrad(x, y)>
        let lhs = dot (ReferenceConv.F64.conv2d case.Spec x case.XShape w case.WShape) y

        let rhs =
            dot w (ReferenceConv.F64.conv2dWeightGrad case.Spec x case.XShape y yShape case.WShape)

        abs (lhs - rhs) <= 1e-9 * (1.0 + abs lhs))
    |> Prop.check "conv2dWeightGrad adjoint"

[<Fact>]
let ``the float32 gradients agree with the float64 gradients`` () =
    Prop.forAll convArb (fun case ->
        let rng = Random(case.Seed)
        let yShape = ConvSpec.outputShape "conv2d" case.Spec case.XShape case.WShape
        let x = randomData rng (Shape.numel case.XShape) |> Array.map float32
        let w = randomData rng (Shape.numel case.WShape) |> Array.map float32
        let y = randomData rng (Shape.numel yShape) |> Array.map float32
        let x64, w64, y64 = Array.map float x, Array.map float w, Array.map float y
        // Each gradient element sums at most N·O·oH·oW ≤ 2·9·81 products of values in [-1, 1].
        let close (a: float32[]) (e: float[]) =
            Array.forall2 (fun (a: float32) e -> abs (float a - e) <= 1e-4 * (1.0 + abs e)) a e

        close
            (ReferenceConv.F32.conv2dInputGrad case.Spec y yShape w case.WShape case.XShape)
            (ReferenceConv.F64.conv2dInputGrad case.Spec y64 yShape w64 case.WShape case.XShape)
        && close
            (ReferenceConv.F32.conv2dWeightGrad case.Spec x case.XShape y yShape case.WShape)
            (ReferenceConv.F64.conv2dWeightGrad case.Spec x64 case.XShape y64 yShape case.WShape))
    |> Prop.check "float32 gradients vs float64"

// Hand-computed case. x = [[1,2,3],[4,5,6],[7,8,9]], w = [[1,2],[3,4]] (both 1x1 channel).
// Stride 1, no padding: y[0,0] = 1·1 + 2·2 + 4·3 + 5·4 = 37, y[0,1] = 2+6+15+24 = 47,
//   y[1,0] = 4+10+21+32 = 67, y[1,1] = 5+12+24+36 = 77.
// With g = ones(2x2), dx[a,b] sums the taps w[a-i, b-j] that reach (a,b):
//   [[1, 1+2, 2], [1+3, 1+2+3+4, 2+4], [3, 3+4, 4]] = [[1,3,2],[4,10,6],[3,7,4]],
// and dw[p,q] sums the 2x2 input block at (p,q): [[1+2+4+5, 2+3+5+6], [4+5+7+8, 5+6+8+9]] = [[12,16],[24,28]].
// Stride 2, padding 1 on every side (output 2x2): each window sees the taps that fall inside x:
//   (0,0): x[0,0]·w[1,1] = 4;  (0,1): x[0,1]·w[1,0] + x[0,2]·w[1,1] = 6 + 12 = 18;
//   (1,0): x[1,0]·w[0,1] + x[2,0]·w[1,1] = 8 + 28 = 36;  (1,1): 5·1 + 6·2 + 8·3 + 9·4 = 77.
let private handX = [| 1.0 .. 9.0 |]
let private handW = [| 1.0; 2.0; 3.0; 4.0 |]

[<Fact>]
let ``conv2d and its gradients match values computed by hand`` () =
    let xShape, wShape = [| 1; 1; 3; 3 |], [| 1; 1; 2; 2 |]
    let unit = ConvSpec.unit
    Assert.Equal<float[]>([| 37.0; 47.0; 67.0; 77.0 |], ReferenceConv.F64.conv2d unit handX xShape handW wShape)
    let ones = Array.create 4 1.0
    let gShape = [| 1; 1; 2; 2 |]

    Assert.Equal<float[]>(
        [| 1.0; 3.0; 2.0; 4.0; 10.0; 6.0; 3.0; 7.0; 4.0 |],
        ReferenceConv.F64.conv2dInputGrad unit ones gShape handW wShape xShape
    )

    Assert.Equal<float[]>(
        [| 12.0; 16.0; 24.0; 28.0 |],
        ReferenceConv.F64.conv2dWeightGrad unit handX xShape ones gShape wShape
    )

    let strided = ConvSpec.create 2 1 1 1
    Assert.Equal<int[]>(gShape, ConvSpec.outputShape "conv2d" strided xShape wShape)
    Assert.Equal<float[]>([| 4.0; 18.0; 36.0; 77.0 |], ReferenceConv.F64.conv2d strided handX xShape handW wShape)

    Assert.Equal<float32[]>(
        [| 4.0f; 18.0f; 36.0f; 77.0f |],
        ReferenceConv.F32.conv2d strided (Array.map float32 handX) xShape (Array.map float32 handW) wShape
    )

[<Fact>]
let ``a two-group conv keeps its groups apart`` () =
    // Hand-computed: two 1x1 input channels [1,2] and [3,4] (1x2 each), 1x1 kernels 10 and 100,
    // groups = 2, so output channel k sees only input channel k: [10,20] and [300,400].
    let spec = { ConvSpec.unit with Groups = 2 }

    let y =
        ReferenceConv.F64.conv2d spec [| 1.0; 2.0; 3.0; 4.0 |] [| 1; 2; 1; 2 |] [| 10.0; 100.0 |] [| 2; 1; 1; 1 |]

    Assert.Equal<float[]>([| 10.0; 20.0; 300.0; 400.0 |], y)

[<Fact>]
let ``the kernels reject mismatched shapes with the operation's name`` () =
    let xShape, wShape = [| 1; 1; 3; 3 |], [| 1; 1; 2; 2 |]

    let e =
        Assert.Throws<ShapeMismatchException>(fun () ->
            ReferenceConv.F64.conv2dInputGrad ConvSpec.unit (Array.zeroCreate 9) [| 1; 1; 3; 3 |] handW wShape xShape
            |> ignore)

    Assert.Equal("conv2dInputGrad", e.op)

    Assert.Throws<ShapeMismatchException>(fun () ->
        ReferenceConv.F64.conv2dWeightGrad ConvSpec.unit handX xShape (Array.zeroCreate 4) [| 1; 2; 2; 2 |] wShape
        |> ignore)
    |> ignore

    Assert.Throws<ShapeMismatchException>(fun () ->
        ReferenceConv.F64.conv2d ConvSpec.unit handX xShape handW [| 1; 2; 2; 2 |]
        |> ignore)
    |> ignore

type PoolCase = {
    N: int
    C: int
    H: int
    W: int
    KH: int
    KW: int
    Spec: ConvSpec
    Seed: int
}

/// Pool geometries as for conv (channels 1-3); values are small integers, so ties are common,
/// and one case in four sprinkles NaNs (about one element in twenty).
let private poolCaseGen =
    gen {
        let! n = Gen.choose (1, 2)
        let! c = Gen.choose (1, 3)
        let! h = Gen.choose (1, 9)
        let! w = Gen.choose (1, 9)
        let! kh = Gen.choose (1, 4)
        let! kw = Gen.choose (1, 4)
        let! spec = specGen
        let! seed = Gen.choose (0, Int32.MaxValue)

        return {
            N = n
            C = c
            H = h
            W = w
            KH = kh
            KW = kw
            Spec = spec
            Seed = seed
        }
    }
    |> Gen.filter (fun c ->
        let s = c.Spec

        extent c.H s.PadTop s.PadBottom c.KH s.StrideH s.DilationH >= 1
        && extent c.W s.PadLeft s.PadRight c.KW s.StrideW s.DilationW >= 1)

[<Fact>]
let ``maxPool2dIndices equals a direct scan over random geometries`` () =
    Prop.forAll (Arb.fromGen poolCaseGen) (fun case ->
        let rng = Random(case.Seed)
        let xShape = [| case.N; case.C; case.H; case.W |]

        let withNaN = rng.Next 4 = 0

        let x =
            Array.init (Shape.numel xShape) (fun _ ->
                if withNaN && rng.Next 20 = 0 then
                    nan
                else
                    float (rng.Next(-2, 3)))

        let expected, expectedShape = naiveMaxPool case.KH case.KW case.Spec x xShape
        // Groups is documented as ignored: a non-unit value must not matter.
        let spec = { case.Spec with Groups = 3 }

        if Array.contains -1 expected then
            // Some window lies wholly in the padding: the kernel must refuse, in both dtypes.
            let throws f =
                try
                    f () |> ignore
                    false
                with :? ShapeMismatchException ->
                    true

            throws (fun () -> ReferenceConv.F64.maxPool2dIndices case.KH case.KW spec x xShape)
            && throws (fun () -> ReferenceConv.F32.maxPool2dIndices case.KH case.KW spec (Array.map float32 x) xShape)
        else
            let idx64, shape64 =
                ReferenceConv.F64.maxPool2dIndices case.KH case.KW spec x xShape

            let idx32, shape32 =
                ReferenceConv.F32.maxPool2dIndices case.KH case.KW spec (Array.map float32 x) xShape

            idx64 = expected
            && idx32 = expected
            && shape64 = expectedShape
            && shape32 = expectedShape)
    // 200 cases: roughly two in five have a window wholly in the padding and test the refusal.
    |> Prop.checkN "maxPool2dIndices vs direct scan" 200

[<Fact>]
let ``maxPool2dIndices picks known maxima and the first of ties`` () =
    // Hand-picked 4x4 input, 2x2 windows, stride 2:
    //   [[1, 5, 2, 0],     window (0,0) = {1,5,3,4}: 5 at flat 1
    //    [3, 4, 8, 8],     window (0,1) = {2,0,8,8}: first 8 at flat 6
    //    [0, 0, 1, 1],     window (1,0) = {0,0,9,0}: 9 at flat 12
    //    [9, 0, 1, 1]]     window (1,1) = {1,1,1,1}: first 1 at flat 10
    let x = [|
        1.0
        5.0
        2.0
        0.0
        3.0
        4.0
        8.0
        8.0
        0.0
        0.0
        1.0
        1.0
        9.0
        0.0
        1.0
        1.0
    |]

    let idx, shape =
        ReferenceConv.F64.maxPool2dIndices 2 2 (ConvSpec.create 2 0 1 1) x [| 1; 1; 4; 4 |]

    Assert.Equal<int[]>([| 1; 1; 2; 2 |], shape)
    Assert.Equal<int[]>([| 1; 6; 12; 10 |], idx)
    // Padding 1, stride 2, 2x2 windows on a 2x2 input of negatives: each window holds one real
    // element, so padding (-infinity, not 0) must never win.
    let neg = [| -4.0f; -3.0f; -2.0f; -1.0f |]

    let idx, shape =
        ReferenceConv.F32.maxPool2dIndices 2 2 (ConvSpec.create 2 1 1 1) neg [| 1; 1; 2; 2 |]

    Assert.Equal<int[]>([| 1; 1; 2; 2 |], shape)
    Assert.Equal<int[]>([| 0; 1; 2; 3 |], idx)
