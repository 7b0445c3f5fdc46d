/// The fast CPU backend against the reference kernels: same inputs, results equal within
/// float32 rounding. Runs with OpenBLAS when installed and with the managed GEMM when
/// GAN_DISABLE_OPENBLAS=1 (CI runs both).
module CpuBackendTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Kernels

let private reference = ReferenceBackend.Instance :> IBackend
let private fast = CpuBackend(2) :> IBackend
let private knobs = CpuKnobs.FromEnvironment()

let private data (key: uint64) (shape: int[]) =
    match (Random.normal (Random.key key) Float32 shape).Storage with
    | Storage.F32 a -> RawTensor.ofFloat32 shape a
    | _ -> failwith "unreachable"

/// |a − b| ≤ tol·(1 + max|b|) elementwise (sums of many terms cancel, so the scale is the
/// tensor's, not the element's), with the worst offender in the message.
let private close (tol: float) (what: string) (a: RawTensor) (b: RawTensor) =
    Assert.Equal<int[]>(b.Shape, a.Shape)
    let x, y = RawTensor.toFloat64Array a, RawTensor.toFloat64Array b
    let scale = 1.0 + (if y.Length = 0 then 0.0 else Array.max (Array.map abs y))
    let mutable worst = 0.0
    let mutable at = -1

    for i in 0 .. x.Length - 1 do
        let e = abs (x.[i] - y.[i]) / scale

        if not (e <= worst) then
            worst <- e
            at <- i

    if worst > tol then
        failwithf "%s: element %d differs: fast %g vs reference %g (relative error %g)" what at x.[at] y.[at] worst

let private genShape rank =
    Gen.arrayOfLength rank (Gen.choose (1, 7))

/// A shape and a second shape broadcastable against it (dimensions dropped or set to 1), with
/// dimensions up to `maxDim` (IlgpuKernelTests takes them smaller).
let genBroadcastPairUpTo (maxDim: int) =
    gen {
        let! rank = Gen.choose (1, 4)
        let! s = Gen.arrayOfLength rank (Gen.choose (1, maxDim))
        let! drop = Gen.choose (0, rank - 1)
        let! ones = Gen.arrayOfLength rank (Gen.elements [ false; false; true ])
        let t = s |> Array.mapi (fun i d -> if ones.[i] then 1 else d) |> Array.skip drop
        let! swap = Gen.elements [ false; true ]
        return if swap then t, s else s, t
    }

let private genBroadcastPair = genBroadcastPairUpTo 7

[<Fact>]
let ``elementwise unary kernels agree with the reference`` () =
    let x = data 1UL [| 3; 70_001 |]

    let positive = {
        x with
            Storage = Storage.F32(RawTensor.toFloat32Array x |> Array.map (fun v -> abs v + 0.1f))
    }

    for op in [ Neg; Exp; Tanh; Sigmoid; Abs; Sign ] do
        close 1e-5 (sprintf "%A" op) (fast.Unary(op, x)) (reference.Unary(op, x))

    for op in [ Log; Sqrt ] do
        close 1e-5 (sprintf "%A" op) (fast.Unary(op, positive)) (reference.Unary(op, positive))

[<Fact>]
let ``leakyRelu and its adjoint agree with the reference, zeros included`` () =
    // 70,001 elements: vector body, scalar tail and the parallel split; exact zeros take the α side
    let x0 = data 3UL [| 70_001 |]
    let xs = RawTensor.toFloat32Array x0
    xs.[0] <- 0.0f
    xs.[70_000] <- 0.0f
    let x = RawTensor.ofFloat32 [| 70_001 |] xs
    let g = data 4UL [| 70_001 |]

    for alpha in [ 0.0; 0.2; 1.5 ] do
        close 0.0 (sprintf "leakyRelu %g" alpha) (fast.LeakyRelu(x, alpha)) (reference.LeakyRelu(x, alpha))

        close
            0.0
            (sprintf "leakyRelu backward %g" alpha)
            (fast.LeakyReluBackward(g, x, alpha))
            (reference.LeakyReluBackward(g, x, alpha))

    let y = RawTensor.toFloat32Array (fast.LeakyRelu(x, 0.2))
    Assert.Equal(0.0f, y.[0])
    // known values: x for x > 0, 0.2x otherwise
    for i in 1..9 do
        Assert.Equal((if xs.[i] > 0.0f then xs.[i] else 0.2f * xs.[i]), y.[i])

