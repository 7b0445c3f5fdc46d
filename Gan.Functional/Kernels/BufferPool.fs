/// Float32 buffers known to be dead, kept for the next kernel output of the same length.
///
/// Tensors are immutable and every kernel returns a fresh buffer, so a training step allocates
/// hundreds of megabytes of large arrays; on .NET those live on the large-object heap, whose
/// budget triggers gen-2 collections, and each fresh array costs page faults when first touched.
/// The engine knows some buffers are dead before the GC does: an interior adjoint once the
/// backward pass has propagated it. Those are given here (through <c>IBackend.Recycle</c>) and
/// handed out again by <c>rent</c> for an output of exactly that length (a network repeats its
/// shapes every step). Parameter gradients are not recycled: pooled, they would sit idle
/// through the next forward passes, at the step's peak (a higher peak, measured on valid64).
module internal Gan.Functional.Kernels.BufferPool

open System
open System.Collections.Generic
open System.Threading
open Gan.Functional

/// Below this many floats (64 KB) an array is a cheap gen-0 allocation: not pooled.
let minLength = 16384

/// The most the pool holds, in bytes (`Knobs.poolBytes`).
let private capBytes = Knobs.poolBytes

/// Every given buffer is filled with NaN (`Knobs.poolCheck`), so that a buffer given while
/// still in use shows up as NaN in results (the test suite runs with it).
let poison = Knobs.poolCheck

/// The pooled buffers of one length, and how many of them a pass has wanted in a row.
[<AllowNullLiteral>]
type private Bucket() =
    /// Free buffers with the phase they were given in, oldest first; rent takes the newest
    /// (warm in cache), eviction the oldest.
    member val Free = List<struct (float32[] * int64)>()
    /// Rents since the last give of this length.
    member val Streak = 0 with get, set
    /// The longest such run seen: more free buffers than that would never be claimed before
    /// the next give refills the bucket (a gradient given three times a step and rented once
    /// must not pile up three copies).
    member val Demand = 0 with get, set

let private gate = obj ()
let private buckets = Dictionary<int, Bucket>()
// identity of every pooled array: a buffer given twice must not be handed out twice
let private pooled = HashSet<float32[]>(HashIdentity.Reference)
let mutable private held = 0L
let mutable private reusedBytes = 0L
let mutable private phase = 0L

/// One thread's training step in progress: the buffers it rented, while they fit in the step
/// pool's size.
[<AllowNullLiteral>]
type private StepRecord(budget: int64) =
    /// Each buffer with its lease when rented (see `leases`).
    member val Rents = List<struct (float32[] * int64)>()
    member val Bytes = 0L with get, set
    member _.Budget = budget
    /// The step rented more than the budget: it gives nothing back.
    member val Overflowed = false with get, set

let private steps = new ThreadLocal<StepRecord>()

// How many times each pooled array has been handed out again (absent: never). A step's record
// names a buffer with its lease at the rent; a buffer the step gave back mid-step (a scratch
// buffer, a recycled adjoint) may since have been rented by another thread, which now owns it,
// so the step gives a buffer back only while its lease is unchanged.
let private leases =
    System.Runtime.CompilerServices.ConditionalWeakTable<float32[], Runtime.CompilerServices.StrongBox<int64>>()

let private leaseOf (a: float32[]) =
    match leases.TryGetValue a with
    | true, box -> box.Value
    | _ -> 0L

// bytes the last step ended on each thread gave back (for tests and diagnostics)
let private lastStepBytes = new ThreadLocal<int64>()

let private bucket (n: int) =
    match buckets.TryGetValue n with
    | true, b -> b
    | _ ->
        let b = Bucket()
        buckets.[n] <- b
        b

