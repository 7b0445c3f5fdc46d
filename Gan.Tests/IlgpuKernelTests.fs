/// Every device kernel of the ILGPU backend against the reference kernels, on ILGPU's CPU
/// accelerator (tiny shapes; FsCheck properties log their replay seed), with no host round
/// trip for float32; and every kernel compiles to PTX for sm_80 and sm_90 without a GPU.
module IlgpuKernelTests

open System
open System.Reflection
open Xunit
open FsCheck
open FsCheck.FSharp
open ILGPU
open ILGPU.Runtime
open ILGPU.Runtime.CPU
open Gan.Functional
open Gan.Functional.Kernels

let private reference = ReferenceBackend.Instance :> IBackend

let private data (seed: uint64) (shape: int[]) =
    RawTensor.toHost (Random.normal (Random.key seed) Float32 shape)

let private positive (seed: uint64) (shape: int[]) =
    let x = data seed shape
    RawTensor.ofFloat32 shape (RawTensor.toFloat32Array x |> Array.map (fun v -> abs v + 0.1f))

/// |a − b| ≤ tol·(1 + max|b|) elementwise, with the worst offender in the message.
let private close (tol: float) (what: string) (a: RawTensor) (b: RawTensor) =
    Assert.Equal<int[]>(b.Shape, a.Shape)
    let x, y = RawTensor.toFloat64Array a, RawTensor.toFloat64Array b
    let finite = y |> Array.filter Double.IsFinite

    let scale =
        1.0
        + (if finite.Length = 0 then
               0.0
           else
               Array.max (Array.map abs finite))

    for i in 0 .. x.Length - 1 do
        // equal infinities, or NaN on both sides, agree
        let e =
            if x.[i] = y.[i] || (Double.IsNaN x.[i] && Double.IsNaN y.[i]) then
                0.0
            else
                abs (x.[i] - y.[i]) / scale

        if not (e <= tol) then
            failwithf "%s: element %d differs: device %g vs reference %g (relative error %g)" what i x.[i] y.[i] e

let private onDevice (r: RawTensor) =
    match r.Storage with
    | Storage.Device _ -> true
    | _ -> false

/// `f` on the device (inputs uploaded; its result must be a device tensor and no host round
/// trip may happen) and on the reference, compared within `tol`.
let private agree
    (tol: float)
    (what: string)
    (d: IlgpuBackend)
    (xs: RawTensor[])
    (f: IBackend -> RawTensor[] -> RawTensor)
    =
    let before = d.HostRoundTrips
    let expected = f reference xs
    let actual = f d (Array.map d.Upload xs)
    Assert.True(onDevice actual, what + ": the result is on the device")
    Assert.Equal<(string * int64)[]>(before, d.HostRoundTrips)
    close tol what actual expected

let private both () = [ IlgpuDevice.get (); IlgpuDevice.small () ]

let private genShape rank =
    Gen.arrayOfLength rank (Gen.choose (1, 5))

/// Broadcastable shape pairs (CpuBackendTests'), small for the CPU accelerator.
let private genBroadcastPair = CpuBackendTests.genBroadcastPairUpTo 5

[<Fact>]
let ``unary kernels agree with the reference`` () =
    for op in [ UnaryOp.Neg; Exp; Log; Sqrt; Tanh; Sigmoid; Abs; Sign ] do
        let x =
            match op with
            | Log
            | Sqrt -> positive 1UL [| 3; 50 |]
            | _ -> data 1UL [| 3; 50 |]

        agree 1e-5 (sprintf "%A" op) (IlgpuDevice.get ()) [| x |] (fun b r -> b.Unary(op, r.[0]))

[<Fact>]
let ``binary kernels with broadcasting agree with the reference`` () =
    let ops = [
        Add
        Sub
        Mul
        Div
        Pow
        Maximum
        Minimum
        Equal
        Less
        LessEqual
        Greater
        GreaterEqual
    ]

    Prop.checkN "ilgpu binary broadcast" 25
    <| Prop.forAll (Arb.fromGen genBroadcastPair) (fun (sa, sb) ->
        let outShape = Shape.broadcast "test" sa sb

        for d in both () do
            for op in ops do
                let a = if op = Pow then positive 3UL sa else data 3UL sa
                // rounded b makes Equal and friends see ties
                let b =
                    RawTensor.ofFloat32
                        sb
                        (RawTensor.toFloat32Array (data 4UL sb) |> Array.map (fun v -> MathF.Round v))

                agree 1e-5 (sprintf "%A %A %A" op sa sb) d [| a; b |] (fun k r -> k.Binary(op, r.[0], r.[1], outShape)))

