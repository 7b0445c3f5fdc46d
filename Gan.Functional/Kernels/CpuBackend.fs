namespace Gan.Functional.Kernels

open System
open System.Collections.Generic
open Gan.Functional

/// The kernel family of a float32 convolution; one choice serves all three directions
/// (forward, input gradient, weight gradient), so a layer's passes agree.
[<RequireQualifiedAccess>]
type internal ConvPath =
    /// One window per image: one matrix product each way (DenseConv).
    | Dense
    /// One output channel: direct vector kernels (SingleChannelConv).
    | SingleChannel
    /// oneDNN where it is loaded and accepts the call, else im2col + GEMM.
    | DnnlOrIm2col

module internal ConvPath =
    /// The path of a convolution of input `xShape` and weight `wShape` under `spec`.
    let choose (spec: ConvSpec) (xShape: int[]) (wShape: int[]) =
        if DenseConv.applies spec xShape wShape then
            ConvPath.Dense
        elif SingleChannelConv.applies spec wShape then
            ConvPath.SingleChannel
        else
            ConvPath.DnnlOrIm2col

/// The fast CPU backend: float32 GEMM through OpenBLAS (or a managed SIMD kernel), convolutions
/// through oneDNN or im2col + GEMM, vectorised elementwise ops and reductions, parallel across
/// `threads` cores (0: one per core), tuned by `knobs`. Everything it does not accelerate
/// (float64, gather/scatter, comparisons) goes to the reference kernels (<c>BackendBase</c>),
/// which it is tested against.
type CpuBackend(threads: int, knobs: CpuKnobs) =
    inherit BackendBase()
    let threads = if threads <= 0 then Environment.ProcessorCount else threads
    let threshold = knobs.ParallelThreshold
    do Blas.setThreads knobs threads

    /// The CPU backend on `threads` cores (0: one per core) with the knobs the GAN_*
    /// environment variables set (<see cref="M:Gan.Functional.CpuKnobs.FromEnvironment"/>).
    new(threads: int) = CpuBackend(threads, CpuKnobs.FromEnvironment())

    /// The thread count in use.
    member _.Threads = threads

    /// The knobs in use.
    member _.Knobs = knobs

    /// One line: which GEMM and how many threads, and why.
    member _.Description =
        sprintf "cpu backend, %d thread%s, %s" threads (if threads = 1 then "" else "s") (Blas.info knobs).Description

    /// True when OpenBLAS is in use.
    member _.UsesOpenBlas = (Blas.info knobs).UsesOpenBlas

    override _.Name = "cpu"

    override _.Unary(op, x) =
        match x.Storage with
        | Storage.F32 a ->
            match FastElementwise.unary threshold threads op a with
            | Some y -> {
                Shape = x.Shape
                Storage = Storage.F32 y
              }
            | None -> base.Unary(op, x)
        | _ -> base.Unary(op, x)

    override _.Binary(op, a, b, outShape) =
        match a.Storage, b.Storage with
        | Storage.F32 x, Storage.F32 y ->
            match FastElementwise.binary threshold threads op x a.Shape y b.Shape outShape with
            | Some r -> {
                Shape = outShape
                Storage = Storage.F32 r
              }
            | None -> base.Binary(op, a, b, outShape)
        | _ -> base.Binary(op, a, b, outShape)

    override _.Where(m, a, b) =
        match m.Storage, a.Storage, b.Storage with
        | Storage.F32 mm, Storage.F32 x, Storage.F32 y ->
            let r = BufferPool.rent x.Length
            FastElementwise.chunks threshold threads x.Length (fun lo hi -> SimdLoops.where mm x y r lo hi)

            {
                Shape = a.Shape
                Storage = Storage.F32 r
            }
        | _ -> base.Where(m, a, b)

    override _.Reduce(op, x, axes) =
        match x.Storage with
        | Storage.F32 a ->
            match FastElementwise.reduce threshold threads op a x.Shape axes with
            | Some y -> {
                Shape = Shape.reduceKeep x.Shape axes
                Storage = Storage.F32 y
              }
            | None -> base.Reduce(op, x, axes)
        | _ -> base.Reduce(op, x, axes)

    override _.View(x, offset, strides, shape) =
        match x.Storage with
        | Storage.F32 a -> {
            Shape = shape
            Storage = Storage.F32(FastElementwise.view threshold threads a offset strides shape)
          }
        | _ -> base.View(x, offset, strides, shape)

    override _.Embed(x, shape, offset, strides) =
        match x.Storage with
        | Storage.F32 a -> {
            Shape = shape
            Storage = Storage.F32(FastElementwise.embed threshold threads a x.Shape (Shape.numel shape) offset strides)
          }
        | _ -> base.Embed(x, shape, offset, strides)

    override _.MatMul(a, transA, b, transB, outShape) =
        match a.Storage, b.Storage with
        | Storage.F32 x, Storage.F32 y ->
            let r = outShape.Length
            let m, n = outShape.[r - 2], outShape.[r - 1]

            let k =
                if transA then
                    a.Shape.[a.Shape.Length - 2]
                else
                    a.Shape.[a.Shape.Length - 1]

            let c = BufferPool.rent (Shape.numel outShape)
            let batchShape = outShape.[.. r - 3]
            let sa = Strided.broadcastStrides a.Shape.[.. a.Shape.Length - 3] batchShape
            let sb = Strided.broadcastStrides b.Shape.[.. b.Shape.Length - 3] batchShape

            for bi in 0 .. Shape.numel batchShape - 1 do
                let mutable rem = bi
                let mutable ao = 0
                let mutable bo = 0

                for d in batchShape.Length - 1 .. -1 .. 0 do
                    let i = rem % batchShape.[d]
                    rem <- rem / batchShape.[d]
                    ao <- ao + i * sa.[d]
                    bo <- bo + i * sb.[d]

                Blas.sgemm knobs transA transB m n k x (ao * m * k) y (bo * k * n) c (bi * m * n) false

            {
                Shape = outShape
                Storage = Storage.F32 c
            }
        | _ -> base.MatMul(a, transA, b, transB, outShape)

    override _.Conv2d(x, w, spec) =
        match x.Storage, w.Storage with
        | Storage.F32 xa, Storage.F32 wa ->
            let outShape = ConvSpec.outputShape "conv2d" spec x.Shape w.Shape

            {
                Shape = outShape
                Storage =
                    Storage.F32(
                        match ConvPath.choose spec x.Shape w.Shape with
                        | ConvPath.Dense -> DenseConv.conv2d knobs xa x.Shape wa w.Shape
                        | ConvPath.SingleChannel -> SingleChannelConv.conv2d threads spec xa x.Shape wa w.Shape
                        | ConvPath.DnnlOrIm2col ->
                            match Dnnl.conv2d knobs spec xa x.Shape wa w.Shape with
                            | Some y -> y
                            | None -> Im2col.conv2d knobs threads spec xa x.Shape wa w.Shape
                    )
            }
        | _ -> base.Conv2d(x, w, spec)

    override _.Conv2dInputGrad(g, w, spec, xShape) =
        match g.Storage, w.Storage with
        | Storage.F32 ga, Storage.F32 wa -> {
            Shape = xShape
            Storage =
                Storage.F32(
                    match ConvPath.choose spec xShape w.Shape with
                    | ConvPath.Dense -> DenseConv.inputGrad knobs ga wa w.Shape xShape
                    | ConvPath.SingleChannel -> SingleChannelConv.conv2dInputGrad threads spec ga wa w.Shape xShape
                    | ConvPath.DnnlOrIm2col ->
                        match Dnnl.conv2dInputGrad knobs spec ga g.Shape wa w.Shape xShape with
                        | Some dx -> dx
                        | None -> Im2col.conv2dInputGrad knobs threads spec ga wa w.Shape xShape
                )
          }
        | _ -> base.Conv2dInputGrad(g, w, spec, xShape)

    override _.Conv2dWeightGrad(x, g, spec, wShape) =
        match x.Storage, g.Storage with
        | Storage.F32 xa, Storage.F32 ga -> {
            Shape = wShape
            Storage =
                Storage.F32(
                    match ConvPath.choose spec x.Shape wShape with
                    | ConvPath.Dense -> DenseConv.weightGrad knobs xa x.Shape ga wShape
                    | ConvPath.SingleChannel -> SingleChannelConv.conv2dWeightGrad threads spec xa x.Shape ga wShape
                    | ConvPath.DnnlOrIm2col ->
                        match Dnnl.conv2dWeightGrad knobs spec xa x.Shape ga g.Shape wShape with
                        | Some dw -> dw
                        | None -> Im2col.conv2dWeightGrad knobs threads spec xa x.Shape ga wShape
                )
          }
        | _ -> base.Conv2dWeightGrad(x, g, spec, wShape)

    override _.BatchNormForward(x, gamma, beta, eps) =
        match x.Storage, gamma.Storage, beta.Storage with
        | Storage.F32 xa, Storage.F32 ga, Storage.F32 ba ->
            let y, m, v = FastBatchNorm.forward threads xa x.Shape ga ba eps
            let c = [| x.Shape.[1] |]
            RawTensor.ofFloat32 x.Shape y, RawTensor.ofFloat32 c m, RawTensor.ofFloat32 c v
        | _ -> base.BatchNormForward(x, gamma, beta, eps)

    override _.BatchNormBackward(g, x, gamma, mean, var, eps) =
        match g.Storage, x.Storage, gamma.Storage, mean.Storage, var.Storage with
        | Storage.F32 ga, Storage.F32 xa, Storage.F32 gm, Storage.F32 ma, Storage.F32 va ->
            let dx, dg, db = FastBatchNorm.backward threads ga xa x.Shape gm ma va eps
            let c = [| x.Shape.[1] |]
            RawTensor.ofFloat32 x.Shape dx, RawTensor.ofFloat32 c dg, RawTensor.ofFloat32 c db
        | _ -> base.BatchNormBackward(g, x, gamma, mean, var, eps)

    override _.Recycle x =
        match x.Storage with
        | Storage.F32 a -> BufferPool.give a
        | _ -> ()

    override _.NextPhase() = BufferPool.nextPhase ()

    interface IInPlaceOptimizer with
        member _.AdamStepsInPlace(ps, gs, ms, vs, c) =
            let arrays (ts: RawTensor[]) =
                ts
                |> Array.map (fun t ->
                    match t.Storage with
                    | Storage.F32 a -> a
                    | _ -> invalidArg "ps" "AdamStepsInPlace takes float32 tensors in host memory")

            let p, g, m, v = arrays ps, arrays gs, arrays ms, arrays vs
            // the parameters laid end to end, cut into pieces of about equal size: one parallel
            // loop for the whole network instead of one per parameter
            let starts = Array.scan (fun acc (a: float32[]) -> acc + int64 a.Length) 0L p
            let total = starts.[p.Length]
            let pieces = int (max 1L (min (int64 threads * 8L) (total / 16384L)))
            let size = (total + int64 pieces - 1L) / int64 pieces

            let body (piece: int) =
                let lo, hi = int64 piece * size, min total (int64 (piece + 1) * size)
                // the first parameter that this piece reaches into
                let mutable i =
                    max 0 (Array.BinarySearch(starts, lo) |> fun k -> if k >= 0 then k else ~~~k - 1)

                while i < p.Length && starts.[i] < hi do
                    let a = int (max lo starts.[i] - starts.[i])
                    let b = int (min hi starts.[i + 1] - starts.[i])

                    if b > a then
                        SimdLoops.adam c p.[i] g.[i] m.[i] v.[i] p.[i] m.[i] v.[i] a b

                    i <- i + 1

            if threads > 1 && total >= int64 threshold then
                Threading.Tasks.Parallel.For(
                    0,
                    pieces,
                    Threading.Tasks.ParallelOptions(MaxDegreeOfParallelism = threads),
                    (fun k -> body k)
                )
                |> ignore
            else
                for k in 0 .. pieces - 1 do
                    body k

    interface IStepBuffers with
        member _.BeginStep() =
            BufferPool.beginStep knobs.StepPoolBytes

        member _.EndStep keep =
            let held = HashSet<float32[]>(HashIdentity.Reference)

            for t in keep do
                match t.Storage with
                | Storage.F32 a -> held.Add a |> ignore
                | _ -> ()

            BufferPool.endStep held

        member _.CancelStep() = BufferPool.cancelStep ()

    override _.LeakyRelu(x, alpha) =
        match x.Storage with
        | Storage.F32 a ->
            let y = BufferPool.rent a.Length

            FastElementwise.chunks threshold threads a.Length (fun lo hi ->
                SimdLoops.leakyRelu (float32 alpha) a y lo hi)

            RawTensor.ofFloat32 x.Shape y
        | _ -> base.LeakyRelu(x, alpha)

    override _.LeakyReluBackward(g, x, alpha) =
        match g.Storage, x.Storage with
        | Storage.F32 ga, Storage.F32 xa ->
            let dx = BufferPool.rent xa.Length

            FastElementwise.chunks threshold threads xa.Length (fun lo hi ->
                SimdLoops.leakyReluBackward (float32 alpha) ga xa dx lo hi)

            RawTensor.ofFloat32 x.Shape dx
        | _ -> base.LeakyReluBackward(g, x, alpha)

    override _.PairwiseL1(x, y) =
        match x.Storage, y.Storage with
        | Storage.F32 xa, Storage.F32 ya ->
            let gs, ps, rs, cs = x.Shape.[0], x.Shape.[1], y.Shape.[1], x.Shape.[2]
            let d = BufferPool.rent (gs * ps * rs)
            PairwiseL1.forward threads gs ps rs cs xa ya d
            RawTensor.ofFloat32 [| gs; ps; rs |] d
        | _ -> base.PairwiseL1(x, y)

    override _.PairwiseL1Backward(g, x, y) =
        match g.Storage, x.Storage, y.Storage with
        | Storage.F32 ga, Storage.F32 xa, Storage.F32 ya ->
            let gs, ps, rs, cs = x.Shape.[0], x.Shape.[1], y.Shape.[1], x.Shape.[2]
            let dx = BufferPool.rent xa.Length
            PairwiseL1.backward threads gs ps rs cs ga xa ya dx
            RawTensor.ofFloat32 x.Shape dx
        | _ -> base.PairwiseL1Backward(g, x, y)

    override _.AdamStep(p, g, m, v, c) =
        match p.Storage, g.Storage, m.Storage, v.Storage with
        | Storage.F32 pa, Storage.F32 ga, Storage.F32 ma, Storage.F32 va ->
            let n = pa.Length
            // the new parameters outlive the step: pinned object heap (see AdamStepDonated)
            let p' = GC.AllocateUninitializedArray<float32>(n, true)
            let m' = BufferPool.rent n
            let v' = BufferPool.rent n
            FastElementwise.chunks threshold threads n (fun lo hi -> SimdLoops.adam c pa ga ma va p' m' v' lo hi)

            let wrap a = {
                Shape = p.Shape
                Storage = Storage.F32 a
            }

            wrap p', wrap m', wrap v'
        | _ -> base.AdamStep(p, g, m, v, c)

    override _.AdamStepDonated(p, g, m, v, c) =
        match p.Storage, g.Storage, m.Storage, v.Storage with
        | Storage.F32 pa, Storage.F32 ga, Storage.F32 ma, Storage.F32 va ->
            // The new parameters outlive the step: on the pinned object heap, which the GC
            // never compacts, they are not copied by the frequent large-object-heap
            // compactions of GC ConserveMemory (faster and a lower peak; docs/performance.md,
            // "Measurements behind the code"). Moments allocated there too measured worse
            // (more gen-2 collections a step), so they stay where they are.
            let p' = GC.AllocateUninitializedArray<float32>(pa.Length, true)
            // the kernel reads m[i] and v[i] before writing them, so in place is exact
            FastElementwise.chunks threshold threads pa.Length (fun lo hi ->
                SimdLoops.adam c pa ga ma va p' ma va lo hi)

            {
                Shape = p.Shape
                Storage = Storage.F32 p'
            }
        | _ -> base.AdamStepDonated(p, g, m, v, c)

/// The backend the engine uses until one is selected with <see cref="M:Gan.Functional.Backend.set"/>:
/// the fast CPU backend with one thread per core, so that scripts and F# Interactive get the same
/// kernels as the host without configuring anything. The environment variable
/// <c>GAN_BACKEND=reference</c> selects the reference kernels instead (to rule out a fast kernel
/// when debugging); <c>cpu</c> or unset selects the CPU backend.
module DefaultBackend =
    let private instance =
        lazy
            (if Knobs.referenceBackend.Force() then
                 ReferenceBackend.Instance :> IBackend
             else
                 CpuBackend(0) :> IBackend)

    /// The default backend (created on first use).
    let get () = instance.Force()
