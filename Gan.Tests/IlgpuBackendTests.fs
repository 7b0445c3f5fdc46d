/// The ILGPU device backend on ILGPU's CPU accelerator (the same kernels a GPU runs, executed
/// on CPU threads): device storage round-trips, operations run where their inputs are, mixing
/// places fails naming both, gradients and a training step equal the CPU's within tolerance.
/// Shapes are tiny: the CPU accelerator runs one OS thread per GPU thread.
module IlgpuBackendTests

open System
open Xunit
open Gan.Functional
open Gan.Functional.Kernels
open Gan.Functional.Gan
open Gan.Functional.Nn

module Device =
    let get () = IlgpuDevice.get ()

let private host = ReferenceBackend.Instance :> IBackend

let private close (tol: float) (what: string) (actual: float[]) (expected: float[]) =
    Assert.Equal(expected.Length, actual.Length)

    let scale =
        1.0
        + (if expected.Length = 0 then
               0.0
           else
               Array.max (Array.map abs expected))

    for i in 0 .. actual.Length - 1 do
        let e = abs (actual.[i] - expected.[i]) / scale

        if not (e <= tol) then
            failwithf
                "%s: element %d differs: device %g vs host %g (relative error %g)"
                what
                i
                actual.[i]
                expected.[i]
                e

let private randn (seed: uint64) (shape: int[]) =
    Backend.using host (fun () -> Tensor.randn (Random.key seed) shape)

[<Fact>]
let ``toDevice and toHost move values and keep them`` () =
    let d = Device.get ()
    let x = randn 1UL [| 3; 5 |]
    let y = Tensor.toDevice d x
    Assert.True(Tensor.isOnDevice y)
    Assert.False(Tensor.isOnDevice x)
    Assert.Equal(d.DeviceName, Tensor.placeName y)
    Assert.Equal<float32[]>(Tensor.toArray x, Tensor.toArray y)
    let z = Tensor.toHost y
    Assert.False(Tensor.isOnDevice z)
    Assert.Equal<float32[]>(Tensor.toArray x, Tensor.toArray z)
    // float64 too, and moving to where a tensor is already is the identity
    let w = Tensor.toDevice d (Tensor.ofArray64 [| 2 |] [| 1.5; -2.25 |])
    Assert.Equal(Float64, w.DType)
    Assert.Equal<float[]>([| 1.5; -2.25 |], Tensor.toArray64 w)
    Assert.True(obj.ReferenceEquals(Tensor.toRaw w, Tensor.toRaw (Tensor.toDevice d w)))

[<Fact>]
let ``operations on device tensors run on the device and match the host`` () =
    let d = Device.get ()
    let a = randn 2UL [| 2; 3; 4 |]
    let b = randn 3UL [| 3; 1 |]
    let w = randn 4UL [| 4; 5 |]

    let f (a: Tensor) (b: Tensor) (w: Tensor) =
        let h = Tensor.tanh (a * b + 1.0) |> Tensor.matmul <| w
        Tensor.sum (Tensor.sigmoid h * 2.0) + Tensor.mean (Tensor.exp (a - b))

    let expected = Backend.using host (fun () -> f a b w)
    let da, db, dw = Tensor.toDevice d a, Tensor.toDevice d b, Tensor.toDevice d w
    let actual = f da db dw
    Assert.True(Tensor.isOnDevice actual, "the result stays on the device")
    close 1e-5 "composite" (Tensor.toArray64 actual) (Tensor.toArray64 expected)

[<Fact>]
let ``mixing a host tensor with a device tensor fails naming both places`` () =
    let d = Device.get ()
    let a = Tensor.toDevice d (randn 5UL [| 2; 2 |])
    let b = randn 6UL [| 2; 2 |]
    let e = Assert.ThrowsAny<exn>(fun () -> Tensor.add a b |> ignore)
    Assert.Contains(d.DeviceName, e.Message)
    Assert.Contains("host", e.Message)
    // a rank-0 host tensor is the exception: it moves to the device by itself
    let s = Tensor.add a (Tensor.scalar 1.0)
    Assert.True(Tensor.isOnDevice s)
    close 0.0 "scalar" (Tensor.toArray64 s) (Tensor.toArray64 a |> Array.map (fun v -> float (float32 v + 1.0f)))