[<Fact>]
let ``where, leaky relu and its adjoint agree with the reference`` () =
    let s = [| 4; 33 |]

    let m =
        RawTensor.ofFloat32
            s
            (RawTensor.toFloat32Array (data 5UL s)
             |> Array.map (fun v -> if v > 0.0f then 1.0f else 0.0f))

    let a, b = data 6UL s, data 7UL s
    let d = IlgpuDevice.get ()
    agree 0.0 "where" d [| m; a; b |] (fun k r -> k.Where(r.[0], r.[1], r.[2]))
    agree 0.0 "leaky_relu" d [| a |] (fun k r -> k.LeakyRelu(r.[0], 0.2))
    agree 0.0 "relu" d [| a |] (fun k r -> k.LeakyRelu(r.[0], 0.0))
    agree 0.0 "leaky_relu_backward" d [| b; a |] (fun k r -> k.LeakyReluBackward(r.[0], r.[1], 0.2))

/// A shape of rank 1–4 and a sorted, distinct subset of its axes.
let private genReduce =
    gen {
        let! rank = Gen.choose (1, 4)
        let! s = genShape rank
        let! keep = Gen.arrayOfLength rank (Gen.elements [ false; true ])

        let axes = [|
            for i in 0 .. rank - 1 do
                if not keep.[i] then
                    i
        |]

        return s, axes
    }

[<Fact>]
let ``reductions agree with the reference, thread- and group-wise`` () =
    Prop.checkN "ilgpu reduce" 25
    <| Prop.forAll (Arb.fromGen genReduce) (fun (s, axes) ->
        for d in both () do
            for op in [ ReduceSum; ReduceMax; ReduceMin ] do
                agree 1e-5 (sprintf "%A %A %A" op s axes) d [| data 8UL s |] (fun k r -> k.Reduce(op, r.[0], axes)))

    // long reductions take the one-group-per-output kernel (whole tensors: two passes)
    for d in both () do
        for op in [ ReduceSum; ReduceMax; ReduceMin ] do
            for s, axes in
                [
                    [| 3; 300 |], [| 1 |]
                    [| 70; 4 |], [| 0 |]
                    [| 5; 9; 11 |], [| 0; 1; 2 |]
                    [| 2; 40; 3 |], [| 0; 1 |]
                ] do
                agree 1e-5 (sprintf "long %A %A %A" op s axes) d [| data 9UL s |] (fun k r -> k.Reduce(op, r.[0], axes))

/// The CPU accelerator with four 16-thread multiprocessors: room for 8 groups, so reductions to
/// a few outputs split over several groups (the tests' other backends allow 2). The named device
/// where GAN_TEST_DEVICE is set.
let private wide =
    lazy
        (match Environment.GetEnvironmentVariable "GAN_TEST_DEVICE" with
         | null
         | "" ->
             let context =
                 Context.Create(fun b -> b.CPU(CPUDevice(4, 4, 4)).EnableAlgorithms() |> ignore)

             IlgpuBackend(context.CreateCPUAccelerator(0), 16)
         | _ -> IlgpuDevice.get ())

