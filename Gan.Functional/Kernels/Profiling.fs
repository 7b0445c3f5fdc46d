namespace Gan.Functional.Kernels

open System.Collections.Generic
open System.Diagnostics
open Gan.Functional

/// One row of a kernel profile: how often a kind of kernel ran, how long it took in total
/// (wall clock, as seen by the caller) and how many floating-point operations it did (GEMM and
/// convolutions only: 2·m·n·k; 0 for the others).
[<Sealed>]
type KernelTiming internal (kernel: string, calls: int64, seconds: float, flops: float) =
    /// The kernel, e.g. "matmul", "conv2d.weightGrad", "binary.Mul", "view".
    member _.Kernel = kernel
    /// Number of calls.
    member _.Calls = calls
    /// Total wall-clock seconds spent inside the kernel.
    member _.Seconds = seconds
    /// Total floating-point operations (0 when not counted).
    member _.Flops = flops
    /// Flops / Seconds / 1e9 (0 when not counted).
    member _.Gflops = if seconds > 0.0 then flops / seconds / 1e9 else 0.0

/// <summary>
/// An <see cref="T:Gan.Functional.IBackend"/> that forwards every call to <c>inner</c> and
/// records the wall-clock time of each, by kernel kind, so a benchmark can say where a training
/// step's time goes. Single-threaded callers only (the engine calls kernels from one thread).
/// </summary>
[<Sealed>]
type ProfilingBackend(inner: IBackend) =
    let table = Dictionary<string, int64 * int64 * float>()

    let record (name: string) (start: int64) (flops: float) =
        let elapsed = Stopwatch.GetTimestamp() - start

        match table.TryGetValue name with
        | true, (c, t, f) -> table.[name] <- (c + 1L, t + elapsed, f + flops)
        | _ -> table.[name] <- (1L, elapsed, flops)

    let timed name flops (f: unit -> 'T) =
        let t0 = Stopwatch.GetTimestamp()
        let r = f ()
        record name t0 flops
        r

    // w is [O, C/groups, kH, kW]: each output element is a dot product of C/groups·kH·kW terms
    let convFlops (outShape: int[]) (wShape: int[]) (_: ConvSpec) =
        2.0
        * float (Shape.numel outShape)
        * float (wShape.[1] * wShape.[2] * wShape.[3])

    /// The backend being timed.
    member _.Inner = inner

    /// Forgets everything recorded so far.
    member _.Reset() = table.Clear()

    /// What was recorded since the last reset, slowest kernel first.
    member _.Timings() =
        table
        |> Seq.map (fun kv ->
            let c, t, f = kv.Value
            KernelTiming(kv.Key, c, float t / float Stopwatch.Frequency, f))
        |> Seq.sortByDescending (fun k -> k.Seconds)
        |> Seq.toArray

    interface IBackend with
        member _.Name = inner.Name + " (profiled)"

        member _.Unary(op, x) =
            timed ("unary." + string op) 0.0 (fun () -> inner.Unary(op, x))

        member _.Binary(op, a, b, s) =
            timed ("binary." + string op) 0.0 (fun () -> inner.Binary(op, a, b, s))

        member _.Where(m, a, b) =
            timed "where" 0.0 (fun () -> inner.Where(m, a, b))

        member _.Reduce(op, x, axes) =
            timed ("reduce." + string op) 0.0 (fun () -> inner.Reduce(op, x, axes))

        member _.ArgMax(x, axis) =
            timed "argmax" 0.0 (fun () -> inner.ArgMax(x, axis))

        member _.View(x, o, st, s) =
            timed "view" 0.0 (fun () -> inner.View(x, o, st, s))

        member _.Embed(x, s, o, st) =
            timed "embed" 0.0 (fun () -> inner.Embed(x, s, o, st))

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

            timed "matmul" (2.0 * float (Shape.numel s) * float k) (fun () -> inner.MatMul(a, ta, b, tb, s))

        member _.Conv2d(x, w, spec) =
            let t0 = Stopwatch.GetTimestamp()
            let y = inner.Conv2d(x, w, spec)
            record "conv2d" t0 (convFlops y.Shape w.Shape spec)
            y

        member _.Conv2dInputGrad(g, w, spec, xs) =
            timed "conv2d.inputGrad" (convFlops g.Shape w.Shape spec) (fun () -> inner.Conv2dInputGrad(g, w, spec, xs))

        member _.Conv2dWeightGrad(x, g, spec, ws) =
            timed "conv2d.weightGrad" (convFlops g.Shape ws spec) (fun () -> inner.Conv2dWeightGrad(x, g, spec, ws))

        member _.MaxPool2dIndices(x, kh, kw, spec) =
            timed "maxPool2d" 0.0 (fun () -> inner.MaxPool2dIndices(x, kh, kw, spec))

        member _.Cast(x, d) =
            timed "cast" 0.0 (fun () -> inner.Cast(x, d))

        member _.BatchNormForward(x, gm, b, eps) =
            timed "batchNorm" 0.0 (fun () -> inner.BatchNormForward(x, gm, b, eps))

        member _.BatchNormBackward(g, x, gm, m, v, eps) =
            timed "batchNorm.backward" 0.0 (fun () -> inner.BatchNormBackward(g, x, gm, m, v, eps))

        member _.AdamStep(p, g, m, v, c) =
            timed "adam" 0.0 (fun () -> inner.AdamStep(p, g, m, v, c))