[<Fact>]
let ``gradients through device tensors equal the host's, and flow back across toDevice`` () =
    let d = Device.get ()
    let x = randn 7UL [| 4; 3 |]
    let w = randn 8UL [| 3; 2 |]

    let loss (x: Tensor) (w: Tensor) =
        Tensor.mean (Tensor.square (Tensor.tanh (Tensor.matmul x w)))

    let gHost = Backend.using host (fun () -> Autodiff.grad (fun w -> loss x w) w)
    // w on the host, moved inside the function: the adjoint comes back to the host
    let gMoved =
        Autodiff.grad (fun w -> loss (Tensor.toDevice d x) (Tensor.toDevice d w)) w

    Assert.False(Tensor.isOnDevice gMoved)
    close 1e-5 "grad across toDevice" (Tensor.toArray64 gMoved) (Tensor.toArray64 gHost)
    // w on the device throughout: the adjoint is on the device
    let gDev =
        Autodiff.grad (fun w -> loss (Tensor.toDevice d x) w) (Tensor.toDevice d w)

    Assert.True(Tensor.isOnDevice gDev)
    close 1e-5 "grad on device" (Tensor.toArray64 gDev) (Tensor.toArray64 gHost)

[<Fact>]
let ``while a device backend is selected, creation functions make device tensors`` () =
    let d = Device.get ()

    Backend.using d (fun () ->
        Assert.True(Tensor.isOnDevice (Tensor.zeros [| 3 |]))
        Assert.True(Tensor.isOnDevice (Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |]))
        Assert.True(Tensor.isOnDevice (Tensor.randn (Random.key 1UL) [| 2; 2 |]))
        let x = Tensor.toHost (Tensor.ones [| 2 |])
        // ...Like functions follow their model tensor
        Assert.False(Tensor.isOnDevice (Tensor.zerosLike x)))

    Assert.False(Tensor.isOnDevice (Tensor.zeros [| 3 |]))

/// One training step of `model` at batch 2 from a fixed key with optimizer `opt`, on `backend`
/// for every operation (state, data and noise created while it is selected): the state before
/// and after, and the step's metrics.
let private oneStep (opt: OptimizerKind) (backend: IBackend) (model: GanModel) =
    Backend.using backend (fun () ->
        let cfg = {
            Training.defaultConfig 0.5 with
                GOptimizer = opt
                DOptimizer = opt
                SimultaneousUpdates = model.Defaults.SimultaneousUpdates
        }

        let s0 = Training.init model cfg (Random.key 11UL)
        let real = Tensor.randn (Random.key 1UL) (Array.append [| 2 |] model.ImageShape)
        let s1, m = Training.step model cfg 1e-3 2e-3 real s0
        s0, s1, m)

let private values (m: Map<string, Tensor>) =
    m |> Map.toList |> List.map (fun (k, t) -> k, Tensor.toArray64 t)

let private maxAbs (xs: float[]) =
    xs |> Array.fold (fun acc v -> max acc (abs v)) 0.0

/// |actual − expected| ≤ tol·max(the tensor's largest |expected|, floor), elementwise.
let private closeTensor (tol: float) (floor: float) (what: string) (actual: float[]) (expected: float[]) =
    Assert.Equal(expected.Length, actual.Length)
    let scale = max floor (maxAbs expected)

    for i in 0 .. actual.Length - 1 do
        if not (abs (actual.[i] - expected.[i]) <= tol * scale) then
            failwithf "%s element %d: device %g vs host %g (scale %g)" what i actual.[i] expected.[i] scale