[<Fact>]
let ``reductions to a few outputs run in two passes and agree with the reference`` () =
    let cases = [
        // whole tensors of odd sizes
        [| 4099 |], [| 0 |]
        [| 7; 13; 11 |], [| 0; 1; 2 |]
        // a few outputs, reduced axes contiguous or strided
        [| 3; 517 |], [| 1 |]
        [| 517; 2 |], [| 0 |]
        [| 2; 129; 3 |], [| 0; 1 |]
    ]

    for d in [ wide.Force(); IlgpuDevice.small () ] do
        let before = d.TwoPassReductions

        for s, axes in cases do
            for op in [ ReduceSum; ReduceMax; ReduceMin ] do
                // all of one sign too: a wrong identity (0 for max or min) shows there
                for shift in [ 0.0f; 10.0f; -10.0f ] do
                    let x =
                        RawTensor.ofFloat32 s (RawTensor.toFloat32Array (data 21UL s) |> Array.map ((+) shift))

                    agree 1e-5 (sprintf "two-pass %A %A %A %g" op s axes shift) d [| x |] (fun k r ->
                        k.Reduce(op, r.[0], axes))

        // every case splits on the wide device; on the small one (room for 2 groups) the whole tensors
        let expected =
            if obj.ReferenceEquals(d, wide.Force()) then
                cases.Length
            else
                2

        Assert.True(
            d.TwoPassReductions - before >= int64 (expected * 9),
            sprintf "%d of the reductions ran in two passes on %s" (d.TwoPassReductions - before) d.DeviceName
        )

[<Fact>]
let ``convolutions reuse one column buffer, grown only for a larger one`` () =
    let d = wide.Force()

    let conv (spec: ConvSpec) (xs: int[]) (ws: int[]) =
        let ys = ConvSpec.outputShape "test" spec xs ws
        let x, w, g = data 22UL xs, data 23UL ws, data 24UL ys
        let what = sprintf "%A %A %A" spec xs ws
        agree 1e-5 ("conv2d " + what) d [| x; w |] (fun b r -> b.Conv2d(r.[0], r.[1], spec))
        agree 1e-5 ("input grad " + what) d [| g; w |] (fun b r -> b.Conv2dInputGrad(r.[0], r.[1], spec, xs))
        agree 1e-5 ("weight grad " + what) d [| x; g |] (fun b r -> b.Conv2dWeightGrad(r.[0], r.[1], spec, ws))

    // the largest first: its columns (2·3·3·3 × 7·7 floats) hold every later call's
    conv (ConvSpec.create 1 0 1 1) [| 2; 3; 9; 9 |] [| 4; 3; 3; 3 |]
    let after = d.ColumnAllocations
    conv (ConvSpec.create 2 1 1 1) [| 1; 2; 6; 5 |] [| 3; 2; 3; 2 |]
    conv (ConvSpec.create 1 1 2 2) [| 2; 4; 5; 5 |] [| 2; 2; 2; 2 |]
    conv (ConvSpec.create 1 0 1 1) [| 2; 3; 9; 9 |] [| 4; 3; 3; 3 |]
    Assert.Equal(after, d.ColumnAllocations)
    // a larger one grows it, once
    conv (ConvSpec.create 1 1 1 1) [| 2; 3; 10; 10 |] [| 2; 3; 3; 3 |]
    conv (ConvSpec.create 1 1 1 1) [| 2; 3; 10; 10 |] [| 2; 3; 3; 3 |]
    Assert.Equal(after + 1L, d.ColumnAllocations)

[<Fact>]
let ``argmax finds the first maximum as the reference does`` () =
    let s = [| 3; 6; 4 |]
    // rounded values tie often
    let x =
        RawTensor.ofFloat32 s (RawTensor.toFloat32Array (data 10UL s) |> Array.map (fun v -> MathF.Round v))

    let d = IlgpuDevice.get ()

    for axis in 0..2 do
        Assert.Equal<int[]>(reference.ArgMax(x, axis), (d :> IBackend).ArgMax(d.Upload x, axis))

[<Fact>]
let ``views, embeddings and concatenation agree with the reference`` () =
    let d = IlgpuDevice.get ()
    let x = data 11UL [| 2; 3; 4 |]
    let st = Shape.strides [| 2; 3; 4 |]
    // permute, expand (stride 0), slice
    agree 0.0 "permute" d [| x |] (fun k r -> k.View(r.[0], 0, [| st.[2]; st.[0]; st.[1] |], [| 4; 2; 3 |]))
    agree 0.0 "expand" d [| data 12UL [| 3; 1 |] |] (fun k r -> k.View(r.[0], 0, [| 0; 1; 0 |], [| 2; 3; 5 |]))
    agree 0.0 "slice" d [| x |] (fun k r -> k.View(r.[0], st.[1] + 1, st, [| 2; 2; 2 |]))
    // pad: x into a [4, 5, 6] box at (1, 1, 2)
    let target = [| 4; 5; 6 |]
    let ts = Shape.strides target
    agree 0.0 "pad" d [| x |] (fun k r -> k.Embed(r.[0], target, ts.[0] + ts.[1] + 2, ts))

    for axis in 0..2 do
        let parts = [|
            x
            data 13UL (Array.mapi (fun i n -> if i = axis then 1 else n) x.Shape)
            x
        |]

        agree 0.0 (sprintf "concat %d" axis) d parts (fun k r -> k.Concat(r, axis))