/// A buffer of exactly `n` floats with unspecified contents: a pooled one when there is one.
let rent (n: int) : float32[] =
    let reused =
        if n >= minLength && capBytes > 0L then
            lock gate (fun () ->
                let b = bucket n
                b.Streak <- b.Streak + 1
                b.Demand <- max b.Demand b.Streak

                if b.Free.Count > 0 then
                    let struct (a, _) = b.Free.[b.Free.Count - 1]
                    b.Free.RemoveAt(b.Free.Count - 1)
                    pooled.Remove a |> ignore
                    let lease = leases.GetOrCreateValue a
                    lease.Value <- lease.Value + 1L
                    held <- held - 4L * int64 n
                    reusedBytes <- reusedBytes + 4L * int64 n
                    ValueSome a
                else
                    ValueNone)
        else
            ValueNone

    let a =
        match reused with
        | ValueSome a -> a
        | ValueNone -> GC.AllocateUninitializedArray<float32> n

    if n >= minLength then
        match steps.Value with
        | step when not (isNull step) && not step.Overflowed ->
            if step.Bytes + 4L * int64 n <= step.Budget then
                step.Rents.Add(struct (a, leaseOf a))
                step.Bytes <- step.Bytes + 4L * int64 n
            else
                // all or nothing: the record would keep a large step's buffers alive until it
                // ends, and a part of them pooled sits idle through the next forward passes,
                // where that step's memory peaks
                step.Rents.Clear()
                step.Overflowed <- true
        | _ -> ()

    a

/// A zero-filled buffer of exactly `n` floats.
let rentZeroed (n: int) : float32[] =
    let a = rent n
    Array.Clear a
    a

/// Hands a dead buffer to the pool. The caller guarantees that nothing reads or writes it
/// afterwards; small buffers, buffers given twice, buffers beyond their length's demand and
/// beyond the cap are left to the GC.
let give (a: float32[]) =
    // poison before the buffer can be handed out again (a dead buffer's contents are free)
    if poison then
        Array.Fill(a, Single.NaN)

    if a.Length >= minLength && capBytes > 0L then
        let bytes = 4L * int64 a.Length

        lock gate (fun () ->
            let b = bucket a.Length
            b.Streak <- 0

            if b.Free.Count < b.Demand && held + bytes <= capBytes && pooled.Add a then
                b.Free.Add(struct (a, phase))
                held <- held + bytes)

/// Starts a new phase of the caller's work (the engine: a backward pass). Buffers given before
/// the previous phase began and not claimed since sat idle through a whole phase; they go back
/// to the GC, so that a size needed once a step (a weight gradient's temporary, 25 MB in mbd28)
/// is not held through the next forward passes, where the step's memory peaks.
let nextPhase () =
    lock gate (fun () ->
        phase <- phase + 1L

        for b in buckets.Values do
            let mutable k = 0

            while k < b.Free.Count && (let struct (_, p) = b.Free.[k] in p < phase - 1L) do
                let struct (a, _) = b.Free.[k]
                pooled.Remove a |> ignore
                held <- held - 4L * int64 a.Length
                k <- k + 1

            if k > 0 then
                b.Free.RemoveRange(0, k))

/// Bytes handed out again since the process started (what the pool saved in fresh allocations).
let reusedTotal () = lock gate (fun () -> reusedBytes)

/// Starts recording this thread's rents, up to `budget` bytes (see <c>IStepBuffers</c>); 0:
/// nothing is recorded.
let beginStep (budget: int64) =
    steps.Value <- (if budget > 0L then StepRecord(budget) else null)

/// Gives back the buffers this thread's step rented that are not in `keep`, when all it rented
/// fit in the step pool's size, and stops recording: the next step rents the same lengths in
/// the same order, so its forward passes claim the forward buffers again, and its backward
/// passes the adjoints and gradients. All or nothing because what the pool holds unclaimed
/// sits idle through the next forward passes, where memory peaks: a large model's step gains
/// little from a part of its buffers and pays for them at its peak. A buffer rented twice in
/// the step is given once; one the step gave back before it ended and that was rented again
/// since, by this thread or another, is not given (its new holder owns it).
let endStep (keep: HashSet<float32[]>) =
    let step = steps.Value
    steps.Value <- null

    lastStepBytes.Value <- 0L

    match step with
    | null -> ()
    | step when step.Overflowed -> ()
    | step ->
        let seen = HashSet<float32[]>(HashIdentity.Reference)

        for struct (a, lease) in step.Rents do
            // still this step's: not pooled, and not handed out again since (to anyone)
            let ours () =
                lock gate (fun () -> not (pooled.Contains a) && leaseOf a = lease)

            if not (keep.Contains a) && not (seen.Contains a) && ours () then
                seen.Add a |> ignore
                give a
                lastStepBytes.Value <- lastStepBytes.Value + 4L * int64 a.Length

/// Bytes the last step ended on this thread gave back (0 when it rented more than its budget).
let lastStepGiven () = lastStepBytes.Value

/// Stops recording without giving anything.
let cancelStep () = steps.Value <- null
