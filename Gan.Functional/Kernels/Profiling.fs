namespace Gan.Functional.Kernels

open System.Collections.Generic
open System.Diagnostics
open Gan.Functional

/// One row of a kernel profile: how often a kind of kernel ran, how long it took in total
/// (wall clock, as seen by the caller) and how many floating-point operations it did (GEMM and
/// convolutions only: 2·m·n·k; 0 for the others) and how many managed bytes it allocated on the
/// calling thread (its outputs and scratch).
[<Sealed>]
type KernelTiming internal (kernel: string, calls: int64, seconds: float, flops: float, allocated: int64) =
    /// The kernel, e.g. "matmul", "conv2d.weightGrad", "binary.Mul", "view".
    member _.Kernel = kernel
    /// Number of calls.
    member _.Calls = calls
    /// Total wall-clock seconds spent inside the kernel.
    member _.Seconds = seconds
    /// Total floating-point operations (0 when not counted).
    member _.Flops = flops
    /// Managed bytes allocated by the calls on the calling thread.
    member _.AllocatedBytes = allocated
    /// Flops / Seconds / 1e9 (0 when not counted).
    member _.Gflops = if seconds > 0.0 then flops / seconds / 1e9 else 0.0

/// <summary>
/// An <see cref="T:Gan.Functional.IBackend"/> that forwards every call to <c>inner</c> and
/// records the wall-clock time of each, by kernel kind, so a benchmark can say where a training
/// step's time goes. Single-threaded callers only (the engine calls kernels from one thread).
/// With <c>recordShapes</c>, each kind is split further by its operands' shapes (and axes), like
/// PyTorch's <c>record_shapes</c>, to find which call of a kind is the slow one.
/// </summary>
[<Sealed>]
type ProfilingBackend(inner: IBackend, recordShapes: bool) =
    // the inner backend's fused optimizer steps, or the reference's when it has none
    let optimizer =
        match inner with
        | :? IFusedOptimizer as f -> f
        | _ -> ReferenceBackend.Instance :> IFusedOptimizer

    let table = Dictionary<string, struct (int64 * int64 * float * int64)>()

    let shapeText (s: int[]) =
        "[" + String.concat "," (Array.map string s) + "]"

    // the kind alone, or the kind followed by the operand shapes when recording shapes
    let key (kind: string) (shapes: int[] list) =
        if recordShapes then
            kind + " " + String.concat " " (List.map shapeText shapes)
        else
            kind

    let record (name: string) (start: int64) (bytes0: int64) (flops: float) =
        let elapsed = Stopwatch.GetTimestamp() - start
        let bytes = System.GC.GetAllocatedBytesForCurrentThread() - bytes0

        match table.TryGetValue name with
        | true, struct (c, t, f, b) -> table.[name] <- struct (c + 1L, t + elapsed, f + flops, b + bytes)
        | _ -> table.[name] <- struct (1L, elapsed, flops, bytes)

    let timed name flops (f: unit -> 'T) =
        let b0 = System.GC.GetAllocatedBytesForCurrentThread()
        let t0 = Stopwatch.GetTimestamp()
        let r = f ()
        record name t0 b0 flops
        r

    // w is [O, C/groups, kH, kW]: each output element is a dot product of C/groups·kH·kW terms
    let convFlops (outShape: int[]) (wShape: int[]) (_: ConvSpec) =
        2.0
        * float (Shape.numel outShape)
        * float (wShape.[1] * wShape.[2] * wShape.[3])

    /// Times every kernel call by kind only.
    new(inner: IBackend) = ProfilingBackend(inner, false)

    /// The backend being timed.
    member _.Inner = inner

    /// The oneDNN implementation chosen for each convolution primitive built so far in this
    /// process (kind, shapes and implementation name, e.g. "jit:avx512_core"); empty without oneDNN.
    member _.ConvImplementations() = Dnnl.implementations () |> List.toArray

    /// Forgets everything recorded so far.
    member _.Reset() = table.Clear()

    /// What was recorded since the last reset, slowest kernel first.
    member _.Timings() =
        table
        |> Seq.map (fun kv ->
            let struct (c, t, f, b) = kv.Value
            KernelTiming(kv.Key, c, float t / float Stopwatch.Frequency, f, b))
        |> Seq.sortByDescending (fun k -> k.Seconds)
        |> Seq.toArray

    interface IInPlaceOptimizer with
        member _.AdamStepsInPlace(ps, gs, ms, vs, c) =
            match inner with
            | :? IInPlaceOptimizer as o ->
                timed (key "adam.inPlace" []) 0.0 (fun () -> o.AdamStepsInPlace(ps, gs, ms, vs, c))
            | _ ->
                // donation allows in place, it does not require it: the new parameters are
                // copied over the old where the inner backend writes fresh ones
                timed (key "adam" []) 0.0 (fun () ->
                    for i in 0 .. ps.Length - 1 do
                        let p' = optimizer.AdamStepDonated(ps.[i], gs.[i], ms.[i], vs.[i], c)

                        match p'.Storage, ps.[i].Storage with
                        | Storage.F32 a, Storage.F32 b -> Array.blit a 0 b 0 b.Length
                        | Storage.F64 a, Storage.F64 b -> Array.blit a 0 b 0 b.Length
                        | _ -> invalidOp "AdamStepsInPlace: the parameters changed dtype")

    interface IStepBuffers with
        member _.BeginStep() =
            match inner with
            | :? IStepBuffers as s -> s.BeginStep()
            | _ -> ()

        member _.EndStep keep =
            match inner with
            | :? IStepBuffers as s -> s.EndStep keep
            | _ -> ()

        member _.CancelStep() =
            match inner with
            | :? IStepBuffers as s -> s.CancelStep()
            | _ -> ()

    interface IBackend with
        member _.Name = inner.Name + " (profiled)"

        member _.Unary(op, x) =
            timed (key ("unary." + string op) [ x.Shape ]) 0.0 (fun () -> inner.Unary(op, x))

        member _.Binary(op, a, b, s) =
            timed (key ("binary." + string op) [ a.Shape; b.Shape ]) 0.0 (fun () -> inner.Binary(op, a, b, s))

        member _.Where(m, a, b) =
            timed "where" 0.0 (fun () -> inner.Where(m, a, b))

        member _.Reduce(op, x, axes) =
            timed (key ("reduce." + string op) [ x.Shape; axes ]) 0.0 (fun () -> inner.Reduce(op, x, axes))

        member _.ArgMax(x, axis) =
            timed "argmax" 0.0 (fun () -> inner.ArgMax(x, axis))

        member _.View(x, o, st, s) =
            timed (key "view" [ x.Shape; st; s ]) 0.0 (fun () -> inner.View(x, o, st, s))

        member _.Embed(x, s, o, st) =
            timed (key "embed" [ x.Shape; s ]) 0.0 (fun () -> inner.Embed(x, s, o, st))

        member _.Concat(xs, axis) =
            timed "concat" 0.0 (fun () -> inner.Concat(xs, axis))

        member _.Take(x, i, s) =
            timed "take" 0.0 (fun () -> inner.Take(x, i, s))

        member _.ScatterAdd(src, i, s) =
            timed "scatterAdd" 0.0 (fun () -> inner.ScatterAdd(src, i, s))

        member _.MatMul(a, ta, b, tb, s) =
            let k =
                if ta then
                    a.Shape.[a.Shape.Length - 2]
                else
                    a.Shape.[a.Shape.Length - 1]

            timed (key "matmul" [ a.Shape; b.Shape ]) (2.0 * float (Shape.numel s) * float k) (fun () ->
                inner.MatMul(a, ta, b, tb, s))

        member _.Conv2d(x, w, spec) =
            let b0 = System.GC.GetAllocatedBytesForCurrentThread()
            let t0 = Stopwatch.GetTimestamp()
            let y = inner.Conv2d(x, w, spec)
            record (key "conv2d" [ x.Shape; w.Shape ]) t0 b0 (convFlops y.Shape w.Shape spec)
            y

        member _.Conv2dInputGrad(g, w, spec, xs) =
            timed (key "conv2d.inputGrad" [ g.Shape; w.Shape ]) (convFlops g.Shape w.Shape spec) (fun () ->
                inner.Conv2dInputGrad(g, w, spec, xs))

        member _.Conv2dWeightGrad(x, g, spec, ws) =
            timed (key "conv2d.weightGrad" [ x.Shape; g.Shape ]) (convFlops g.Shape ws spec) (fun () ->
                inner.Conv2dWeightGrad(x, g, spec, ws))

        member _.MaxPool2dIndices(x, kh, kw, spec) =
            timed "maxPool2d" 0.0 (fun () -> inner.MaxPool2dIndices(x, kh, kw, spec))

        member _.Cast(x, d) =
            timed "cast" 0.0 (fun () -> inner.Cast(x, d))

        member _.Recycle x = inner.Recycle x
        member _.NextPhase() = inner.NextPhase()

        member _.LeakyRelu(x, alpha) =
            timed (key "leakyRelu" [ x.Shape ]) 0.0 (fun () -> inner.LeakyRelu(x, alpha))

        member _.LeakyReluBackward(g, x, alpha) =
            timed (key "leakyRelu.backward" [ x.Shape ]) 0.0 (fun () -> inner.LeakyReluBackward(g, x, alpha))

        member _.PairwiseL1(x, y) =
            timed (key "pairwiseL1" [ x.Shape; y.Shape ]) 0.0 (fun () -> inner.PairwiseL1(x, y))

        member _.PairwiseL1Backward(g, x, y) =
            timed (key "pairwiseL1.backward" [ x.Shape; y.Shape ]) 0.0 (fun () -> inner.PairwiseL1Backward(g, x, y))

        member _.BatchNormForward(x, gm, b, eps) =
            timed (key "batchNorm" [ x.Shape ]) 0.0 (fun () -> inner.BatchNormForward(x, gm, b, eps))

        member _.BatchNormBackward(g, x, gm, m, v, eps) =
            timed (key "batchNorm.backward" [ x.Shape ]) 0.0 (fun () -> inner.BatchNormBackward(g, x, gm, m, v, eps))

    interface IFusedOptimizer with
        member _.AdamStep(p, g, m, v, c) =
            timed (key "adam" [ p.Shape ]) 0.0 (fun () -> optimizer.AdamStep(p, g, m, v, c))

        member _.AdamStepDonated(p, g, m, v, c) =
            timed (key "adam" [ p.Shape ]) 0.0 (fun () -> optimizer.AdamStepDonated(p, g, m, v, c))