[<Fact>]
let ``broadcast binary kernels agree with the reference over random shapes`` () =
    Prop.check "broadcast binary kernels agree"
    <| Prop.forAll (Arb.fromGen genBroadcastPair) (fun (sa, sb) ->
        let a = data 2UL sa

        let b = {
            (data 3UL sb) with
                Storage = Storage.F32(RawTensor.toFloat32Array (data 3UL sb) |> Array.map (fun v -> v + 3.0f))
        }

        let out = Shape.broadcast "test" sa sb

        for op in [ Add; Sub; Mul; Div; Maximum; Minimum ] do
            close 1e-6 (sprintf "%A %A %A" op sa sb) (fast.Binary(op, a, b, out)) (reference.Binary(op, a, b, out))

            close
                1e-6
                (sprintf "%A %A %A (swapped)" op sb sa)
                (fast.Binary(op, b, a, out))
                (reference.Binary(op, b, a, out)))

[<Fact>]
let ``vectorised comparisons give the reference's 0/1 masks, ties and scalars included`` () =
    // values rounded to halves so that equal elements (ties) are common
    let rounded key shape =
        let r = data key shape

        {
            r with
                Storage = Storage.F32(RawTensor.toFloat32Array r |> Array.map (fun v -> MathF.Round(v * 2.0f) / 2.0f))
        }

    Prop.check "comparisons agree"
    <| Prop.forAll (Arb.fromGen genBroadcastPair) (fun (sa, sb) ->
        let a, b = rounded 6UL sa, rounded 7UL sb
        let out = Shape.broadcast "test" sa sb

        for op in [ Equal; Less; LessEqual; Greater; GreaterEqual ] do
            close 0.0 (sprintf "%A %A %A" op sa sb) (fast.Binary(op, a, b, out)) (reference.Binary(op, a, b, out))

            close
                0.0
                (sprintf "%A %A %A (swapped)" op sb sa)
                (fast.Binary(op, b, a, out))
                (reference.Binary(op, b, a, out)))

    let x = rounded 8UL [| 3; 70_001 |]
    let zero = RawTensor.ofFloat32 [||] [| 0.0f |]

    for op in [ Equal; Less; LessEqual; Greater; GreaterEqual ] do
        close
            0.0
            (sprintf "%A against 0" op)
            (fast.Binary(op, x, zero, x.Shape))
            (reference.Binary(op, x, zero, x.Shape))

[<Fact>]
let ``strided views (permutes, broadcasts, slices) agree with the reference`` () =
    let x = data 9UL [| 4; 5; 6; 70 |]
    let big = data 10UL [| 64; 32; 1; 1 |]
    let image = data 11UL [| 64; 16; 14; 14 |]

    let cases = [
        "nearest upsampling ×2", image, 0, [| 3136; 196; 14; 0; 1; 0 |], [| 64; 16; 14; 2; 14; 2 |]
        "permute", x, 0, [| 420; 2100; 70; 1 |], [| 5; 4; 6; 70 |]
        "expand", big, 0, [| 32; 1; 0; 0 |], [| 64; 32; 40; 40 |]
        "slice", x, 2 * 70 + 3, [| 2100; 420; 70; 1 |], [| 4; 5; 3; 60 |]
        "transpose last two", x, 0, [| 2100; 420; 1; 6 |], [| 4; 5; 70; 6 |]
    ]

    for name, t, offset, strides, shape in cases do
        close 0.0 name (fast.View(t, offset, strides, shape)) (reference.View(t, offset, strides, shape))

[<Fact>]
let ``the nearest-upsampling gradient (sums of 2x2 blocks) agrees with the reference`` () =
    // widths 19 and 14: vector blocks of eight outputs and scalar tails; 64x64x14 rows split
    // across threads
    for shape in [ [| 3; 5; 11; 2; 19; 2 |]; [| 64; 64; 14; 2; 14; 2 |]; [| 2; 2; 3 |] ] do
        let x = data 15UL shape
        let axes = [| shape.Length - 3; shape.Length - 1 |]
        close 1e-6 (sprintf "sum %A" shape) (fast.Reduce(ReduceSum, x, axes)) (reference.Reduce(ReduceSum, x, axes))

[<Fact>]
let ``large broadcast binary kernels split across threads agree with the reference`` () =
    let a = data 4UL [| 64; 32; 40; 40 |]
    let b = data 5UL [| 1; 32; 1; 1 |]
    let out = a.Shape

    for op in [ Add; Mul ] do
        close 1e-6 (sprintf "%A" op) (fast.Binary(op, a, b, out)) (reference.Binary(op, a, b, out))

