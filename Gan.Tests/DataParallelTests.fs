/// Data-parallel training without MPI: a job of N ranks simulated by N threads of this process
/// that sum through shared memory (FakeJob). The allreduce primitive's values and gradients;
/// the gathered rows; and the equivalence the host's `mpirun -np N` relies on: with synchronised
/// BatchNorm, N ranks on their slices of a global batch end with the weights one process gets on
/// the whole batch, for mlp, dcgan28 and mbd28.
module DataParallelTests

open System
open System.Threading
open System.Threading.Tasks
open Xunit
open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan

/// N ranks as N threads: each SumInPlace waits for every rank's buffer, then every rank adds
/// them up in rank order (so all ranks get bit-identical sums, as MPI's allreduce gives). The
/// ranks compute one at a time (a baton passed at each allreduce): MPI's ranks are separate
/// processes, and the engine's native kernels are not meant to serve two steps at once.
type FakeJob(ranks: int) =
    let barrier = new Barrier(ranks)
    let baton = new SemaphoreSlim(1, 1)
    let slots32: float32[][] = Array.zeroCreate ranks
    let slots64: float[][] = Array.zeroCreate ranks
    let mutable calls = 0

    let wait () =
        if not (barrier.SignalAndWait(TimeSpan.FromSeconds 300.0)) then
            failwith "a rank did not reach the allreduce (the ranks called the reducer differently)"

    let exchange () =
        baton.Release() |> ignore
        wait ()

    /// Allreduce calls made by rank 0.
    member _.Calls = calls

    member _.Reducer(rank: int) = {
        new IReducer with
            member _.Rank = rank
            member _.Ranks = ranks

            member _.SumInPlace(values: Span<float32>) =
                if rank = 0 then
                    calls <- calls + 1

                slots32.[rank] <- values.ToArray()
                exchange ()

                for i in 0 .. values.Length - 1 do
                    let mutable s = 0.0f

                    for r in 0 .. ranks - 1 do
                        if slots32.[r].Length <> values.Length then
                            failwith "ranks gave buffers of different lengths"

                        s <- s + slots32.[r].[i]

                    values.[i] <- s

                wait ()
                baton.Wait()

            member _.SumInPlace(values: Span<float>) =
                slots64.[rank] <- values.ToArray()
                exchange ()

                for i in 0 .. values.Length - 1 do
                    let mutable s = 0.0

                    for r in 0 .. ranks - 1 do
                        s <- s + slots64.[r].[i]

                    values.[i] <- s

                wait ()
                baton.Wait()
    }

    /// Runs `body rank reducer` on every rank at once and returns the results in rank order.
    member this.Run(body: int -> IReducer -> 'T) =
        let tasks =
            Array.init ranks (fun r ->
                Task.Factory.StartNew(
                    (fun () ->
                        baton.Wait()

                        try
                            body r (this.Reducer r)
                        finally
                            baton.Release() |> ignore),
                    TaskCreationOptions.LongRunning
                ))

        Task.WaitAll(tasks |> Array.map (fun t -> t :> Task))
        tasks |> Array.map (fun t -> t.Result)

// ------------------------------------------------------------------------------ primitives

[<Fact>]
let ``allReduce sums over the ranks and its gradient sums the ranks' adjoints`` () =
    let job = FakeJob 3

    let results =
        job.Run(fun r red ->
            let x = Tensor.ofArray64 [| 2 |] [| float r; 10.0 * float r |]
            // loss_r = (r + 1) · Σ y: each rank's dL/dx is Σ_s (s + 1) = 6
            let loss, grad =
                Autodiff.valueAndGrad (fun x -> Tensor.sum (Tensor.allReduce red x) * float (r + 1)) x

            Tensor.toArray64 (Tensor.allReduce red x), Tensor.item loss, Tensor.toArray64 grad)

    for r, (sum, loss, grad) in Array.indexed results do
        Assert.Equal<float[]>([| 3.0; 30.0 |], sum)
        Assert.Equal(33.0 * float (r + 1), loss)
        Assert.Equal<float[]>([| 6.0; 6.0 |], grad)

[<Fact>]
let ``allGather puts every rank's rows in rank order, and their adjoints come back to their owner`` () =
    let job = FakeJob 2
    // rank 0 holds 1 row, rank 1 two rows, of a 3-row batch
    let rowsOf r =
        if r = 0 then
            [| [| 1.0; 2.0 |] |]
        else
            [| [| 3.0; 4.0 |]; [| 5.0; 6.0 |] |]

    let results =
        job.Run(fun r red ->
            let rows = rowsOf r
            let x = Tensor.ofArray64 [| rows.Length; 2 |] (Array.concat rows)
            let offset = if r = 0 then 0 else 1
            let all = Tensor.allGather red offset 3 x
            // loss_r = Σ w_r ⊙ all with w_0 = 1, w_1 = row index + 1: dL/dx sums both ranks' weights
            let weights =
                Tensor.ofArray64 [| 3; 1 |] (if r = 0 then [| 1.0; 1.0; 1.0 |] else [| 1.0; 2.0; 3.0 |])

            let grad =
                Autodiff.grad (fun x -> Tensor.sum (Tensor.allGather red offset 3 x * weights)) x

            Tensor.toArray64 all, Tensor.toArray64 grad)

    for _, (all, _) in Array.indexed results do
        Assert.Equal<float[]>([| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0 |], all)

    Assert.Equal<float[]>([| 2.0; 2.0 |], snd results.[0])
    Assert.Equal<float[]>([| 3.0; 3.0; 4.0; 4.0 |], snd results.[1])

[<Fact>]
let ``a job of one rank is the plain step, bit for bit`` () =
    let model = Zoo.mlp
    let config = Training.defaultConfig 0.5
    let state = Training.init model config (Random.key 7UL)
    let real = Tensor.rand (Random.key 8UL) [| 4; 1; 28; 28 |] * 2.0 - 1.0

    let shard = {
        Reducer = Reducer.single
        Offset = 0
        Total = 4
        SyncBatchNorm = true
    }

    let a, ma = Training.step model config 2e-4 2e-4 real state
    let b, mb = Training.stepShard shard model config 2e-4 2e-4 real state
    Assert.Equal(ma, mb)

    for (n, x), (_, y) in Seq.zip (Checkpoint.toNamed a) (Checkpoint.toNamed b) do
        Assert.True((Tensor.toArray x = Tensor.toArray y), n)

// ------------------------------------------------------------------------------ equivalence

let private named (s: TrainState) =
    Checkpoint.toNamed s |> List.map (fun (n, t) -> n, Tensor.toArray64 t)

/// SGD with momentum rather than the seeds' Adam: Adam's first steps move every weight by about
/// ±lr whatever its gradient's size, so a weight whose true gradient is zero (a bias before
/// BatchNorm) moves by ±lr on rounding noise, one way in one process and maybe the other in
/// two; with SGD each update is proportional to its gradient, so the comparison is meaningful.
let private sgd = Sgd(0.5, false, 0.0)

/// The state in float64 (optimizer buffers fresh), so that the comparison sees the algorithm, not
/// float32 rounding: in float32, BatchNorm over few rows amplifies rounding enough that mbd28 at a
/// global batch of 16 differs by a few percent in G's gradients between 1, 2 and 4 ranks alike,
/// while in float64 the three agree to 1e-12.
let private inFloat64 (s: TrainState) =
    let cast (m: Map<string, Tensor>) =
        m |> Map.map (fun _ t -> Tensor.cast Float64 t)

    let g = {
        Params = cast s.G.Params
        State = cast s.G.State
    }

    let d = {
        Params = cast s.D.Params
        State = cast s.D.State
    }

    {
        s with
            G = g
            D = d
            GOpt = Optimizer.init sgd g.Params
            DOpt = Optimizer.init sgd d.Params
    }

/// k steps of one process on the whole batch against `ranks` threads on their slices.
let private runBoth (model: GanModel) (ranks: int) (batch: int) (steps: int) (sync: bool) =
    let config = {
        Training.defaultConfig model.Defaults.Beta1 with
            SimultaneousUpdates = model.Defaults.SimultaneousUpdates
            GOptimizer = sgd
            DOptimizer = sgd
    }

    let lr = 0.02
    let init = inFloat64 (Training.init model config (Random.key 11UL))
    let shape = Array.append [| batch |] model.ImageShape

    let batches =
        Array.init steps (fun i -> Tensor.cast Float64 (Tensor.rand (Random.key (100UL + uint64 i)) shape * 2.0 - 1.0))

    let single, singleMetrics =
        batches
        |> Array.fold
            (fun (s, ms) real ->
                let s, m = Training.step model config lr lr real s
                s, m :: ms)
            (init, [])

    let per = batch / ranks
    let job = FakeJob ranks

    let replicas =
        job.Run(fun r red ->
            let shard = {
                Reducer = red
                Offset = r * per
                Total = batch
                SyncBatchNorm = sync
            }

            batches
            |> Array.fold
                (fun (s, ms) real ->
                    let mine = Tensor.narrow 0 (r * per) per real
                    let s, m = Training.stepShard shard model config lr lr mine s
                    s, m :: ms)
                (init, []))

    init, (single, singleMetrics), replicas

/// How far `a` is from `reference` after training from `init`, per variable: the largest
/// difference of the two changes from `init`, relative to the reference change's size in that
/// tensor, floored at 1% of the largest change in the whole network: a tensor whose true
/// gradient is zero (a bias just before BatchNorm, G's output bias under D's BatchNorm) changes by
/// rounding noise only, which no relative tolerance of its own would accept.
let private distances (init: TrainState) (a: TrainState) (reference: TrainState) =
    let i, x, y = named init, named a, named reference

    let changes =
        List.map2 (fun (n, i0: float[]) (_, b: float[]) -> n, Array.map2 (-) b i0) i y

    let largest (v: float[]) =
        v |> Array.fold (fun m e -> max m (abs e)) 0.0

    let network (n: string) =
        n.Split('.')
        |> Array.take (if n.StartsWith "optim." then 3 else 1)
        |> String.concat "."

    let scale =
        changes
        |> List.groupBy (fst >> network)
        |> List.map (fun (k, vs) -> k, vs |> List.map (snd >> largest) |> List.max)
        |> Map.ofList

    List.map3
        (fun (n, i0: float[]) (_, a: float[]) (_, dy: float[]) ->
            let dx = Array.map2 (-) a i0
            let diff = Array.fold2 (fun m p q -> max m (abs (p - q))) 0.0 dx dy
            n, diff / (largest dy + 1e-2 * scale.[network n] + 1e-30))
        i
        x
        changes

let private checkEquivalent (model: GanModel) (batch: int) (steps: int) (tolerance: float) =
    let init, (single, singleMetrics), replicas = runBoth model 2 batch steps true

    for r, (state, metrics) in Array.indexed replicas do
        // the ranks agree exactly with one another…
        Assert.True((named state = named (fst replicas.[0])), sprintf "rank %d differs from rank 0" r)
        Assert.Equal(single.Step, state.Step)

        // …and with one process up to float summation order
        for name, d in distances init state single do
            Assert.True(d <= tolerance, sprintf "%s: %s differs from one process by %.3g (relative)" model.Name name d)

        for m, ms in List.zip metrics singleMetrics do
            Assert.True(
                abs (m.DLoss - ms.DLoss) <= 1e-9 * (1.0 + abs ms.DLoss),
                sprintf "D loss %g vs %g" m.DLoss ms.DLoss
            )

            Assert.True(
                abs (m.GLoss - ms.GLoss) <= 1e-9 * (1.0 + abs ms.GLoss),
                sprintf "G loss %g vs %g" m.GLoss ms.GLoss
            )

            Assert.True(abs (m.RealScore - ms.RealScore) <= 1e-9)

[<Fact>]
let ``mlp: 2 ranks with synchronised BatchNorm give one process's weights (dropout by global row)`` () =
    checkEquivalent Zoo.mlp 8 3 1e-8

[<Fact>]
let ``dcgan28: 2 ranks with synchronised BatchNorm give one process's weights and running statistics`` () =
    checkEquivalent Zoo.dcgan28 8 2 1e-8

[<Fact>]
let ``mbd28: 2 ranks with synchronised BatchNorm and gathered minibatch features give one process's weights`` () =
    checkEquivalent Zoo.mbd28 16 2 1e-8

[<Fact>]
let ``per-rank BatchNorm keeps the ranks identical (running statistics averaged) but is not one process`` () =
    let init, (single, _), replicas = runBoth Zoo.dcgan28 2 8 2 false
    Assert.True((named (fst replicas.[0]) = named (fst replicas.[1])), "the ranks' variables differ")

    let differs =
        distances init (fst replicas.[0]) single |> List.exists (fun (_, d) -> d > 1e-2)

    Assert.True(differs, "per-rank statistics should change the result against one process")

[<Fact>]
let ``the gradient penalty's mixes and means follow the global batch (toy WGAN-GP with BatchNorm, 2 ranks of 12 and 4 rows)``
    ()
    =
    let model = {
        Zoo.toy2d with
            Discriminator =
                Layer.sequential [
                    Layers.linear 2 16
                    Normalization.batchNorm 16
                    Layers.leakyRelu 0.2
                    Layers.linear 16 1
                ]
    }

    let config = {
        Training.defaultConfig 0.5 with
            Loss = Wasserstein
            GpWeight = 10.0
            GOptimizer = sgd
            DOptimizer = sgd
    }

    let init = inFloat64 (Training.init model config (Random.key 3UL))
    let real = Tensor.cast Float64 (Tensor.randn (Random.key 4UL) [| 16; 2 |])
    let single, ms = Training.step model config 0.02 0.02 real init
    let rows = [| 0, 12; 12, 4 |]

    let replicas =
        (FakeJob 2)
            .Run(fun r red ->
                let offset, n = rows.[r]

                let shard = {
                    Reducer = red
                    Offset = offset
                    Total = 16
                    SyncBatchNorm = true
                }

                Training.stepShard shard model config 0.02 0.02 (Tensor.narrow 0 offset n real) init)

    for state, m in replicas do
        Assert.True(abs (m.DLoss - ms.DLoss) <= 1e-9 * (1.0 + abs ms.DLoss), sprintf "D loss %g vs %g" m.DLoss ms.DLoss)

        for name, d in distances init state single do
            Assert.True(d <= 1e-8, sprintf "%s differs by %.3g" name d)