/// One SGD step (momentum 0.9, so the first moment is the gradient) on the device against the
/// same step on the host (the reference kernels): the losses, every parameter's gradient and
/// update, and BatchNorm's running statistics, all within 1e-4 of their tensor's scale (with a
/// floor of 10% of the network's largest gradient). A gradient that is zero in exact arithmetic
/// (the bias of a layer a BatchNorm follows) is float32 rounding noise on both sides, summed in
/// another order: where the host's is below 1e-3 of the network's largest gradient, the
/// device's must be too. SGD, not Adam, so that the comparison is well conditioned
/// (Adam's first update is ±lr whatever the gradient's size; the toy2d tests and the kernel
/// tests cover Adam). No kernel may run as a host round trip.
let private sameStepOn (d: IlgpuBackend) (model: GanModel) =
    let sgd = Sgd(0.9, false, 0.0)
    let h0, h1, hm = oneStep sgd host model
    let before = d.HostRoundTrips
    let _, d1, dm = oneStep sgd d model
    Assert.Equal<(string * int64)[]>(before, d.HostRoundTrips)
    Assert.True(Tensor.isOnDevice (Map.toList d1.G.Params |> List.head |> snd), "the state lives on the device")
    close 1e-4 (model.Name + " losses") [| dm.DLoss; dm.GLoss |] [| hm.DLoss; hm.GLoss |]

    for opt, ps, state in
        [
            (fun s -> s.GOpt), (fun (s: TrainState) -> s.G.Params), (fun (s: TrainState) -> s.G.State)
            (fun s -> s.DOpt), (fun (s: TrainState) -> s.D.Params), (fun (s: TrainState) -> s.D.State)
        ] do
        let grads = values (opt h1).Moment1
        let globalScale = grads |> List.fold (fun acc (_, g) -> max acc (maxAbs g)) 1e-30
        let floor = 0.1 * globalScale
        let noise = 1e-3 * globalScale

        for (k, a), (_, e) in List.zip (values (opt d1).Moment1) grads do
            if maxAbs e <= noise then
                // zero in exact arithmetic (a bias a BatchNorm follows): noise on both sides
                Assert.True(
                    maxAbs a <= noise,
                    sprintf "%s %s gradient: device %g, host noise %g" model.Name k (maxAbs a) (maxAbs e)
                )
            else
                closeTensor 1e-4 floor (sprintf "%s %s gradient" model.Name k) a e

        for (k, a), (_, e) in List.zip (values (state d1)) (values (state h1)) do
            closeTensor 1e-4 1e-30 (sprintf "%s %s state" model.Name k) a e

        // the updated weights: as close as their gradients allow (times lr), plus the float32
        // rounding of p − lr·g itself (two ulps of |p|)
        for ((k, a), (_, e)), (_, p) in List.zip (List.zip (values (ps d1)) (values (ps h1))) (values (ps h0)) do
            let g = snd (List.find (fun (n, _) -> n = k) grads)
            let lr = maxAbs (Array.map2 (-) e p) / max 1e-30 (maxAbs g)
            let scale = lr * max floor (maxAbs g)
            let tol = if maxAbs g <= noise then 2.0 * lr * noise else 1e-4 * scale

            for i in 0 .. a.Length - 1 do
                if not (abs (a.[i] - e.[i]) <= tol + 2.4e-7 * abs p.[i]) then
                    failwithf "%s %s weight %d: device %g vs host %g (from %g)" model.Name k i a.[i] e.[i] p.[i]

let private sameStep (model: GanModel) = sameStepOn (IlgpuDevice.small ()) model

/// One Adam step (PyTorch's defaults but β1 = 0.5) of `model` on the device against the host:
/// losses and moments within 1e-4 of their tensor's scale; updated weights may differ only
/// where the gradient is below 1e-3 of its tensor's largest (Adam's ±lr step takes any sign
/// there), by at most 2·lr.
let private sameAdamStepOn (d: IlgpuBackend) (model: GanModel) =
    let adam = Adam(0.5, 0.999, 1e-8, 0.0, false)
    let _, h1, hm = oneStep adam host model
    let before = d.HostRoundTrips
    let _, d1, dm = oneStep adam d model
    Assert.Equal<(string * int64)[]>(before, d.HostRoundTrips)
    close 1e-4 (model.Name + " losses") [| dm.DLoss; dm.GLoss |] [| hm.DLoss; hm.GLoss |]

    for opt, ps, lr in
        [
            (fun s -> s.GOpt), (fun (s: TrainState) -> s.G.Params), 1e-3
            (fun s -> s.DOpt), (fun (s: TrainState) -> s.D.Params), 2e-3
        ] do
        let moments = values (opt h1).Moment1

        for (k, a), (_, e) in List.zip (values (opt d1).Moment1) moments do
            closeTensor 1e-4 1e-30 (sprintf "%s %s moment1" model.Name k) a e

        for (k, a), (_, e) in List.zip (values (opt d1).Moment2) (values (opt h1).Moment2) do
            closeTensor 1e-3 1e-30 (sprintf "%s %s moment2" model.Name k) a e

        for (k, a), (_, e) in List.zip (values (ps d1)) (values (ps h1)) do
            let m = snd (List.find (fun (n, _) -> n = k) moments)
            let scale = maxAbs m

            for i in 0 .. a.Length - 1 do
                let diff = abs (a.[i] - e.[i])

                if
                    not (
                        diff <= 1e-5 * (1.0 + abs e.[i])
                        || (abs m.[i] <= 1e-3 * scale && diff <= 2.0 * lr * 1.01)
                    )
                then
                    failwithf "%s %s element %d: device %g vs host %g" model.Name k i a.[i] e.[i]

