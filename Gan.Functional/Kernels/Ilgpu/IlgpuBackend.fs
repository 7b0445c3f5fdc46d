namespace Gan.Functional.Kernels

open System
open ILGPU
open ILGPU.Runtime
open Gan.Functional
open Gan.Functional.Kernels.Ilgpu

/// <summary>
/// The device backend on an ILGPU accelerator: a CUDA GPU, an OpenCL device, or ILGPU's CPU
/// accelerator (which runs the same kernels on the CPU, for tests). Tensors it creates live in
/// the accelerator's memory (<c>Storage.Device</c>); the engine runs every operation on device
/// tensors here (see <c>Tensor.toDevice</c>). Select it with <c>Backend.set</c> to make new
/// tensors (parameters, data, noise) start on the device.
/// </summary>
/// <remarks>
/// Kernels not ported to the device yet run as a host round trip: the inputs are copied to
/// the host, the reference kernel runs, and the result is copied back (correct, slow; the list
/// is <see cref="P:Gan.Functional.Kernels.IlgpuBackend.HostRoundTrips"/>). An allocation the
/// device cannot serve raises <see cref="T:Gan.Functional.DeviceOutOfMemoryException"/>.
/// The accelerator stays owned by the caller (dispose it after the last use of its tensors).
/// </remarks>
type IlgpuBackend(accelerator: Accelerator) as this =
    inherit BackendBase()
    static let reference = ReferenceBackend.Instance :> IBackend
    static let referenceOptimizer = ReferenceBackend.Instance :> IFusedOptimizer

    let deviceName =
        match accelerator.AcceleratorType with
        | AcceleratorType.Cuda -> sprintf "cuda (%s)" accelerator.Name
        | AcceleratorType.OpenCL -> sprintf "opencl (%s)" accelerator.Name
        | _ -> sprintf "ilgpu-cpu (%s)" accelerator.Name

    let roundTrips = Collections.Concurrent.ConcurrentDictionary<string, int64>()

    let freeBytes () =
        match accelerator with
        | :? ILGPU.Runtime.Cuda.CudaAccelerator as c ->
            try
                c.GetFreeMemory()
            with _ ->
                -1L
        | _ -> -1L

    let isOutOfMemory (e: exn) =
        match e with
        | :? OutOfMemoryException -> true
        | _ ->
            e.Message.Contains("OUT_OF_MEMORY", StringComparison.OrdinalIgnoreCase)
            || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)

    /// Allocates `length` elements, retrying once after collecting dead buffers (their
    /// finalizers free device memory), then failing with DeviceOutOfMemoryException.
    let allocate (dtype: DType) (length: int) : IlgpuBuffer =
        let n = int64 (max length 1)

        let attempt () =
            match dtype with
            | Float32 -> DeviceArray.F32(accelerator.Allocate1D<float32> n)
            | Float64 -> DeviceArray.F64(accelerator.Allocate1D<float> n)

        let memory =
            try
                attempt ()
            with e when isOutOfMemory e ->
                GC.Collect()
                GC.WaitForPendingFinalizers()
                GC.Collect()

                try
                    attempt ()
                with e when isOutOfMemory e ->
                    let size =
                        match dtype with
                        | Float32 -> 4L * n
                        | Float64 -> 8L * n

                    raise (DeviceOutOfMemoryException(deviceName, freeBytes (), size, e))

        IlgpuBuffer(this, deviceName, memory, length)

    /// The first n elements of a host array (the array itself when it has exactly n).
    let exact (a: 'T[]) (n: int) =
        if a.Length = n then a else Array.sub a 0 n

    let wrap (shape: int[]) (b: IlgpuBuffer) = {
        Shape = shape
        Storage = Storage.Device b
    }

    let upload (x: RawTensor) =
        match x.Storage with
        | Storage.Device d when obj.ReferenceEquals(d.Owner, this) -> x
        | _ ->
            let h = RawTensor.toHost x
            let n = Shape.numel h.Shape
            let b = allocate h.DType n

            match h.Storage, b.Memory with
            | Storage.F32 a, DeviceArray.F32 m when n > 0 -> m.View.SubView(0L, int64 n).CopyFromCPU(exact a n)
            | Storage.F64 a, DeviceArray.F64 m when n > 0 -> m.View.SubView(0L, int64 n).CopyFromCPU(exact a n)
            | _ -> ()

            wrap h.Shape b

    let down (x: RawTensor) = RawTensor.toHost x

    /// Writes host tensor `src` over the device buffer of `dst` (same dtype and element count).
    let overwrite (dst: RawTensor) (src: RawTensor) =
        let n = Shape.numel dst.Shape

        match dst.Storage, src.Storage with
        | Storage.Device(:? IlgpuBuffer as b), Storage.F32 a when n > 0 ->
            b.F32.SubView(0L, int64 n).CopyFromCPU(exact a n)
        | Storage.Device(:? IlgpuBuffer as b), Storage.F64 a when n > 0 ->
            b.F64.SubView(0L, int64 n).CopyFromCPU(exact a n)
        | _ when n = 0 -> ()
        | _ -> invalidOp "overwrite: the destination must be a buffer of this device with the source's dtype"

    /// Runs a reference kernel on host copies and uploads its result (kernels not yet ported).
    let viaHost (kernel: string) (f: unit -> RawTensor) =
        roundTrips.AddOrUpdate(kernel, 1L, (fun _ c -> c + 1L)) |> ignore
        upload (f ())

    /// The accelerator the kernels run on.
    member _.Accelerator = accelerator

    /// The device's name as errors show it.
    member _.DeviceName = deviceName

    /// How often each kernel ran as a host round trip (download, reference kernel, upload)
    /// because it is not ported to the device yet; empty when every call ran on the device.
    member _.HostRoundTrips =
        roundTrips
        |> Seq.map (fun kv -> kv.Key, kv.Value)
        |> Seq.sortBy fst
        |> Seq.toArray

    /// A copy of host tensor `x` in the device's memory (`x` itself when already there).
    member _.Upload(x: RawTensor) = upload x

    override _.Name = "ilgpu"

    override _.Unary(op, x) =
        viaHost "unary" (fun () -> reference.Unary(op, down x))

    override _.Binary(op, a, b, outShape) =
        viaHost "binary" (fun () -> reference.Binary(op, down a, down b, outShape))

    override _.Where(mask, a, b) =
        viaHost "where" (fun () -> reference.Where(down mask, down a, down b))

    override _.Reduce(op, x, axes) =
        viaHost "reduce" (fun () -> reference.Reduce(op, down x, axes))

    override _.ArgMax(x, axis) =
        roundTrips.AddOrUpdate("argmax", 1L, (fun _ c -> c + 1L)) |> ignore
        reference.ArgMax(down x, axis)

    override _.View(x, offset, strides, shape) =
        viaHost "view" (fun () -> reference.View(down x, offset, strides, shape))

    override _.Embed(x, shape, offset, strides) =
        viaHost "embed" (fun () -> reference.Embed(down x, shape, offset, strides))

    override _.Concat(xs, axis) =
        viaHost "concat" (fun () -> reference.Concat(Array.map down xs, axis))

    override _.Take(x, index, shape) =
        viaHost "take" (fun () -> reference.Take(down x, index, shape))

    override _.ScatterAdd(src, index, shape) =
        viaHost "scatter_add" (fun () -> reference.ScatterAdd(down src, index, shape))

    override _.MatMul(a, transA, b, transB, outShape) =
        viaHost "matmul" (fun () -> reference.MatMul(down a, transA, down b, transB, outShape))

    override _.Conv2d(x, w, spec) =
        viaHost "conv2d" (fun () -> reference.Conv2d(down x, down w, spec))

    override _.Conv2dInputGrad(g, w, spec, xShape) =
        viaHost "conv2d_input_grad" (fun () -> reference.Conv2dInputGrad(down g, down w, spec, xShape))

    override _.Conv2dWeightGrad(x, g, spec, wShape) =
        viaHost "conv2d_weight_grad" (fun () -> reference.Conv2dWeightGrad(down x, down g, spec, wShape))

    override _.MaxPool2dIndices(x, kh, kw, spec) =
        roundTrips.AddOrUpdate("max_pool2d", 1L, (fun _ c -> c + 1L)) |> ignore
        reference.MaxPool2dIndices(down x, kh, kw, spec)

    override _.Cast(x, dtype) =
        if x.DType = dtype then
            x
        else
            viaHost "cast" (fun () -> reference.Cast(down x, dtype))

    override _.LeakyRelu(x, alpha) =
        viaHost "leaky_relu" (fun () -> reference.LeakyRelu(down x, alpha))

    override _.LeakyReluBackward(g, x, alpha) =
        viaHost "leaky_relu_backward" (fun () -> reference.LeakyReluBackward(down g, down x, alpha))

    override _.PairwiseL1(x, y) =
        viaHost "pairwise_l1" (fun () -> reference.PairwiseL1(down x, down y))

    override _.PairwiseL1Backward(g, x, y) =
        viaHost "pairwise_l1_backward" (fun () -> reference.PairwiseL1Backward(down g, down x, down y))

    override _.BatchNormForward(x, gamma, beta, eps) =
        roundTrips.AddOrUpdate("batch_norm", 1L, (fun _ c -> c + 1L)) |> ignore
        let y, m, v = reference.BatchNormForward(down x, down gamma, down beta, eps)
        upload y, upload m, upload v

    override _.BatchNormBackward(g, x, gamma, mean, var, eps) =
        roundTrips.AddOrUpdate("batch_norm_backward", 1L, (fun _ c -> c + 1L)) |> ignore

        let dx, dg, db =
            reference.BatchNormBackward(down g, down x, down gamma, down mean, down var, eps)

        upload dx, upload dg, upload db

    override _.AdamStep(p, g, m, v, c) =
        roundTrips.AddOrUpdate("adam", 1L, (fun _ c -> c + 1L)) |> ignore
        let p', m', v' = referenceOptimizer.AdamStep(down p, down g, down m, down v, c)
        upload p', upload m', upload v'

    override this.AdamStepDonated(p, g, m, v, c) =
        roundTrips.AddOrUpdate("adam", 1L, (fun _ c -> c + 1L)) |> ignore
        let p', m', v' = referenceOptimizer.AdamStep(down p, down g, down m, down v, c)
        // donation: the new moments go over the old ones' device buffers
        overwrite m m'
        overwrite v v'
        upload p'

    override _.Recycle x =
        match x.Storage with
        | Storage.Device(:? IlgpuBuffer as b) when obj.ReferenceEquals(b.Owner, this) -> b.Free()
        | _ -> ()

    interface IDeviceBackend with
        member _.DeviceName = deviceName
        member _.Upload x = upload x