[<Fact>]
let ``take and scatter-add agree with the reference, repeated indices included`` () =
    let d = IlgpuDevice.get ()
    let x = data 14UL [| 5; 4 |]
    let index = [| 3; 0; 19; 3; 3; 7; 0; 12 |]
    agree 0.0 "take" d [| x |] (fun k r -> k.Take(r.[0], index, [| 2; 4 |]))
    agree 1e-6 "scatter_add" d [| data 15UL [| 8 |] |] (fun k r -> k.ScatterAdd(r.[0], index, [| 5; 4 |]))

/// Batched products: m, n, k up to 20 (over one 16-wide tile), both transposes, batch axes
/// broadcast either way.
let private genMatMul =
    gen {
        let! m = Gen.choose (1, 20)
        let! n = Gen.choose (1, 20)
        let! k = Gen.choose (1, 20)
        let! ta = Gen.elements [ false; true ]
        let! tb = Gen.elements [ false; true ]

        let! batch =
            Gen.elements [ [||], [||]; [| 3 |], [| 3 |]; [| 2; 1 |], [| 3 |]; [| 1 |], [| 2; 2 |] ]

        return m, n, k, ta, tb, batch
    }

[<Fact>]
let ``batched matrix products agree with the reference, tiled and one thread per output`` () =
    Assert.Equal(256, (IlgpuDevice.get ()).ThreadsPerGroup)

    Prop.checkN "ilgpu matmul" 20
    <| Prop.forAll (Arb.fromGen genMatMul) (fun (m, n, k, ta, tb, (ba, bb)) ->
        let sa = Array.append ba (if ta then [| k; m |] else [| m; k |])
        let sb = Array.append bb (if tb then [| n; k |] else [| k; n |])
        let outShape = Array.append (Shape.broadcast "test" ba bb) [| m; n |]

        for d in both () do
            agree 1e-5 (sprintf "matmul %A %b %A %b" sa ta sb tb) d [| data 16UL sa; data 17UL sb |] (fun b r ->
                b.MatMul(r.[0], ta, r.[1], tb, outShape)))

/// Random conv geometries (CpuBackendTests'), small for the CPU accelerator.
let private genConv = CpuBackendTests.genConvUpTo 2 9

[<Fact>]
let ``convolutions and both adjoints agree with the reference`` () =
    Prop.checkN "ilgpu conv2d" 15
    <| Prop.forAll (Arb.fromGen genConv) (fun (spec, xs, ws) ->
        let ys = ConvSpec.outputShape "test" spec xs ws
        let x, w, g = data 18UL xs, data 19UL ws, data 20UL ys
        let d = IlgpuDevice.get ()
        let what = sprintf "%A %A %A" spec xs ws
        agree 1e-5 ("conv2d " + what) d [| x; w |] (fun b r -> b.Conv2d(r.[0], r.[1], spec))
        agree 1e-5 ("input grad " + what) d [| g; w |] (fun b r -> b.Conv2dInputGrad(r.[0], r.[1], spec, xs))
        agree 1e-5 ("weight grad " + what) d [| x; g |] (fun b r -> b.Conv2dWeightGrad(r.[0], r.[1], spec, ws)))