[<Fact>]
let ``a toy2d Adam step on the device equals the host's (256-thread groups, tiled GEMM)`` () =
    sameAdamStepOn (IlgpuDevice.get ()) (Zoo.toy2dWith 2 8 2 false)

[<Fact>]
let ``a toy2d-mbd Adam step on the device equals the host's`` () =
    sameAdamStepOn (IlgpuDevice.small ()) (Zoo.toy2dWith 2 8 2 true)

[<Fact>]
let ``a toy2d SGD step on the device equals the host's`` () = sameStep (Zoo.toy2dWith 2 8 2 false)

// The seed architectures of SEEDS.md at reduced width: the same layers in the same order, with
// channels and hidden sizes divided so that each step is small (Zoo.fs has the full ones).

let private reduced name noise (image: int[]) range (g: Layer list) (d: Layer list) simultaneous = {
    Name = name
    Summary = name + " at reduced width"
    NoiseDim = noise
    ImageShape = image
    Range = range
    Generator = Layer.sequential g
    Discriminator = Layer.sequential d
    Defaults = {
        Zoo.mlp.Defaults with
            SimultaneousUpdates = simultaneous
    }
}

/// S1 (mlp): 100 → 128 → 256 → 512 → 784 becomes 8 → 16 → 32 → 784.
let private mlpSmall =
    let l = Layers.linear

    reduced
        "mlp"
        8
        [| 1; 28; 28 |]
        MinusOneToOne
        [
            l 8 16
            Layers.relu
            l 16 32
            Layers.relu
            l 32 784
            Layers.tanh
            Layers.unflatten [| 1; 28; 28 |]
        ]
        [ Layers.flatten; l 784 32; Layers.relu; l 32 16; Layers.relu; l 16 1 ]
        true

/// S2 (dcgan28) with channels 128/64 → 8/4 and 32/64/128/256 → 2/4/8/16.
let private dcgan28Small =
    let bn c =
        Normalization.batchNormWith (Normalization.kerasBatchNormConfig c 0.8 1e-3)

    let conv i o s = Layers.conv2d i o 3 s Same
    let lrelu = Layers.leakyRelu 0.2

    reduced
        "dcgan28"
        8
        [| 1; 28; 28 |]
        MinusOneToOne
        [
            Layers.linear 8 (8 * 7 * 7)
            Layers.relu
            Layers.unflatten [| 8; 7; 7 |]
            Layers.upsampleNearest 2
            conv 8 8 1
            Layers.relu
            bn 8
            Layers.upsampleNearest 2
            conv 8 4 1
            Layers.relu
            bn 4
            conv 4 1 1
            Layers.tanh
        ]
        [
            conv 1 2 2
            lrelu
            Layers.dropout 0.25
            conv 2 4 2
            Layers.zeroPad2d 0 1 0 1
            bn 4
            lrelu
            Layers.dropout 0.25
            conv 4 8 2
            bn 8
            lrelu
            Layers.dropout 0.25
            conv 8 16 1
            bn 16
            lrelu
            Layers.dropout 0.25
            Layers.flatten
            Layers.linear (16 * 4 * 4) 1
        ]
        false