[<Fact>]
let ``sum and max reductions agree with the reference over random axes`` () =
    Prop.check "reductions agree"
    <| Prop.forAll
        (Arb.fromGen (
            gen {
                let! rank = Gen.choose (1, 4)
                let! s = genShape rank
                let! mask = Gen.arrayOfLength rank (Gen.elements [ true; false ])

                return
                    s,
                    [|
                        for i in 0 .. rank - 1 do
                            if mask.[i] then
                                i
                    |]
            }
        ))
        (fun (s, axes) ->
            let axes = if axes.Length = 0 then [| 0 |] else axes
            let x = data 6UL s

            for op in [ ReduceSum; ReduceMax ] do
                close
                    1e-5
                    (sprintf "%A %A over %A" op s axes)
                    (fast.Reduce(op, x, axes))
                    (reference.Reduce(op, x, axes)))

[<Fact>]
let ``the gradient of nearest upsampling (sums of short runs) agrees with the reference`` () =
    // [N, C, H, 2, W, 2] summed over the two ×2 axes: big enough to split across threads
    let g = data 12UL [| 64; 32; 14; 2; 14; 2 |]

    for op in [ ReduceSum; ReduceMax ] do
        close 1e-5 (sprintf "%A" op) (fast.Reduce(op, g, [| 3; 5 |])) (reference.Reduce(op, g, [| 3; 5 |]))

    // a kept short innermost run: [N, 2, W, 3] summed over the batch and the 2
    let h = data 13UL [| 512; 2; 40; 3 |]
    close 1e-4 "kept short run" (fast.Reduce(ReduceSum, h, [| 0; 1 |])) (reference.Reduce(ReduceSum, h, [| 0; 1 |]))

[<Fact>]
let ``batched matmul with transposes agrees with the reference`` () =
    Prop.check "matmul agrees"
    <| Prop.forAll
        (Arb.fromGen (
            gen {
                let! m = Gen.choose (1, 40)
                let! n = Gen.choose (1, 40)
                let! k = Gen.choose (1, 40)
                let! ta = Gen.elements [ false; true ]
                let! tb = Gen.elements [ false; true ]
                let! batchA = Gen.elements [ [||]; [| 3 |]; [| 1 |]; [| 2; 3 |] ]
                let! batchB = Gen.elements [ [||]; [| 3 |]; [| 1 |] ]
                return m, n, k, ta, tb, batchA, batchB
            }
        ))
        (fun (m, n, k, ta, tb, batchA, batchB) ->
            let a = data 7UL (Array.append batchA (if ta then [| k; m |] else [| m; k |]))
            let b = data 8UL (Array.append batchB (if tb then [| n; k |] else [| k; n |]))
            let out = Array.append (Shape.broadcast "test" batchA batchB) [| m; n |]

            close
                1e-5
                (sprintf "%dx%dx%d %b %b" m n k ta tb)
                (fast.MatMul(a, ta, b, tb, out))
                (reference.MatMul(a, ta, b, tb, out)))

[<Fact>]
let ``Adam over many parameters in place agrees with the reference, piece boundaries inside parameters`` () =
    // 70K + 3 + 40K + 17 floats: past the parallel threshold, so pieces cut through parameters
    let shapes = [| [| 700; 100 |]; [| 3 |]; [| 40; 1000 |]; [| 17 |] |]

    let c = {
        Lr = 1e-3
        Beta1 = 0.5
        Beta2 = 0.999
        Eps = 1e-8
        WeightDecay = 0.01
        Decoupled = false
        BiasCorrection1 = 1.0 - 0.5 ** 3.0
        BiasCorrection2 = 1.0 - 0.999 ** 3.0
    }

    let make seed =
        shapes |> Array.mapi (fun i s -> data (seed + uint64 i) s)

    let ps, gs, ms = make 31UL, make 41UL, make 51UL
    // second moments are non-negative
    let vs =
        make 61UL
        |> Array.map (fun t -> RawTensor.ofFloat32 t.Shape (RawTensor.toFloat32Array t |> Array.map abs))

    let expected =
        Array.init shapes.Length (fun i -> (reference :?> IFusedOptimizer).AdamStep(ps.[i], gs.[i], ms.[i], vs.[i], c))

    (fast :?> IInPlaceOptimizer).AdamStepsInPlace(ps, gs, ms, vs, c)

    for i in 0 .. shapes.Length - 1 do
        let p', m', v' = expected.[i]
        close 1e-6 (sprintf "p %d" i) ps.[i] p'
        close 1e-6 (sprintf "m %d" i) ms.[i] m'
        close 1e-6 (sprintf "v %d" i) vs.[i] v'

