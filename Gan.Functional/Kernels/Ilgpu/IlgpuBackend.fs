namespace Gan.Functional.Kernels

open System
open System.Collections.Generic
open System.Runtime.CompilerServices
open ILGPU
open ILGPU.Runtime
open Gan.Functional
open Gan.Functional.Kernels.Ilgpu

type internal V = ArrayView<float32>
type internal VI = ArrayView<int>
type internal VD = ArrayView<float>
type internal S = AcceleratorStream
type internal K = KernelConfig

/// The launchers of the kernels in <c>IlgpuKernels</c> on one accelerator, each compiled on
/// first use.
[<Sealed>]
type internal KernelCache(accelerator: Accelerator) =
    let cache = Dictionary<string, Delegate>()

    /// The launcher of kernel `name`, a delegate taking the stream and the launch config first.
    member _.Get<'D when 'D :> Delegate>(name: string) : 'D =
        match cache.TryGetValue name with
        | true, d -> d :?> 'D
        | _ ->
            let mi =
                match
                    typeof<IlgpuKernels>
                        .GetMethod(
                            name,
                            Reflection.BindingFlags.Public
                            ||| Reflection.BindingFlags.NonPublic
                            ||| Reflection.BindingFlags.Static
                        )
                with
                | null -> invalidOp (sprintf "no device kernel named %s" name)
                | m -> m

            let d = accelerator.LoadKernel<'D>(mi)
            cache.[name] <- d :> Delegate
            d