[<Fact>]
let ``max-pool indices equal the reference's`` () =
    let d = IlgpuDevice.get ()

    let x =
        RawTensor.ofFloat32
            [| 2; 3; 7; 6 |]
            (RawTensor.toFloat32Array (data 21UL [| 2; 3; 7; 6 |]) |> Array.map MathF.Round)

    for spec, k in
        [
            ConvSpec.create 2 0 1 1, 2
            ConvSpec.create 1 1 1 1, 3
            ConvSpec.create 2 1 2 1, 2
        ] do
        let expected = reference.MaxPool2dIndices(x, k, k, spec)
        let actual = (d :> IBackend).MaxPool2dIndices(d.Upload x, k, k, spec)
        Assert.Equal<int[]>(snd expected, snd actual)
        Assert.Equal<int[]>(fst expected, fst actual)

[<Fact>]
let ``casts go both ways on the device`` () =
    let d = IlgpuDevice.get ()
    let x = data 22UL [| 3; 7 |]
    let x64 = d.Upload(RawTensor.cast Float64 x)
    let up = (d :> IBackend).Cast(d.Upload x, Float64)
    Assert.Equal(Float64, up.DType)
    Assert.True(onDevice up)
    Assert.Equal<float[]>(RawTensor.toFloat64Array x, RawTensor.toFloat64Array up)
    let down = (d :> IBackend).Cast(x64, Float32)
    Assert.Equal(Float32, down.DType)
    Assert.Equal<float32[]>(RawTensor.toFloat32Array x, RawTensor.toFloat32Array down)

[<Fact>]
let ``pairwise L1 and its adjoint agree with the reference`` () =
    let d = IlgpuDevice.get ()
    let x, y = data 23UL [| 2; 3; 5 |], data 24UL [| 2; 4; 5 |]
    agree 1e-5 "pairwise_l1" d [| x; y |] (fun b r -> b.PairwiseL1(r.[0], r.[1]))

    agree 1e-5 "pairwise_l1_backward" d [| data 25UL [| 2; 3; 4 |]; x; y |] (fun b r ->
        b.PairwiseL1Backward(r.[0], r.[1], r.[2]))

[<Fact>]
let ``batch normalisation forward and backward agree with the reference`` () =
    for d in both () do
        for s in [ [| 4; 3; 5; 5 |]; [| 6; 70 |]; [| 2; 2; 40 |] ] do
            let c = [| s.[1] |]
            let x, gamma, beta, g = data 26UL s, data 27UL c, data 28UL c, data 29UL s
            let expected = reference.BatchNormForward(x, gamma, beta, 1e-3)

            let y, mean, var =
                (d :> IBackend).BatchNormForward(d.Upload x, d.Upload gamma, d.Upload beta, 1e-3)

            let ey, em, ev = expected
            close 1e-5 "bn y" y ey
            close 1e-6 "bn mean" mean em
            close 1e-5 "bn var" var ev
            let edx, edg, edb = reference.BatchNormBackward(g, x, gamma, em, ev, 1e-3)

            let dx, dg, db =
                (d :> IBackend).BatchNormBackward(d.Upload g, d.Upload x, d.Upload gamma, mean, var, 1e-3)

            close 1e-5 "bn dx" dx edx
            close 1e-5 "bn dgamma" dg edg
            close 1e-5 "bn dbeta" db edb

[<Fact>]
let ``the fused Adam step agrees with the reference, donated moments included`` () =
    let d = IlgpuDevice.get ()
    let s = [| 7; 9 |]
    let p, g, m = data 30UL s, data 31UL s, data 32UL s
    let v = positive 33UL s

    for decoupled, wd in [ false, 0.0; false, 0.01; true, 0.05 ] do
        let c = {
            Lr = 1e-2
            Beta1 = 0.5
            Beta2 = 0.999
            Eps = 1e-8
            WeightDecay = wd
            Decoupled = decoupled
            BiasCorrection1 = 1.0 - 0.5 ** 3.0
            BiasCorrection2 = 1.0 - 0.999 ** 3.0
        }

        let ep, em, ev = (reference :?> IFusedOptimizer).AdamStep(p, g, m, v, c)
        let opt = d :> IFusedOptimizer
        let ap, am, av = opt.AdamStep(d.Upload p, d.Upload g, d.Upload m, d.Upload v, c)
        close 1e-6 "adam p" ap ep
        close 1e-6 "adam m" am em
        close 1e-6 "adam v" av ev
        let dm, dv = d.Upload m, d.Upload v
        let dp = opt.AdamStepDonated(d.Upload p, d.Upload g, dm, dv, c)
        close 1e-6 "donated p" dp ep
        close 1e-6 "donated m (written over m)" dm em
        close 1e-6 "donated v (written over v)" dv ev