[<Fact>]
let ``products split over the engine's threads agree with the reference`` () =
    // every product takes the split path (SmallGemm 1); with both slicings (rows when m ≥ n,
    // 16-column slices otherwise) and every transpose
    let split =
        CpuBackend(
            3,
            {
                CpuKnobs.Default with
                    SmallGemm = 1L
                    GemmSplit = true
            }
        )
        :> IBackend

    Prop.check "split matmul agrees"
    <| Prop.forAll
        (Arb.fromGen (
            gen {
                let! m = Gen.choose (1, 70)
                let! n = Gen.choose (1, 70)
                let! k = Gen.choose (1, 40)
                let! ta = Gen.elements [ false; true ]
                let! tb = Gen.elements [ false; true ]
                let! batch = Gen.elements [ [||]; [| 2 |] ]
                return m, n, k, ta, tb, batch
            }
        ))
        (fun (m, n, k, ta, tb, batch) ->
            let a = data 17UL (Array.append batch (if ta then [| k; m |] else [| m; k |]))
            let b = data 18UL (Array.append batch (if tb then [| n; k |] else [| k; n |]))
            let out = Array.append batch [| m; n |]

            close
                1e-5
                (sprintf "%dx%dx%d %b %b" m n k ta tb)
                (split.MatMul(a, ta, b, tb, out))
                (reference.MatMul(a, ta, b, tb, out)))

[<Fact>]
let ``the managed GEMM agrees with the BLAS in use`` () =
    let rnd = Random(5)

    for (m, n, k) in [ (1, 1, 1); (17, 33, 65); (128, 256, 100); (300, 7, 513) ] do
        for ta in [ false; true ] do
            for tb in [ false; true ] do
                let a = Array.init (m * k) (fun _ -> float32 (rnd.NextDouble() - 0.5))
                let b = Array.init (k * n) (fun _ -> float32 (rnd.NextDouble() - 0.5))
                let c1 = Array.zeroCreate (m * n)
                let c2 = Array.create (m * n) 1.0f
                Blas.sgemm knobs ta tb m n k a 0 b 0 c1 0 false
                Blas.managedGemm ta tb m n k a 0 b 0 c2 0 false

                close
                    1e-5
                    (sprintf "gemm %dx%dx%d %b %b" m n k ta tb)
                    (RawTensor.ofFloat32 [| m * n |] c2)
                    (RawTensor.ofFloat32 [| m * n |] c1)

/// Random conv geometries, including groups, strides, dilation and asymmetric padding: up to
/// `maxBatch` images of 3 to `maxSide` pixels a side (IlgpuKernelTests takes them smaller).
let genConvUpTo (maxBatch: int) (maxSide: int) =
    gen {
        let! n = Gen.choose (1, maxBatch)
        let! groups = Gen.choose (1, 2)
        let! cg = Gen.choose (1, 3)
        let! og = Gen.choose (1, 3)
        let! h = Gen.choose (3, maxSide)
        let! w = Gen.choose (3, maxSide)
        let! k = Gen.choose (1, 4)
        let! s = Gen.choose (1, 3)
        let! d = Gen.choose (1, 2)
        let! pads = Gen.arrayOfLength 4 (Gen.choose (0, 2))

        let spec = {
            StrideH = s
            StrideW = s
            PadTop = pads.[0]
            PadBottom = pads.[1]
            PadLeft = pads.[2]
            PadRight = pads.[3]
            DilationH = d
            DilationW = d
            Groups = groups
        }

        return spec, [| n; cg * groups; h; w |], [| og * groups; cg; k; k |]
    }
    |> Gen.filter (fun (spec, x, w) ->
        ConvSpec.outSize x.[2] spec.PadTop spec.PadBottom w.[2] spec.StrideH spec.DilationH
        >= 1
        && ConvSpec.outSize x.[3] spec.PadLeft spec.PadRight w.[3] spec.StrideW spec.DilationW
           >= 1)

/// The fast conv2d and both adjoints against the reference on random data from `seed`.
let private convAgrees (seed: uint64) (spec: ConvSpec) (xs: int[]) (ws: int[]) =
    let x = data seed xs
    let w = data (seed + 1UL) ws
    let y = reference.Conv2d(x, w, spec)
    close 1e-5 (sprintf "conv2d %A %A %A" spec xs ws) (fast.Conv2d(x, w, spec)) y
    let g = data (seed + 2UL) y.Shape
    close 1e-5 "input grad" (fast.Conv2dInputGrad(g, w, spec, xs)) (reference.Conv2dInputGrad(g, w, spec, xs))
    close 1e-5 "weight grad" (fast.Conv2dWeightGrad(x, g, spec, ws)) (reference.Conv2dWeightGrad(x, g, spec, ws))