/// <summary>
/// The device backend on an ILGPU accelerator: a CUDA GPU, an OpenCL device, or ILGPU's CPU
/// accelerator (which runs the same kernels on the CPU, for tests). Tensors it creates live in
/// the accelerator's memory (<c>Storage.Device</c>); the engine runs every operation on device
/// tensors here (see <c>Tensor.toDevice</c>). Select it with <c>Backend.set</c> to make new
/// tensors (parameters, data, noise) start on the device.
/// </summary>
/// <remarks>
/// Every float32 kernel runs on the device (Kernels/Ilgpu/IlgpuKernels.fs). Float64 tensors
/// (gradient checks only) and empty tensors run as a host round trip: the inputs are copied to
/// the host, the reference kernel runs, and the result is copied back (correct, slow; counted
/// in <see cref="P:Gan.Functional.Kernels.IlgpuBackend.HostRoundTrips"/>). An allocation the
/// device cannot serve raises <see cref="T:Gan.Functional.DeviceOutOfMemoryException"/>.
/// The accelerator stays owned by the caller (dispose it after the last use of its tensors).
/// On a CUDA device float32 matrix products (matmul and the convolutions' GEMMs) go to cuBLAS
/// when libcublas.so.13, .12, .11 or .10 loads and GAN_CUBLAS is not 0, else to the backend's own
/// GEMM kernel; <see cref="P:Gan.Functional.Kernels.IlgpuBackend.MatMulDescription"/> says which
/// and why.
/// </remarks>
type IlgpuBackend internal (accelerator: Accelerator, threadsPerGroup: int, blas: Result<CuBlasGemm, string>) as this =
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

    // The convolutions' column buffer, kept between calls and grown to the largest asked for:
    // kernels run in order on one stream, so a call's im2col overwrites it only after the
    // previous call's kernels have read it. Given back when an allocation fails, unless a
    // convolution is using it.
    let mutable columns: IlgpuBuffer option = None
    let mutable columnsInUse = false
    let mutable columnAllocations = 0L

    let releaseColumns () =
        match columns with
        | Some b when not columnsInUse ->
            b.Free()
            columns <- None
        | _ -> ()

    /// Allocates `length` elements, retrying once after giving back the column buffer and
    /// collecting dead buffers (their finalizers free device memory), then failing with
    /// DeviceOutOfMemoryException.
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
                releaseColumns ()
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

    // ------------------------------------------------------------------ launching

    /// Threads per group: the largest power of two up to the limit the accelerator allows (the
    /// tiled GEMM needs exactly 256; group reductions need a power of two). The limit is
    /// `threadsPerGroup` when positive, else 256 on a GPU and 16 on ILGPU's CPU accelerator,
    /// whose barriers synchronise OS threads (256-thread groups make a GEMM take seconds there).
    let groupSize =
        let limit =
            if threadsPerGroup > 0 then
                threadsPerGroup
            elif accelerator.AcceleratorType = AcceleratorType.CPU then
                16
            else
                256

        let mutable s = 1

        while s * 2 <= min (min 256 limit) accelerator.MaxNumThreadsPerGroup do
            s <- s * 2

        s

    /// Groups enough to fill the device twice over; grid-stride loops cover the rest.
    let maxGroups =
        max
            1
            (2
             * accelerator.NumMultiprocessors
             * max 1 (accelerator.MaxNumThreadsPerMultiprocessor / groupSize))

    let stream = accelerator.DefaultStream

    /// A config of enough groups for n work items, one per thread (at most maxGroups).
    let forItems (n: int) =
        let groups = max 1 (min maxGroups ((n + groupSize - 1) / groupSize))
        KernelConfig(Index1D(groups), Index1D(groupSize))

    /// A config of one group per work item (at most maxGroups).
    let forGroups (n: int) =
        KernelConfig(Index1D(max 1 (min maxGroups n)), Index1D(groupSize))

    let kernels = KernelCache(accelerator)

    // int buffers of shapes/strides/offsets, uploaded once per distinct content
    let metaCache = Dictionary<string, MemoryBuffer1D<int, Stride1D.Dense>>()
    // index arrays of take/scatter-add (the engine never mutates them), once per array
    let indexCache = ConditionalWeakTable<int[], MemoryBuffer1D<int, Stride1D.Dense>>()

    let meta (values: int[]) =
        let key = String.Join(",", values)

        match metaCache.TryGetValue key with
        | true, b -> b.AsContiguous()
        | _ ->
            let b = accelerator.Allocate1D<int>(int64 (max 1 values.Length))

            if values.Length > 0 then
                b.View.SubView(0L, int64 values.Length).CopyFromCPU(values)

            metaCache.[key] <- b
            b.AsContiguous()

    let indexBuffer (index: int[]) =
        match indexCache.TryGetValue index with
        | true, b -> b.AsContiguous()
        | _ ->
            let b = accelerator.Allocate1D<int>(int64 (max 1 index.Length))

            if index.Length > 0 then
                b.View.SubView(0L, int64 index.Length).CopyFromCPU(index)

            indexCache.AddOrUpdate(index, b)
            b.AsContiguous()

    let asBuffer (x: RawTensor) =
        match x.Storage with
        | Storage.Device(:? IlgpuBuffer as b) -> b
        | _ -> invalidOp "not a buffer of this backend"

    /// The float32 view of a tensor on this device (host tensors are uploaded first).
    let view (x: RawTensor) = (asBuffer (upload x)).F32

    /// A fresh float32 tensor of `shape` on the device.
    let fresh (shape: int[]) =
        let b = allocate Float32 (Shape.numel shape)
        wrap shape b, b.F32

    /// True when every tensor is float32 and non-empty: the device kernels' domain.
    let onDevice (xs: RawTensor list) =
        xs |> List.forall (fun x -> x.DType = Float32 && Shape.numel x.Shape > 0)

    let fill (n: int) (v: float32) (y: ArrayView<float32>) =
        if n > 0 then
            (kernels.Get<Action<S, K, int, float32, V>>("Fill")).Invoke(stream, forItems n, n, v, y)

    /// The address of a view's first element (a device pointer; host memory on ILGPU's CPU
    /// accelerator), for cuBLAS.
    let pointer (v: ArrayView<float32>) =
        let c = v :> IContiguousArrayView
        c.Buffer.NativePtr + nativeint c.IndexInBytes

    /// A batched product into `c`: for each batch bi, C_bi (m×n) = op(A) op(B) with A read at
    /// aOff[bi] and B at bOff[bi] (transposes: A stored k×m, B stored n×k).
    let gemm
        (a: ArrayView<float32>)
        (aOff: int[])
        transA
        (b: ArrayView<float32>)
        (bOff: int[])
        transB
        m
        n
        k
        (c: ArrayView<float32>)
        =
        let batches = aOff.Length

        match blas with
        | Ok cublas -> cublas.Gemm(pointer a, aOff, transA, pointer b, bOff, transB, m, n, k, pointer c)
        | Error _ when groupSize >= 256 ->
            let tiles = batches * ((m + 15) / 16) * ((n + 15) / 16)

            (kernels.Get<Action<S, K, int, int, int, int, int, int, VI, VI, V, V, V>>("MatMulTiled"))
                .Invoke(
                    stream,
                    forGroups tiles,
                    m,
                    n,
                    k,
                    batches,
                    (if transA then 1 else 0),
                    (if transB then 1 else 0),
                    meta aOff,
                    meta bOff,
                    a,
                    b,
                    c
                )
        | Error _ ->
            (kernels.Get<Action<S, K, int, int, int, int, int, int, VI, VI, V, V, V>>("MatMulSimple"))
                .Invoke(
                    stream,
                    forItems (batches * m * n),
                    m,
                    n,
                    k,
                    batches,
                    (if transA then 1 else 0),
                    (if transB then 1 else 0),
                    meta aOff,
                    meta bOff,
                    a,
                    b,
                    c
                )

    let mutable twoPass = 0L

    /// Sum, max or min of x over sorted `axes`, kept as size 1: one thread per output for
    /// short reductions, one group per output for long ones, and two passes (several groups
    /// per output, then their partials) where the outputs are too few to fill the device.
    let reduce (op: ReduceOp) (x: RawTensor) (axes: int[]) =
        let s = x.Shape
        let st = Shape.strides s

        let kept = [|
            for d in 0 .. s.Length - 1 do
                if not (Array.contains d axes) then
                    d
        |]

        let keptShape = kept |> Array.map (fun d -> s.[d])
        let redShape = axes |> Array.map (fun d -> s.[d])
        let nOut = Shape.numel keptShape
        let redCount = Shape.numel redShape

        let m =
            meta (
                Array.concat [
                    keptShape
                    kept |> Array.map (fun d -> st.[d])
                    redShape
                    axes |> Array.map (fun d -> st.[d])
                ]
            )

        let code =
            match op with
            | ReduceSum -> 0
            | ReduceMax -> 1
            | ReduceMin -> 2

        let y, yv = fresh (Shape.reduceKeep s axes)

        let run name config nOut keptRank redRank redCount meta x y =
            (kernels.Get<Action<S, K, int, int, int, int, int, VI, V, V>> name)
                .Invoke(stream, config, code, nOut, keptRank, redRank, redCount, meta, x, y)

        // `parts` groups per output (ReducePartial; 1: the output itself)
        let grouped parts nOut keptRank redRank redCount meta x y =
            (kernels.Get<Action<S, K, int, int, int, int, int, int, VI, V, V>> "ReducePartial")
                .Invoke(stream, forGroups (nOut * parts), code, nOut, parts, keptRank, redRank, redCount, meta, x, y)

        // groups per output for the first of two passes: enough to fill the device where one
        // group per output would leave it idle, each with at least 4 elements a thread
        let parts =
            if groupSize >= 2 then
                min (maxGroups / nOut) (redCount / (4 * groupSize))
            else
                0

        if parts >= 2 then
            twoPass <- twoPass + 1L
            let partial = allocate Float32 (nOut * parts)

            grouped parts nOut kept.Length axes.Length redCount m (view x) partial.F32

            // the partials [nOut, parts], reduced over their last axis
            let pm = meta [| nOut; parts; parts; 1 |]

            if parts >= 64 then
                grouped 1 nOut 1 1 parts pm partial.F32 yv
            else
                run "ReduceThread" (forItems nOut) nOut 1 1 parts pm partial.F32 yv

            partial.Free()
        elif redCount >= 64 && groupSize >= 2 then
            grouped 1 nOut kept.Length axes.Length redCount m (view x) yv
        else
            run "ReduceThread" (forItems nOut) nOut kept.Length axes.Length redCount m (view x) yv

        y

    let geometry (spec: ConvSpec) (xShape: int[]) (wShape: int[]) (yShape: int[]) = {
        N = xShape.[0]
        C = xShape.[1]
        H = xShape.[2]
        W = xShape.[3]
        G = spec.Groups
        Cg = xShape.[1] / spec.Groups
        KH = wShape.[2]
        KW = wShape.[3]
        OH = yShape.[2]
        OW = yShape.[3]
        SH = spec.StrideH
        SW = spec.StrideW
        PT = spec.PadTop
        PL = spec.PadLeft
        DH = spec.DilationH
        DW = spec.DilationW
    }

    /// `f` given the column buffer with room for at least n float32s (kept, or made larger);
    /// its first n elements are the caller's until `f` returns.
    let withColumns (n: int) (f: ArrayView<float32> -> 'T) : 'T =
        let b =
            match columns with
            | Some b when b.Length >= n -> b
            | _ ->
                releaseColumns ()
                let b = allocate Float32 n
                columnAllocations <- columnAllocations + 1L
                columns <- Some b
                b

        columnsInUse <- true

        try
            f b.F32
        finally
            columnsInUse <- false

    /// Writes the columns [N, G, Cg·KH·KW, OH·OW] of x into `cols`.
    let im2col (geo: ConvGeom) (x: RawTensor) (cols: ArrayView<float32>) =
        let total = geo.N * geo.G * geo.Cg * geo.KH * geo.KW * geo.OH * geo.OW

        (kernels.Get<Action<S, K, int, ConvGeom, V, V>>("Im2col"))
            .Invoke(stream, forItems total, total, geo, view x, cols)

    let countTrip (kernel: string) =
        roundTrips.AddOrUpdate(kernel, 1L, (fun _ c -> c + 1L)) |> ignore

    /// The backend on `accelerator` with the default group size (256 threads on a GPU, 16 on
    /// ILGPU's CPU accelerator).
    new(accelerator: Accelerator) = IlgpuBackend(accelerator, 0)

    /// The backend on `accelerator` with groups of at most `threadsPerGroup` threads (0: the
    /// default); on a CUDA device with cuBLAS for float32 products where it loads (GAN_CUBLAS=0:
    /// never).
    new(accelerator: Accelerator, threadsPerGroup: int) =
        IlgpuBackend(accelerator, threadsPerGroup, CuBlas.forAccelerator Knobs.cublas CuBlas.library accelerator)

    /// What multiplies float32 matrices here and why, e.g. "cuBLAS: loaded libcublas.so.12",
    /// or "cuBLAS: not found (…), tiled kernel" where the backend's own GEMM kernel does.
    member _.MatMulDescription =
        match blas with
        | Ok cublas -> sprintf "cuBLAS: loaded %s" cublas.File
        | Error why ->
            sprintf
                "cuBLAS: %s, %s kernel"
                why
                (if groupSize >= 256 then
                     "tiled"
                 else
                     "one-thread-per-output")

    /// The accelerator the kernels run on.
    member _.Accelerator = accelerator

    /// Threads per group of the kernels' launches (256 selects the tiled GEMM).
    member _.ThreadsPerGroup = groupSize

    /// The device's name as errors show it.
    member _.DeviceName = deviceName

    /// How often each kernel ran as a host round trip (download, reference kernel, upload):
    /// float64 and empty tensors; empty when every call ran on the device.
    member _.HostRoundTrips =
        roundTrips
        |> Seq.map (fun kv -> kv.Key, kv.Value)
        |> Seq.sortBy fst
        |> Seq.toArray

    /// How often the convolutions' column buffer was (re)allocated (tests).
    member internal _.ColumnAllocations = columnAllocations

    /// How many reductions ran in two passes (tests).
    member internal _.TwoPassReductions = twoPass

    /// A copy of host tensor `x` in the device's memory (`x` itself when already there).
    member _.Upload(x: RawTensor) = upload x

    /// Waits until every kernel launched so far has finished (timing; reading values waits by
    /// itself).
    member _.Synchronize() = accelerator.Synchronize()

    override _.Name = "ilgpu"

    override _.Unary(op, x) =
        if not (onDevice [ x ]) then
            viaHost "unary" (fun () -> reference.Unary(op, down x))
        else
            let code =
                match op with
                | UnaryOp.Neg -> 0
                | UnaryOp.Exp -> 1
                | UnaryOp.Log -> 2
                | UnaryOp.Sqrt -> 3
                | UnaryOp.Tanh -> 4
                | UnaryOp.Sigmoid -> 5
                | UnaryOp.Abs -> 6
                | UnaryOp.Sign -> 7

            let n = Shape.numel x.Shape
            let y, yv = fresh x.Shape

            (kernels.Get<Action<S, K, int, int, V, V>>("Unary")).Invoke(stream, forItems n, code, n, view x, yv)

            y

    override _.Binary(op, a, b, outShape) =
        if not (onDevice [ a; b ]) || Shape.numel outShape = 0 then
            viaHost "binary" (fun () -> reference.Binary(op, down a, down b, outShape))
        else
            let code =
                match op with
                | BinaryOp.Add -> 0
                | BinaryOp.Sub -> 1
                | BinaryOp.Mul -> 2
                | BinaryOp.Div -> 3
                | BinaryOp.Pow -> 4
                | BinaryOp.Maximum -> 5
                | BinaryOp.Minimum -> 6
                | BinaryOp.Equal -> 7
                | BinaryOp.Less -> 8
                | BinaryOp.LessEqual -> 9
                | BinaryOp.Greater -> 10
                | BinaryOp.GreaterEqual -> 11

            let n = Shape.numel outShape
            let y, yv = fresh outShape

            if a.Shape = outShape && b.Shape = outShape then
                (kernels.Get<Action<S, K, int, int, V, V, V>>("BinarySame"))
                    .Invoke(stream, forItems n, code, n, view a, view b, yv)
            else
                let m =
                    meta (
                        Array.concat [
                            outShape
                            Strided.broadcastStrides a.Shape outShape
                            Strided.broadcastStrides b.Shape outShape
                        ]
                    )

                (kernels.Get<Action<S, K, int, int, int, VI, V, V, V>>("Binary"))
                    .Invoke(stream, forItems n, code, n, outShape.Length, m, view a, view b, yv)

            y

    override _.Where(mask, a, b) =
        if not (onDevice [ mask; a; b ]) then
            viaHost "where" (fun () -> reference.Where(down mask, down a, down b))
        else
            let n = Shape.numel a.Shape
            let y, yv = fresh a.Shape

            (kernels.Get<Action<S, K, int, V, V, V, V>>("Where"))
                .Invoke(stream, forItems n, n, view mask, view a, view b, yv)

            y

    override _.Reduce(op, x, axes) =
        if not (onDevice [ x ]) then
            viaHost "reduce" (fun () -> reference.Reduce(op, down x, axes))
        else
            reduce op x axes

    override _.ArgMax(x, axis) =
        if not (onDevice [ x ]) then
            countTrip "argmax"
            reference.ArgMax(down x, axis)
        else
            let s = x.Shape
            let outer = Shape.numel s.[.. axis - 1]
            let len = s.[axis]
            let inner = Shape.numel s.[axis + 1 ..]
            let nOut = outer * inner
            use y = accelerator.Allocate1D<int>(int64 (max 1 nOut))

            (kernels.Get<Action<S, K, int, int, int, V, VI>>("ArgMax"))
                .Invoke(stream, forItems nOut, nOut, len, inner, view x, y.AsContiguous())

            let host = Array.zeroCreate<int> nOut

            if nOut > 0 then
                y.View.SubView(0L, int64 nOut).CopyToCPU(host)

            host

    override _.View(x, offset, strides, shape) =
        if not (onDevice [ x ]) || Shape.numel shape = 0 then
            viaHost "view" (fun () -> reference.View(down x, offset, strides, shape))
        else
            let n = Shape.numel shape
            let y, yv = fresh shape

            (kernels.Get<Action<S, K, int, int, int, VI, V, V>>("View"))
                .Invoke(stream, forItems n, n, shape.Length, offset, meta (Array.append shape strides), view x, yv)

            y

    override _.Embed(x, shape, offset, strides) =
        if not (onDevice [ x ]) || Shape.numel shape = 0 then
            viaHost "embed" (fun () -> reference.Embed(down x, shape, offset, strides))
        else
            let n = Shape.numel x.Shape
            let y, yv = fresh shape
            fill (Shape.numel shape) 0.0f yv

            (kernels.Get<Action<S, K, int, int, int, VI, V, V>>("Embed"))
                .Invoke(stream, forItems n, n, x.Shape.Length, offset, meta (Array.append x.Shape strides), view x, yv)

            y

    override _.Concat(xs, axis) =
        if not (onDevice (List.ofArray xs)) then
            viaHost "concat" (fun () -> reference.Concat(Array.map down xs, axis))
        else
            let outShape = Array.copy xs.[0].Shape
            outShape.[axis] <- xs |> Array.sumBy (fun x -> x.Shape.[axis])
            let st = Shape.strides outShape
            let y, yv = fresh outShape
            let mutable at = 0

            for x in xs do
                let n = Shape.numel x.Shape

                (kernels.Get<Action<S, K, int, int, int, VI, V, V>>("Embed"))
                    .Invoke(
                        stream,
                        forItems n,
                        n,
                        x.Shape.Length,
                        at * st.[axis],
                        meta (Array.append x.Shape st),
                        view x,
                        yv
                    )

                at <- at + x.Shape.[axis]

            y

    override _.Take(x, index, shape) =
        if not (onDevice [ x ]) || index.Length = 0 then
            viaHost "take" (fun () -> reference.Take(down x, index, shape))
        else
            let y, yv = fresh shape

            (kernels.Get<Action<S, K, int, VI, V, V>>("Take"))
                .Invoke(stream, forItems index.Length, index.Length, indexBuffer index, view x, yv)

            y

    override _.ScatterAdd(src, index, shape) =
        if not (onDevice [ src ]) || Shape.numel shape = 0 then
            viaHost "scatter_add" (fun () -> reference.ScatterAdd(down src, index, shape))
        else
            let y, yv = fresh shape
            fill (Shape.numel shape) 0.0f yv

            (kernels.Get<Action<S, K, int, VI, V, V>>("ScatterAdd"))
                .Invoke(stream, forItems index.Length, index.Length, indexBuffer index, view src, yv)

            y

    override _.MatMul(a, transA, b, transB, outShape) =
        let r = outShape.Length
        let m, n = outShape.[r - 2], outShape.[r - 1]

        let k =
            if transA then
                a.Shape.[a.Shape.Length - 2]
            else
                a.Shape.[a.Shape.Length - 1]

        if not (onDevice [ a; b ]) || Shape.numel outShape = 0 then
            viaHost "matmul" (fun () -> reference.MatMul(down a, transA, down b, transB, outShape))
        else
            let batch = outShape.[.. r - 3]
            let batches = Shape.numel batch

            // each batch's offsets in a and b, broadcasting their batch axes (right-aligned)
            let offsets (s: int[]) (matrix: int) =
                let bs = s.[.. s.Length - 3]
                let strides = Strided.broadcastStrides bs batch

                Array.init batches (fun bi ->
                    let mutable rem = bi
                    let mutable off = 0

                    for d in batch.Length - 1 .. -1 .. 0 do
                        off <- off + (rem % batch.[d]) * strides.[d]
                        rem <- rem / batch.[d]

                    off * matrix)

            let y, yv = fresh outShape
            gemm (view a) (offsets a.Shape (m * k)) transA (view b) (offsets b.Shape (k * n)) transB m n k yv
            y

    override _.Conv2d(x, w, spec) =
        if not (onDevice [ x; w ]) then
            viaHost "conv2d" (fun () -> reference.Conv2d(down x, down w, spec))
        else
            let yShape = ConvSpec.outputShape "conv2d" spec x.Shape w.Shape
            let geo = geometry spec x.Shape w.Shape yShape
            let og = w.Shape.[0] / geo.G
            let kk = geo.Cg * geo.KH * geo.KW
            let p = geo.OH * geo.OW
            let y, yv = fresh yShape
            let nb = geo.N * geo.G

            withColumns (nb * kk * p) (fun cols ->
                im2col geo x cols

                gemm
                    (view w)
                    (Array.init nb (fun i -> (i % geo.G) * og * kk))
                    false
                    cols
                    (Array.init nb (fun i -> i * kk * p))
                    false
                    og
                    p
                    kk
                    yv)

            y

    override _.Conv2dInputGrad(g, w, spec, xShape) =
        if not (onDevice [ g; w ]) then
            viaHost "conv2d_input_grad" (fun () -> reference.Conv2dInputGrad(down g, down w, spec, xShape))
        else
            let geo = geometry spec xShape w.Shape g.Shape
            let og = w.Shape.[0] / geo.G
            let kk = geo.Cg * geo.KH * geo.KW
            let p = geo.OH * geo.OW
            let nb = geo.N * geo.G
            let dx, dxv = fresh xShape
            let total = Shape.numel xShape

            withColumns (nb * kk * p) (fun cols ->
                // cols[n, g] = W_gᵀ (K×Og) · g[n, g] (Og×P)
                gemm
                    (view w)
                    (Array.init nb (fun i -> (i % geo.G) * og * kk))
                    true
                    (view g)
                    (Array.init nb (fun i -> i * og * p))
                    false
                    kk
                    p
                    og
                    cols

                (kernels.Get<Action<S, K, int, ConvGeom, V, V>>("Col2im"))
                    .Invoke(stream, forItems total, total, geo, cols, dxv))

            dx

    override _.Conv2dWeightGrad(x, g, spec, wShape) =
        if not (onDevice [ x; g ]) then
            viaHost "conv2d_weight_grad" (fun () -> reference.Conv2dWeightGrad(down x, down g, spec, wShape))
        else
            let geo = geometry spec x.Shape wShape g.Shape
            let og = wShape.[0] / geo.G
            let kk = geo.Cg * geo.KH * geo.KW
            let p = geo.OH * geo.OW
            let nb = geo.N * geo.G
            // per image and group: g[n, g] (Og×P) · cols[n, g]ᵀ (P×K), then summed over images
            let per, perv = fresh [| geo.N; geo.G * og * kk |]

            withColumns (nb * kk * p) (fun cols ->
                im2col geo x cols

                gemm
                    (view g)
                    (Array.init nb (fun i -> i * og * p))
                    false
                    cols
                    (Array.init nb (fun i -> i * kk * p))
                    true
                    og
                    kk
                    p
                    perv)

            let summed = reduce ReduceSum per [| 0 |]
            (asBuffer per).Free()

            {
                summed with
                    Shape = Array.copy wShape
            }

    override _.MaxPool2dIndices(x, kh, kw, spec) =
        if not (onDevice [ x ]) then
            countTrip "max_pool2d"
            reference.MaxPool2dIndices(down x, kh, kw, spec)
        else
            let s = x.Shape

            if s.Length <> 4 then
                Shape.fail "maxPool2d" (sprintf "expected 4-D input [N,C,H,W], got %s" (Shape.show s))

            let yShape =
                ConvSpec.outputShape "maxPool2d" { spec with Groups = 1 } [| s.[0]; 1; s.[2]; s.[3] |] [|
                    1
                    1
                    kh
                    kw
                |]

            let geo =
                geometry { spec with Groups = 1 } [| s.[0] * s.[1]; 1; s.[2]; s.[3] |] [| 1; 1; kh; kw |] yShape

            let total = s.[0] * s.[1] * geo.OH * geo.OW
            use y = accelerator.Allocate1D<int>(int64 (max 1 total))

            (kernels.Get<Action<S, K, int, ConvGeom, V, VI>>("MaxPoolIndices"))
                .Invoke(stream, forItems total, total, geo, view x, y.AsContiguous())

            let host = Array.zeroCreate<int> total

            if total > 0 then
                y.View.SubView(0L, int64 total).CopyToCPU(host)

            if host |> Array.exists (fun i -> i < 0) then
                Shape.fail "maxPool2d" (sprintf "a window lies wholly in the padding for input %s" (Shape.show s))

            host, [| s.[0]; s.[1]; geo.OH; geo.OW |]

    override _.Cast(x, dtype) =
        let n = Shape.numel x.Shape

        if x.DType = dtype then
            x
        elif n = 0 then
            viaHost "cast" (fun () -> reference.Cast(down x, dtype))
        else
            let src = asBuffer (upload x)
            let dst = allocate dtype n

            match dtype with
            | Float64 ->
                (kernels.Get<Action<S, K, int, V, VD>>("CastToF64")).Invoke(stream, forItems n, n, src.F32, dst.F64)
            | Float32 ->
                (kernels.Get<Action<S, K, int, VD, V>>("CastToF32")).Invoke(stream, forItems n, n, src.F64, dst.F32)

            wrap x.Shape dst

    override _.LeakyRelu(x, alpha) =
        if not (onDevice [ x ]) then
            viaHost "leaky_relu" (fun () -> reference.LeakyRelu(down x, alpha))
        else
            let n = Shape.numel x.Shape
            let y, yv = fresh x.Shape

            (kernels.Get<Action<S, K, int, float32, V, V>>("LeakyRelu"))
                .Invoke(stream, forItems n, n, float32 alpha, view x, yv)

            y

    override _.LeakyReluBackward(g, x, alpha) =
        if not (onDevice [ g; x ]) then
            viaHost "leaky_relu_backward" (fun () -> reference.LeakyReluBackward(down g, down x, alpha))
        else
            let n = Shape.numel x.Shape
            let y, yv = fresh x.Shape

            (kernels.Get<Action<S, K, int, float32, V, V, V>>("LeakyReluBackward"))
                .Invoke(stream, forItems n, n, float32 alpha, view g, view x, yv)

            y

    override _.PairwiseL1(x, y) =
        if not (onDevice [ x; y ]) then
            viaHost "pairwise_l1" (fun () -> reference.PairwiseL1(down x, down y))
        else
            let gg, pp, cc = x.Shape.[0], x.Shape.[1], x.Shape.[2]
            let rr = y.Shape.[1]
            let d, dv = fresh [| gg; pp; rr |]
            let total = gg * pp * rr

            (kernels.Get<Action<S, K, int, int, int, int, V, V, V>>("PairwiseL1"))
                .Invoke(stream, forItems total, total, pp, rr, cc, view x, view y, dv)

            d

    override _.PairwiseL1Backward(g, x, y) =
        if not (onDevice [ g; x; y ]) then
            viaHost "pairwise_l1_backward" (fun () -> reference.PairwiseL1Backward(down g, down x, down y))
        else
            let pp, cc = x.Shape.[1], x.Shape.[2]
            let rr = y.Shape.[1]
            let dx, dxv = fresh x.Shape
            let total = Shape.numel x.Shape

            (kernels.Get<Action<S, K, int, int, int, int, V, V, V, V>>("PairwiseL1Backward"))
                .Invoke(stream, forItems total, total, pp, rr, cc, view g, view x, view y, dxv)

            dx

    override _.BatchNormForward(x, gamma, beta, eps) =
        if not (onDevice [ x; gamma; beta ]) then
            countTrip "batch_norm"
            let y, m, v = reference.BatchNormForward(down x, down gamma, down beta, eps)
            upload y, upload m, upload v
        else
            let n, c = x.Shape.[0], x.Shape.[1]
            let l = Shape.numel x.Shape.[2..]
            let mean, meanv = fresh [| c |]
            let var, varv = fresh [| c |]

            (kernels.Get<Action<S, K, int, int, int, V, V, V>>("BatchNormStats"))
                .Invoke(stream, forGroups c, n, c, l, view x, meanv, varv)

            let total = Shape.numel x.Shape
            let y, yv = fresh x.Shape

            (kernels.Get<Action<S, K, int, int, int, float32, V, V, V, V, V, V>>("BatchNormApply"))
                .Invoke(
                    stream,
                    forItems total,
                    total,
                    c,
                    l,
                    float32 eps,
                    view x,
                    view gamma,
                    view beta,
                    meanv,
                    varv,
                    yv
                )

            y, mean, var

    override _.BatchNormBackward(g, x, gamma, mean, var, eps) =
        if not (onDevice [ g; x; gamma; mean; var ]) then
            countTrip "batch_norm_backward"

            let dx, dg, db =
                reference.BatchNormBackward(down g, down x, down gamma, down mean, down var, eps)

            upload dx, upload dg, upload db
        else
            let n, c = x.Shape.[0], x.Shape.[1]
            let l = Shape.numel x.Shape.[2..]
            let dgamma, dgv = fresh [| c |]
            let dbeta, dbv = fresh [| c |]
            let gv, xv, mv, vv = view g, view x, view mean, view var

            (kernels.Get<Action<S, K, int, int, int, float32, V, V, V, V, V, V>>("BatchNormGradStats"))
                .Invoke(stream, forGroups c, n, c, l, float32 eps, gv, xv, mv, vv, dgv, dbv)

            let total = Shape.numel x.Shape
            let dx, dxv = fresh x.Shape

            (kernels.Get<Action<S, K, int, int, int, int, float32, V, V, V, V, V, V, V, V>>("BatchNormGradApply"))
                .Invoke(
                    stream,
                    forItems total,
                    total,
                    c,
                    l,
                    n * l,
                    float32 eps,
                    gv,
                    xv,
                    view gamma,
                    mv,
                    vv,
                    dgv,
                    dbv,
                    dxv
                )

            dx, dgamma, dbeta

    member private _.Adam(p: RawTensor, g: RawTensor, m: RawTensor, v: RawTensor, c: AdamCoefficients, p2, m2, v2) =
        let n = Shape.numel p.Shape

        let s = {
            B1 = float32 c.Beta1
            B2 = float32 c.Beta2
            Step = float32 (c.Lr / c.BiasCorrection1)
            InvSqrtBc2 = float32 (1.0 / sqrt c.BiasCorrection2)
            Eps = float32 c.Eps
            Wd = float32 c.WeightDecay
            Shrink = float32 (1.0 - c.Lr * c.WeightDecay)
            Decoupled = (if c.Decoupled then 1 else 0)
        }

        (kernels.Get<Action<S, K, int, AdamScalars, V, V, V, V, V, V, V>>("Adam"))
            .Invoke(stream, forItems n, n, s, view p, view g, view m, view v, p2, m2, v2)

    override this.AdamStep(p, g, m, v, c) =
        if not (onDevice [ p; g; m; v ]) then
            countTrip "adam"
            let p', m', v' = referenceOptimizer.AdamStep(down p, down g, down m, down v, c)
            upload p', upload m', upload v'
        else
            let p2, p2v = fresh p.Shape
            let m2, m2v = fresh p.Shape
            let v2, v2v = fresh p.Shape
            this.Adam(p, g, m, v, c, p2v, m2v, v2v)
            p2, m2, v2

    override this.AdamStepDonated(p, g, m, v, c) =
        if
            not (onDevice [ p; g; m; v ])
            || not (Placement.ownerOf m).IsSome
            || not (Placement.ownerOf v).IsSome
        then
            countTrip "adam"
            let p', m', v' = referenceOptimizer.AdamStep(down p, down g, down m, down v, c)
            // donation: the new moments go over the old ones' device buffers
            overwrite m m'
            overwrite v v'
            upload p'
        else
            let p2, p2v = fresh p.Shape
            this.Adam(p, g, m, v, c, p2v, view m, view v)
            p2

    override _.Recycle x =
        match x.Storage with
        | Storage.Device(:? IlgpuBuffer as b) when obj.ReferenceEquals(b.Owner, this) -> b.Free()
        | _ -> ()

    interface IDeviceBackend with
        member _.DeviceName = deviceName
        member _.Upload x = upload x

    interface IDeviceRandom with
        member _.Uniform(key, shape) =
            Shape.check "uniform" shape
            let n = Shape.numel shape

            if n = 0 then
                upload (Random.uniform key Float32 shape)
            else
                let y, yv = fresh (Array.copy shape)

                (kernels.Get<Action<S, K, int, uint32, uint32, V>>("PhiloxUniform"))
                    .Invoke(stream, forItems n, n, key.K0, key.K1, yv)

                y

        member _.Normal(key, shape) =
            Shape.check "normal" shape
            let n = Shape.numel shape

            if n = 0 then
                upload (Random.normal key Float32 shape)
            else
                let y, yv = fresh (Array.copy shape)

                (kernels.Get<Action<S, K, int, uint32, uint32, V>>("PhiloxNormal"))
                    .Invoke(stream, forItems ((n + 1) / 2), n, key.K0, key.K1, yv)

                y

        member _.Bernoulli(key, p, shape) =
            Shape.check "bernoulli" shape
            let n = Shape.numel shape

            if n = 0 || not (p >= 0.0 && p <= 1.0) then
                // the host's validation and message
                upload (Random.bernoulli key p Float32 shape)
            else
                let y, yv = fresh (Array.copy shape)

                (kernels.Get<Action<S, K, int, uint32, uint32, float, V>>("PhiloxBernoulli"))
                    .Invoke(stream, forItems n, n, key.K0, key.K1, p * 4294967296.0, yv)

                y
