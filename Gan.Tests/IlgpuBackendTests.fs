/// The ILGPU device backend on ILGPU's CPU accelerator (the same kernels a GPU runs, executed
/// on CPU threads): device storage round-trips, operations run where their inputs are, mixing
/// places fails naming both, gradients and a training step equal the CPU's within tolerance.
/// Shapes are tiny: the CPU accelerator runs one OS thread per GPU thread.
module IlgpuBackendTests

open System
open Xunit
open ILGPU
open ILGPU.Runtime
open ILGPU.Runtime.CPU
open Gan.Functional
open Gan.Functional.Kernels
open Gan.Functional.Gan

/// The device under test: the one GAN_TEST_DEVICE names (e.g. cuda:0, as scripts/gpu-check.sh
/// sets it), opened as --device opens it; else one CPU accelerator for the whole test run:
/// 32-thread warps, 8 warps per group (256-thread groups, as on a GPU), one multiprocessor.
module Device =
    let private context =
        lazy (Context.Create(fun b -> b.CPU(CPUDevice(32, 8, 1)).EnableAlgorithms() |> ignore))

    let private backend =
        lazy
            (match Environment.GetEnvironmentVariable "GAN_TEST_DEVICE" with
             | null
             | "" -> IlgpuBackend(context.Force().CreateCPUAccelerator(0))
             | spec -> Devices.backend spec :?> IlgpuBackend)

    /// The backend on the shared CPU accelerator.
    let get () = backend.Force()

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

/// All parameters, optimizer moments and states of a training state, flattened by name.
let private flatState (s: TrainState) =
    let maps = [
        s.G.Params
        s.G.State
        s.D.Params
        s.D.State
        s.GOpt.Moment1
        s.GOpt.Moment2
        s.DOpt.Moment1
        s.DOpt.Moment2
    ]

    maps
    |> List.collect (fun m -> m |> Map.toList |> List.map snd)
    |> List.map Tensor.toArray64
    |> Array.concat

/// Two training steps of `model` at batch 2 from the same key, on `backend` for every
/// operation (state, data and noise created while it is selected).
let private twoSteps (backend: IBackend) (model: GanModel) =
    Backend.using backend (fun () ->
        let cfg = Training.defaultConfig 0.5
        let s0 = Training.init model cfg (Random.key 11UL)

        let real k =
            Tensor.randn (Random.key k) (Array.append [| 2 |] model.ImageShape)

        let s1, m1 = Training.step model cfg 1e-3 2e-3 (real 1UL) s0
        let s2, m2 = Training.step model cfg 1e-3 2e-3 (real 2UL) s1
        s2, [ m1; m2 ])

let private sameStep (model: GanModel) (tol: float) =
    let d = Device.get ()
    let sHost, mHost = twoSteps host model
    let sDev, mDev = twoSteps d model
    Assert.True(Tensor.isOnDevice (Map.toList sDev.G.Params |> List.head |> snd), "the state lives on the device")

    close
        tol
        (model.Name + " metrics")
        (mDev |> List.collect (fun m -> [ m.DLoss; m.GLoss ]) |> List.toArray)
        (mHost |> List.collect (fun m -> [ m.DLoss; m.GLoss ]) |> List.toArray)

    close tol (model.Name + " state") (flatState sDev) (flatState sHost)

[<Fact>]
let ``two toy2d training steps on the device equal the host's`` () =
    sameStep (Zoo.toy2dWith 2 8 2 false) 1e-4