[<Fact>]
let ``im2col convolutions and both adjoints agree with the reference`` () =
    Prop.checkN "im2col conv agrees" 60
    <| Prop.forAll (Arb.fromGen (genConvUpTo 3 11)) (fun (spec, xs, ws) -> convAgrees 9UL spec xs ws)

/// One output channel at stride 1: rectangular kernels, paddings up to k − 1 per side, widths
/// below, at and above one vector (8 or 16 floats), so every block and tail path runs.
let private genSingleChannelConv =
    gen {
        let! n = Gen.choose (1, 3)
        let! c = Gen.choose (1, 9)
        let! h = Gen.choose (1, 12)
        let! w = Gen.choose (1, 35)
        let! kh = Gen.choose (1, 5)
        let! kw = Gen.choose (1, 5)
        let! pt = Gen.choose (0, kh - 1)
        let! pb = Gen.choose (0, kh - 1)
        let! pl = Gen.choose (0, kw - 1)
        let! pr = Gen.choose (0, kw - 1)

        let spec = {
            ConvSpec.unit with
                PadTop = pt
                PadBottom = pb
                PadLeft = pl
                PadRight = pr
        }

        return spec, [| n; c; h; w |], [| 1; c; kh; kw |]
    }
    |> Gen.filter (fun (spec, x, w) ->
        x.[2] + spec.PadTop + spec.PadBottom >= w.[2]
        && x.[3] + spec.PadLeft + spec.PadRight >= w.[3])

[<Fact>]
let ``one-output-channel convolutions and both adjoints agree with the reference`` () =
    Prop.checkN "single-channel conv agrees" 80
    <| Prop.forAll (Arb.fromGen genSingleChannelConv) (fun (spec, xs, ws) ->
        Assert.True(SingleChannelConv.applies spec ws)
        convAgrees 12UL spec xs ws)

/// No padding and a 1×1 output: kernels as large as the image, or smaller by less than the
/// stride (one window at the top left; valid64's 5×5 stride-3 layer on 6×6).
let private genDenseConv =
    gen {
        let! n = Gen.choose (1, 5)
        let! c = Gen.choose (1, 40)
        let! o = Gen.choose (1, 9)
        let! kh = Gen.choose (1, 5)
        let! kw = Gen.choose (1, 5)
        let! stride = Gen.choose (1, 3)
        let! extraH = Gen.choose (0, stride - 1)
        let! extraW = Gen.choose (0, stride - 1)
        return ConvSpec.create stride 0 1 1, [| n; c; kh + extraH; kw + extraW |], [| o; c; kh; kw |]
    }

[<Fact>]
let ``one-window convolutions and both adjoints agree with the reference`` () =
    Prop.checkN "dense conv agrees" 60
    <| Prop.forAll (Arb.fromGen genDenseConv) (fun (spec, xs, ws) ->
        Assert.True(DenseConv.applies spec xs ws)
        convAgrees 15UL spec xs ws)

[<Fact>]
let ``a convolution larger than one column chunk agrees with the reference`` () =
    // 16M-float column budget: 3 images of 64 channels · 16 taps · 128² positions need chunks
    let spec = ConvSpec.create 1 1 1 1
    let x = data 12UL [| 3; 64; 128; 128 |]
    let w = data 13UL [| 4; 64; 4; 4 |]
    let y = reference.Conv2d(x, w, spec)
    close 1e-4 "conv2d" (fast.Conv2d(x, w, spec)) y
    let g = data 14UL y.Shape

    close
        1e-4
        "weight grad"
        (fast.Conv2dWeightGrad(x, g, spec, w.Shape))
        (reference.Conv2dWeightGrad(x, g, spec, w.Shape))

[<Fact>]
let ``the description names the GEMM in use`` () =
    let d = CpuBackend(1).Description
    Assert.Contains("sgemm", d)

    if not knobs.OpenBlas then
        Assert.Contains("managed", d)

[<Fact>]
let ``knobs given to the constructor replace the environment's`` () =
    let managed =
        CpuBackend(
            2,
            {
                knobs with
                    OpenBlas = false
                    DnnlConv = false
            }
        )

    Assert.False(managed.UsesOpenBlas)
    Assert.Contains("managed SIMD sgemm", managed.Description)
    let b = managed :> IBackend
    // a product and a convolution through the managed GEMM and im2col agree with the reference
    let a, w = data 31UL [| 3; 40; 50 |], data 32UL [| 3; 50; 20 |]

    close
        1e-4
        "managed matmul"
        (b.MatMul(a, false, w, false, [| 3; 40; 20 |]))
        (reference.MatMul(a, false, w, false, [| 3; 40; 20 |]))

    let x, k = data 33UL [| 2; 16; 9; 9 |], data 34UL [| 8; 16; 3; 3 |]
    let spec = ConvSpec.create 1 1 1 1
    close 1e-4 "im2col conv" (b.Conv2d(x, k, spec)) (reference.Conv2d(x, k, spec))