/// S3 (dcgan64) with channels 512/256/128/64 → 16/8/4/2, colour.
let private dcgan64Small =
    let w = Normal(0.0, 0.02)

    let bn c =
        Normalization.batchNormWith {
            Normalization.batchNormConfig c with
                ScaleInit = Normal(1.0, 0.02)
        }

    let up i o s p =
        Layers.convTranspose2dWith {
            Layers.convConfig i o 4 with
                Stride = s
                Padding = Pad p
                Bias = false
                WeightInit = w
        }

    let down i o s p =
        Layers.conv2dWith {
            Layers.convConfig i o 4 with
                Stride = s
                Padding = Pad p
                Bias = false
                WeightInit = w
        }

    let lrelu = Layers.leakyRelu 0.2

    reduced
        "dcgan64"
        8
        [| 3; 64; 64 |]
        MinusOneToOne
        [
            Layers.unflatten [| 8; 1; 1 |]
            up 8 16 1 0
            bn 16
            Layers.relu
            up 16 8 2 1
            bn 8
            Layers.relu
            up 8 4 2 1
            bn 4
            Layers.relu
            up 4 2 2 1
            bn 2
            Layers.relu
            up 2 3 2 1
            Layers.tanh
        ]
        [
            down 3 2 2 1
            lrelu
            down 2 4 2 1
            bn 4
            lrelu
            down 4 8 2 1
            bn 8
            lrelu
            down 8 16 2 1
            bn 16
            lrelu
            down 16 1 1 0
            Layers.flatten
        ]
        false

/// S4 (mbd28) with 1024 → 16, 128/64 channels → 8/4, minibatch discrimination 32×32 → 4×4.
let private mbd28Small =
    let n = Normal(0.0, 0.02)
    let zero = Constant 0.0

    let bn c =
        Normalization.batchNormWith (Normalization.kerasBatchNormConfig c 0.9 1e-5)

    let lin i o =
        Layers.linearWith {
            Layers.linearConfig i o with
                WeightInit = n
                BiasInit = zero
        }

    let convT i o =
        Layers.convTranspose2dWith {
            Layers.convConfig i o 4 with
                Stride = 2
                Padding = Same
                WeightInit = n
                BiasInit = zero
        }

    let conv i o =
        Layers.conv2dWith {
            Layers.convConfig i o 4 with
                Stride = 2
                Padding = Same
                WeightInit = TruncatedNormal 0.02
                BiasInit = zero
        }

    let lrelu = Layers.leakyRelu 0.2

    reduced
        "mbd28"
        6
        [| 1; 28; 28 |]
        ZeroToOne
        [
            lin 6 16
            bn 16
            Layers.relu
            lin 16 (8 * 7 * 7)
            bn (8 * 7 * 7)
            Layers.relu
            Layers.unflatten [| 8; 7; 7 |]
            convT 8 4
            bn 4
            Layers.relu
            convT 4 1
            Layers.sigmoid
        ]
        [
            conv 1 4
            lrelu
            conv 4 8
            bn 8
            lrelu
            Layers.flatten
            MinibatchDiscrimination.layer (8 * 7 * 7) 4 4
            lin (8 * 7 * 7 + 4) 16
            bn 16
            lrelu
            lin 16 1
        ]
        false

/// S5 (valid64) with channels 512/256/128 → 16/8/4 and 64/128/256 → 4/8/16.
let private valid64Small =
    let bn c =
        Normalization.batchNormWith (Normalization.kerasBatchNormConfig c 0.99 1e-3)

    let lrelu = Layers.leakyRelu 0.2

    reduced
        "valid64"
        8
        [| 3; 64; 64 |]
        MinusOneToOne
        [
            Layers.linear 8 (3 * 3 * 16)
            Layers.unflatten [| 16; 3; 3 |]
            lrelu
            Layers.convTranspose2d 16 8 3 3 Valid
            bn 8
            Layers.convTranspose2d 8 4 5 2 Valid
            bn 4
            Layers.convTranspose2d 4 3 4 3 Valid
            Layers.tanh
        ]
        [
            Layers.conv2d 3 4 5 3 Valid
            lrelu
            Layers.conv2d 4 8 5 3 Valid
            bn 8
            lrelu
            Layers.conv2d 8 16 5 3 Valid
            bn 16
            lrelu
            Layers.flatten
            Layers.linear 16 1
        ]
        false

[<Fact>]
let ``S1 mlp at reduced width: a step on the device equals the host's`` () = sameStep mlpSmall

[<Fact>]
let ``S2 dcgan28 at reduced width: a step on the device equals the host's`` () = sameStep dcgan28Small

[<Fact>]
let ``S3 dcgan64 at reduced width: a step on the device equals the host's`` () = sameStep dcgan64Small

[<Fact>]
let ``S4 mbd28 at reduced width: a step on the device equals the host's`` () = sameStep mbd28Small

[<Fact>]
let ``S5 valid64 at reduced width: a step on the device equals the host's`` () = sameStep valid64Small