[<Fact>]
let ``random draws on the device are the host's numbers`` () =
    let d = IlgpuDevice.get ()
    // bit-identical on the CPU accelerator; a GPU may contract a multiply-add in Box–Muller's
    // float64 arithmetic, so there normals may differ in the last float32 bit
    let exact = d.Accelerator.AcceleratorType = AcceleratorType.CPU

    for seed, shape in [ 1UL, [| 7 |]; 2UL, [| 3; 5 |]; 3UL, [| 2; 3; 11 |]; 4UL, [| 1 |] ] do
        let key = Random.key seed
        let before = d.HostRoundTrips

        let u, n, b, b0, b1 =
            Backend.using d (fun () ->
                Tensor.rand key shape,
                Tensor.randn key shape,
                Tensor.bernoulli key 0.3 shape,
                Tensor.bernoulli key 0.0 shape,
                Tensor.bernoulli key 1.0 shape)

        Assert.Equal<(string * int64)[]>(before, d.HostRoundTrips)

        for t in [ u; n; b; b0; b1 ] do
            Assert.True(Tensor.isOnDevice t, "drawn on the device")

        let host f =
            RawTensor.toFloat32Array (f key Float32 shape)

        Assert.Equal<float32[]>(host Random.uniform, Tensor.toArray u)
        Assert.Equal<float32[]>(host (fun k -> Random.bernoulli k 0.3), Tensor.toArray b)
        Assert.Equal<float32[]>(host (fun k -> Random.bernoulli k 0.0), Tensor.toArray b0)
        Assert.Equal<float32[]>(host (fun k -> Random.bernoulli k 1.0), Tensor.toArray b1)
        let hn = host Random.normal

        if exact then
            Assert.Equal<float32[]>(hn, Tensor.toArray n)
        else
            close 2e-6 "normal" (RawTensor.ofFloat32 shape (Tensor.toArray n)) (RawTensor.ofFloat32 shape hn)

    // a longer draw crosses many Philox blocks
    let key = Random.key 99UL
    let n = Backend.using d (fun () -> Tensor.randn key [| 1001 |])
    let hn = RawTensor.toFloat32Array (Random.normal key Float32 [| 1001 |])

    if exact then
        Assert.Equal<float32[]>(hn, Tensor.toArray n)

[<Fact>]
let ``every device kernel compiles to PTX for sm_80 and sm_90 without a GPU`` () =
    let kernels =
        typeof<Gan.Functional.Kernels.Ilgpu.IlgpuKernels>
            .GetMethods(
                BindingFlags.Public
                ||| BindingFlags.NonPublic
                ||| BindingFlags.Static
                ||| BindingFlags.DeclaredOnly
            )

    Assert.True(kernels.Length >= 25, sprintf "%d kernels found" kernels.Length)
    use context = Context.Create(fun b -> b.EnableAlgorithms() |> ignore)

    for arch, isa in
        [
            Cuda.CudaArchitecture.SM_80, Cuda.CudaInstructionSet.ISA_80
            Cuda.CudaArchitecture.SM_90, Cuda.CudaInstructionSet.ISA_80
        ] do
        use ptx =
            new ILGPU.Backends.PTX.PTXBackend(context, arch, isa, Unchecked.defaultof<_>)

        for k in kernels do
            let mutable entry =
                ILGPU.Backends.EntryPoints.EntryPointDescription.FromExplicitlyGroupedKernel k

            let mutable spec = KernelSpecialization.Empty
            let compiled = ptx.Compile(&entry, &spec) :?> ILGPU.Backends.PTX.PTXCompiledKernel
            let text = compiled.PTXAssembly
            Assert.Contains(".entry", text)
            Assert.Contains(".target sm_", text)
            let target = text.Split('\n') |> Array.find (fun l -> l.StartsWith ".target")

            Console.WriteLine(
                sprintf "[ptx] %A (backend %A) %s: %s, %d chars" arch ptx.Architecture k.Name target text.Length
            )