/// A backend that accelerates one kernel (here: counts its calls) and inherits the rest.
type private ExpOnlyBackend() =
    inherit BackendBase()
    member val Calls = 0 with get, set
    override _.Name = "exp-only"

    override this.Unary(op, x) =
        match op with
        | Exp ->
            this.Calls <- this.Calls + 1
            base.Unary(op, x)
        | _ -> base.Unary(op, x)

[<Fact>]
let ``a backend derived from BackendBase runs every kernel it does not override on the reference`` () =
    let b = ExpOnlyBackend()
    let ib = b :> IBackend
    let x = data 40UL [| 4; 5 |]
    let w = data 41UL [| 5; 3 |]
    close 0.0 "exp" (ib.Unary(Exp, x)) (reference.Unary(Exp, x))
    close 0.0 "tanh" (ib.Unary(Tanh, x)) (reference.Unary(Tanh, x))
    Assert.Equal(1, b.Calls)
    close 0.0 "matmul" (ib.MatMul(x, false, w, false, [| 4; 3 |])) (reference.MatMul(x, false, w, false, [| 4; 3 |]))
    close 0.0 "reduce" (ib.Reduce(ReduceSum, x, [| 1 |])) (reference.Reduce(ReduceSum, x, [| 1 |]))
    // the fused optimizer steps come with the base class, on the reference kernels
    let c = {
        Lr = 1e-3
        Beta1 = 0.9
        Beta2 = 0.999
        Eps = 1e-8
        WeightDecay = 0.0
        Decoupled = false
        BiasCorrection1 = 0.1
        BiasCorrection2 = 0.001
    }

    let v = RawTensor.ofFloat32 x.Shape (RawTensor.toFloat32Array x |> Array.map abs)
    let p1, m1, v1 = (b :> IFusedOptimizer).AdamStep(x, x, x, v, c)

    let p2, m2, v2 =
        (ReferenceBackend.Instance :> IFusedOptimizer).AdamStep(x, x, x, v, c)

    close 0.0 "adam p" p1 p2
    close 0.0 "adam m" m1 m2
    close 0.0 "adam v" v1 v2
    // memory hints do nothing by default
    ib.Recycle x
    ib.NextPhase()
    Assert.Equal("exp-only", ib.Name)

[<Fact>]
let ``knobs parse from GAN_ variables, keeping defaults for unset or invalid values`` () =
    let parse (vars: (string * string) list) =
        let m = Map.ofList vars
        CpuKnobs.Parse(Func<string, string | null>(fun n -> Map.tryFind n m |> Option.toObj))

    Assert.Equal(CpuKnobs.Default, parse [])

    let k =
        parse [
            "GAN_PARALLEL_THRESHOLD", "1000"
            "GAN_DISABLE_OPENBLAS", "1"
            "GAN_DISABLE_DNNL", "1"
            "GAN_DNNL_GEMM_MIN", "0"
            "GAN_SMALL_GEMM", "5"
            "GAN_DISABLE_DNNL_CONV", "1"
            "GAN_DNNL_WINOGRAD", "0"
            "GAN_DNNL_BATCH", "8"
            "GAN_GEMM_SPLIT", "1"
            "GAN_STEP_POOL_MB", "0"
        ]

    Assert.Equal(
        {
            ParallelThreshold = 1000
            OpenBlas = false
            Dnnl = false
            DnnlGemmMin = 0L
            SmallGemm = 5L
            DnnlConv = false
            DnnlWinograd = false
            DnnlBatch = 8
            GemmSplit = true
            StepPoolBytes = 0L
        },
        k
    )

    let invalid =
        parse [
            "GAN_PARALLEL_THRESHOLD", "0"
            "GAN_DISABLE_OPENBLAS", "yes"
            "GAN_SMALL_GEMM", "0"
            "GAN_DNNL_GEMM_MIN", "-1"
            "GAN_DNNL_WINOGRAD", "1"
            "GAN_DNNL_BATCH", "x"
            "GAN_STEP_POOL_MB", "-1"
        ]

    Assert.Equal(CpuKnobs.Default, invalid)

