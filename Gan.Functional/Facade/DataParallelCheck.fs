namespace Gan.Functional.CSharp

open System
open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan

/// What <c>DataParallelCheck.Run</c> found.
[<Sealed>]
type DataParallelCheckResult internal (ranksIdentical: bool, largest: float, worst: string, steps: int) =
    /// True when every rank ended with bit-identical variables.
    member _.RanksIdentical = ranksIdentical
    /// On rank 0: the largest distance of any variable from one process's (the change from the
    /// initial value compared, relative to the change's size, floored at 1% of the network's
    /// largest change); NaN on other ranks.
    member _.LargestDistance = largest
    /// On rank 0: the variable with the largest distance.
    member _.WorstVariable = worst
    /// Steps taken.
    member _.Steps = steps

/// A data-parallel job checked against one process, for `bench --check` under mpirun: every
/// rank takes `steps` SGD steps (momentum 0.5, lr 0.02; Adam's first steps would turn the
/// rounding noise of zero gradients into ±lr moves) of a zoo model on its slice of the same
/// random global batches; rank 0 also runs the steps alone on the whole batches and compares.
/// In float64: in float32, BatchNorm over few rows amplifies rounding (and oneDNN picks other
/// convolution algorithms for other batch sizes) by more than any fixed tolerance would accept.
/// A collective: every rank calls it with the same arguments.
[<AbstractClass; Sealed>]
type DataParallelCheck =

    static member private Named(s: TrainState) =
        Checkpoint.toNamed s |> List.map (fun (n, t) -> n, Tensor.toArray64 t)

    /// Runs the check (see the type).
    static member Run
        (model: string, channels: int, reducer: IReducer, batch: int, steps: int, syncBatchNorm: bool)
        : DataParallelCheckResult =
        let info = Engine.Model(model, channels)
        let m = info.Model
        let sgd = Sgd(0.5, false, 0.0)

        let config = {
            Training.defaultConfig m.Defaults.Beta1 with
                SimultaneousUpdates = m.Defaults.SimultaneousUpdates
                GOptimizer = sgd
                DOptimizer = sgd
        }

        let lr = 0.02
        let init0 = Training.init m config (Random.key 11UL)

        let cast (v: Map<string, Tensor>) =
            v |> Map.map (fun _ t -> Tensor.cast Float64 t)

        let g = {
            Params = cast init0.G.Params
            State = cast init0.G.State
        }

        let d = {
            Params = cast init0.D.Params
            State = cast init0.D.State
        }

        let init = {
            init0 with
                G = g
                D = d
                GOpt = Optimizer.init sgd g.Params
                DOpt = Optimizer.init sgd d.Params
        }

        let shape = Array.append [| batch |] m.ImageShape

        let batches =
            Array.init steps (fun i ->
                Tensor.cast Float64 (Tensor.rand (Random.key (100UL + uint64 i)) shape * 2.0 - 1.0))

        let ranks, rank = reducer.Ranks, reducer.Rank
        let per, extra = batch / ranks, batch % ranks
        let offset = rank * per + min rank extra
        let local = per + (if rank < extra then 1 else 0)

        let shard = {
            Reducer = reducer
            Offset = offset
            Total = batch
            SyncBatchNorm = syncBatchNorm
        }

        let mine =
            batches
            |> Array.fold
                (fun s real -> fst (Training.stepShard shard m config lr lr (Tensor.narrow 0 offset local real) s))
                init

        let values = DataParallelCheck.Named mine

        // every rank's checksum in its own slot (an allgather as an allreduce); 2^40 keeps the
        // sums exact in float64
        let checksum =
            values
            |> List.fold
                (fun h (_, v) ->
                    v
                    |> Array.fold (fun h x -> (h ^^^ uint64 (BitConverter.DoubleToInt64Bits x)) * 1099511628211UL) h)
                14695981039346656037UL

        let sums = Array.zeroCreate<float> ranks
        sums.[rank] <- float (checksum % (1UL <<< 40))
        reducer.SumInPlace(Span<float> sums)
        let identical = sums |> Array.forall (fun s -> s = sums.[0])

        if rank <> 0 then
            DataParallelCheckResult(identical, nan, "", steps)
        else
            let single =
                batches
                |> Array.fold (fun s real -> fst (Training.step m config lr lr real s)) init

            let i, y = DataParallelCheck.Named init, DataParallelCheck.Named single

            let largest (v: float[]) =
                v |> Array.fold (fun acc e -> max acc (abs e)) 0.0

            let network (n: string) =
                n.Split('.')
                |> Array.take (if n.StartsWith "optim." then 3 else 1)
                |> String.concat "."

            let changes =
                List.map2 (fun (n, a: float[]) (_, b: float[]) -> n, Array.map2 (-) b a) i y

            let scale =
                changes
                |> List.groupBy (fst >> network)
                |> List.map (fun (k, vs) -> k, vs |> List.map (snd >> largest) |> List.max)
                |> Map.ofList

            let distances =
                List.map3
                    (fun (n, i0: float[]) (_, a: float[]) (_, dy: float[]) ->
                        let dx = Array.map2 (-) a i0
                        let diff = Array.fold2 (fun acc p q -> max acc (abs (p - q))) 0.0 dx dy
                        n, diff / (largest dy + 1e-2 * scale.[network n] + 1e-30))
                    i
                    values
                    changes

            let worst, d = distances |> List.maxBy snd
            DataParallelCheckResult(identical, d, worst, steps)