[<Fact>]
let ``oneDNN convolutions and both adjoints agree with the reference on blocked-layout shapes`` () =
    let pad p = {
        ConvSpec.unit with
            StrideH = 2
            StrideW = 2
            PadTop = p
            PadBottom = p
            PadLeft = p
            PadRight = p
    }

    let same = {
        ConvSpec.unit with
            PadTop = 1
            PadBottom = 1
            PadLeft = 1
            PadRight = 1
    }

    let cases = [
        // DCGAN's k4 s2 p1 down-sampling, 16+ channels (oneDNN's nChw16c)
        pad 1, [| 3; 32; 12; 12 |], [| 48; 32; 4; 4 |], [| 3; 32; 12; 12 |]
        // 3x3 s1 p1, and an RGB input (its input gradient stays on im2col)
        same, [| 2; 20; 7; 7 |], [| 17; 20; 3; 3 |], [| 2; 20; 7; 7 |]
        // 3x3 s1 under Winograd, 40 images: calls of 32 and 8 images (weight gradients summed)
        same, [| 40; 16; 10; 9 |], [| 32; 16; 3; 3 |], [| 40; 16; 10; 9 |]
        pad 1, [| 2; 3; 16; 16 |], [| 16; 3; 4; 4 |], [| 2; 3; 16; 16 |]
        // a transposed convolution's output padding: the input is one row and column larger
        // than the forward formula needs
        pad 1, [| 2; 16; 9; 9 |], [| 24; 16; 4; 4 |], [| 2; 16; 9; 9 |]
    ]

    for spec, xs, ws, _ in cases do
        let x, w = data 12UL xs, data 13UL ws
        let y = reference.Conv2d(x, w, spec)
        let g = data 14UL y.Shape
        let f32 (r: RawTensor) = RawTensor.toFloat32Array r
        let forward = Dnnl.conv2d knobs spec (f32 x) xs (f32 w) ws
        let input = Dnnl.conv2dInputGrad knobs spec (f32 g) g.Shape (f32 w) ws xs
        let weight = Dnnl.conv2dWeightGrad knobs spec (f32 x) xs (f32 g) g.Shape ws

        if Blas.dnnlAvailable knobs then
            let some what (r: float32[] option) shape =
                match r with
                | Some a -> RawTensor.ofFloat32 shape a
                | None -> failwithf "oneDNN declined the %s of %A %A" what xs ws

            close 1e-5 (sprintf "conv2d %A" xs) (some "convolution" forward y.Shape) y

            close
                1e-5
                (sprintf "weight grad %A" xs)
                (some "weight gradient" weight ws)
                (reference.Conv2dWeightGrad(x, g, spec, ws))

            match input with
            | Some dx ->
                close
                    1e-5
                    (sprintf "input grad %A" xs)
                    (RawTensor.ofFloat32 xs dx)
                    (reference.Conv2dInputGrad(g, w, spec, xs))
            | None -> Assert.True(xs.[1] < 16, sprintf "oneDNN declined the input gradient of %A" xs)
        else
            // without oneDNN every call falls back to im2col
            Assert.True(forward.IsNone && input.IsNone && weight.IsNone)

    if Blas.dnnlAvailable knobs then
        // the 3x3 stride-1 case ran on Winograd, in calls of 32 and 8 images
        let impls = Dnnl.implementations ()

        for n in [ 32; 8 ] do
            Assert.Contains(
                impls,
                fun (i: string) ->
                    i.StartsWith "Forward"
                    && i.Contains(sprintf "x %dx16x10x9" n)
                    && i.Contains "wino"
            )

[<Fact>]
let ``fused BatchNorm forward and backward agree with the reference (1d and 2d, offset data)`` () =
    for shape in [ [| 64; 40 |]; [| 8; 16; 9; 9 |]; [| 4; 3; 37; 5 |] ] do
        let c = shape.[1]

        // a per-element offset of 3 makes the mean far from zero, as after a ReLU
        let x = {
            (data 15UL shape) with
                Storage =
                    Storage.F32(
                        RawTensor.toFloat32Array (data 15UL shape)
                        |> Array.map (fun v -> v * 2.0f + 3.0f)
                    )
        }

        let gamma, beta, g = data 16UL [| c |], data 17UL [| c |], data 18UL shape
        let y1, m1, v1 = fast.BatchNormForward(x, gamma, beta, 1e-5)
        let y2, m2, v2 = reference.BatchNormForward(x, gamma, beta, 1e-5)
        close 1e-5 (sprintf "y %A" shape) y1 y2
        close 1e-5 (sprintf "mean %A" shape) m1 m2
        close 1e-5 (sprintf "var %A" shape) v1 v2
        let dx1, dg1, db1 = fast.BatchNormBackward(g, x, gamma, m2, v2, 1e-5)
        let dx2, dg2, db2 = reference.BatchNormBackward(g, x, gamma, m2, v2, 1e-5)
        close 1e-4 (sprintf "dx %A" shape) dx1 dx2
        close 1e-4 (sprintf "dgamma %A" shape) dg1 dg2
        close 1e-5 (sprintf "dbeta %A" shape) db1 db2

[<Fact>]
let ``vectorised sign gives the reference's −1, 0, 1, with 0 for signed zeros and NaN`` () =
    let values =
        Array.init 1000 (fun i ->
            match i % 5 with
            | 0 -> 0.0f
            | 1 -> -0.0f
            | 2 -> Single.NaN
            | 3 -> float32 i
            | _ -> -float32 i)

    let x = RawTensor.ofFloat32 [| values.Length |] values
    close 0.0 "sign" (fast.Unary(Sign, x)) (reference.Unary(Sign, x))

[<Fact>]
let ``the donated Adam step agrees with the reference and writes the moments in place`` () =
    let p = data 20UL [| 1000; 37 |]
    let g = data 21UL [| 1000; 37 |]
    let m = data 22UL [| 1000; 37 |]

    let v =
        RawTensor.ofFloat32 [| 1000; 37 |] (RawTensor.toFloat32Array (data 23UL [| 1000; 37 |]) |> Array.map abs)

    let c = {
        Lr = 1e-3
        Beta1 = 0.5
        Beta2 = 0.999
        Eps = 1e-8
        WeightDecay = 0.01
        Decoupled = false
        BiasCorrection1 = 0.75
        BiasCorrection2 = 0.002
    }

    let optimizer (b: IBackend) = b :?> IFusedOptimizer
    let p', m', v' = (optimizer reference).AdamStep(p, g, m, v, c)

    for name, backend in [ "cpu", fast; "reference", reference ] do
        let copy (t: RawTensor) =
            RawTensor.ofFloat32 t.Shape (RawTensor.toFloat32Array t)

        let md, vd = copy m, copy v
        let pd = (optimizer backend).AdamStepDonated(p, g, md, vd, c)
        close 1e-6 (name + " p") p' pd
        close 1e-6 (name + " m in place") m' md
        close 1e-6 (name + " v in place") v' vd

[<Fact>]
let ``pairwise L1 kernels agree with the reference, equal entries included`` () =
    // C = 21 (vector body and tail), G·P rows enough for the parallel split; y's rows copy some
    // of x's entries so that sign 0 occurs
    for (gs, ps, rs, cs) in [ (3, 5, 4, 21); (32, 64, 64, 32); (1, 1, 1, 1) ] do
        let x = data 11UL [| gs; ps; cs |]
        let ya = RawTensor.toFloat32Array (data 12UL [| gs; rs; cs |])
        let xa = RawTensor.toFloat32Array x

        for i in 0..3 .. ya.Length - 1 do
            ya.[i] <- xa.[i % xa.Length]

        let y = RawTensor.ofFloat32 [| gs; rs; cs |] ya
        let g = data 13UL [| gs; ps; rs |]
        let what = sprintf "%A" (gs, ps, rs, cs)
        close 1e-5 ("pairwiseL1 " + what) (fast.PairwiseL1(x, y)) (reference.PairwiseL1(x, y))

        close
            1e-5
            ("pairwiseL1 backward " + what)
            (fast.PairwiseL1Backward(g, x, y))
            (reference.PairwiseL1Backward(g, x, y))

[<Fact>]
let ``embed agrees with the reference for pads, column windows and interleavings`` () =
    // (target, offset, strides, source shape): a 2-D pad (long rows), a one-column window
    // (runs of 1), the sub-pixel interleaving's adjoint (runs of 2 with a large stride), and a
    // large pad for the parallel split
    let cases = [
        [| 5; 9 |], 10, [| 9; 1 |], [| 3; 7 |]
        [| 4; 6 |], 2, [| 6; 1 |], [| 4; 1 |]
        [| 2; 12; 4; 4 |], 0, [| 192; 16; 4; 100; 1; 49 |], [| 2; 3; 3; 2; 3; 2 |]
        [| 300; 301 |], 302, [| 301; 1 |], [| 299; 299 |]
    ]

    for (target, offset, strides, shape) in cases do
        let x = data 21UL shape

        close
            0.0
            (sprintf "embed %A into %A" shape target)
            (fast.Embed(x, target, offset, strides))
            (reference.Embed(x, target, offset, strides))
