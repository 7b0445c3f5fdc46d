namespace Gan.Functional.Gan

open Gan.Functional
open Gan.Functional.Nn

/// How a GAN is trained (everything but the data and the current epoch's learning rates).
type TrainConfig = {
    Loss: GanLoss
    /// Discriminator updates per generator update (the original algorithm's k): the
    /// generator is updated on every k-th step.
    DSteps: int
    GOptimizer: OptimizerKind
    DOptimizer: OptimizerKind
    /// Weight of the WGAN-GP penalty in D's loss (0: off).
    GpWeight: float
    /// Weight of the R1 penalty on real data in D's loss (0: off).
    R1Weight: float
    /// Decay of the generator's exponential moving average (0: no EMA kept).
    EmaDecay: float
    /// When true, G's gradient is taken through D as it was before this step's D update, as
    /// if both losses came from one forward pass (S1's tutorial, one gradient tape); when
    /// false, through the updated D (the usual PyTorch loop).
    SimultaneousUpdates: bool
}

/// Everything that changes during training, by name: a checkpoint is this record.
type TrainState = {
    G: Variables
    D: Variables
    GOpt: OptimizerState
    DOpt: OptimizerState
    /// EMA of G's parameters (empty when EMA is off).
    GEma: Map<string, Tensor>
    /// Steps taken so far.
    Step: int
    /// The key the next step draws from.
    Key: Key
}

/// What one step measured.
type StepMetrics = {
    DLoss: float
    /// The generator's loss (NaN on steps that did not update the generator).
    GLoss: float
    /// Mean σ(D(x)) on the real batch.
    RealScore: float
    /// Mean σ(D(G(z))) on the fake batch.
    FakeScore: float
}

/// The pure GAN training step.
module Training =

    /// The seed tutorials' settings: non-saturating BCE, one D step per G step, Adam(β1) for both.
    let defaultConfig (beta1: float) =
        let adam = Adam(beta1, 0.999, 1e-8, 0.0, false)

        {
            Loss = NonSaturating
            DSteps = 1
            GOptimizer = adam
            DOptimizer = adam
            GpWeight = 0.0
            R1Weight = 0.0
            EmaDecay = 0.0
            SimultaneousUpdates = false
        }

    /// Fresh variables and optimizer states for `model`, all drawn from `key`.
    let init (model: GanModel) (config: TrainConfig) (key: Key) =
        let ks = Random.splitN 3 key
        let g = model.Generator.Init ks.[0]
        let d = model.Discriminator.Init ks.[1]

        {
            G = g
            D = d
            GOpt = Optimizer.init config.GOptimizer g.Params
            DOpt = Optimizer.init config.DOptimizer d.Params
            // a copy: G's parameters may later be stepped in place (Training.stepDonated)
            GEma =
                (if config.EmaDecay > 0.0 then
                     g.Params
                     |> Map.map (fun _ p ->
                         match Tensor.dtype p with
                         | Float32 -> Tensor.ofArray (Tensor.shape p) (Tensor.toArray p)
                         | Float64 -> Tensor.ofArray64 (Tensor.shape p) (Tensor.toArray64 p))
                 else
                     Map.empty)
            Step = 0
            Key = ks.[2]
        }

    /// Whether the step taken from a state with `step` steps done updates G: every DSteps-th.
    let updatesGenerator (config: TrainConfig) (step: int) = (step + 1) % (max 1 config.DSteps) = 0

    /// z ~ N(0, 1) of shape [n, noiseDim].
    let noise (model: GanModel) (key: Key) (n: int) =
        Tensor.randn key [| n; model.NoiseDim |]

    let private withState (vars: Variables) (s: Map<string, Tensor>) = {
        vars with
            State = Map.fold (fun acc k v -> Map.add k (Tensor.detach v) acc) vars.State s
    }

    /// Tensors summed across ranks in one allreduce over a flat buffer, each scaled by
    /// `weight` first: gradients, statistics and metrics of a step travel together.
    let private reduceFlat (reducer: IReducer) (weight: float) (parts: Tensor[]) =
        let raws = parts |> Array.map Tape.raw
        let offsets = Array.scan (fun acc (r: RawTensor) -> acc + r.Numel) 0 raws
        let total = offsets.[raws.Length]

        if raws |> Array.forall (fun r -> r.DType = Float32) then
            let buf = Array.zeroCreate<float32> total
            let w = float32 weight

            raws
            |> Array.iteri (fun i r ->
                match (RawTensor.toHost r).Storage with
                | Storage.F32 a ->
                    for j in 0 .. r.Numel - 1 do
                        buf.[offsets.[i] + j] <- a.[j] * w
                | _ -> ())

            reducer.SumInPlace(System.Span<float32> buf)

            raws
            |> Array.mapi (fun i r ->
                Tensor.ofRaw (
                    Gan.Functional.Kernels.Placement.onPlaceOf
                        r
                        (RawTensor.ofFloat32 r.Shape (Array.sub buf offsets.[i] r.Numel))
                ))
        else
            let buf = Array.zeroCreate<float> total

            raws
            |> Array.iteri (fun i r ->
                let a = RawTensor.toFloat64Array r

                for j in 0 .. a.Length - 1 do
                    buf.[offsets.[i] + j] <- a.[j] * weight)

            reducer.SumInPlace(System.Span<float> buf)

            raws
            |> Array.mapi (fun i r ->
                Tensor.ofRaw (
                    Gan.Functional.Kernels.Placement.onPlaceOf
                        r
                        (RawTensor.cast r.DType (RawTensor.ofFloat64 r.Shape (Array.sub buf offsets.[i] r.Numel)))
                ))

    /// `reduceFlat` over named groups and loose scalars; the same names and order on every rank
    /// (maps iterate in key order).
    let private reduceNamed (reducer: IReducer) (maps: Map<string, Tensor> list) (scalars: float list) =
        let keys = maps |> List.map (fun m -> m |> Map.toArray |> Array.map fst)

        let tensors =
            List.toArray maps |> Array.collect (fun m -> m |> Map.toArray |> Array.map snd)

        // loose values travel in the tensors' dtype (one buffer type)
        let dt =
            if tensors.Length > 0 then
                Tensor.dtype tensors.[0]
            else
                Float32

        let parts =
            Array.append tensors (scalars |> List.toArray |> Array.map (Tensor.scalarAs dt))

        let summed = reduceFlat reducer (1.0 / float reducer.Ranks) parts
        let mutable at = 0

        let maps =
            keys
            |> List.map (fun names ->
                let m = names |> Array.mapi (fun i k -> k, summed.[at + i]) |> Map.ofArray
                at <- at + names.Length
                m)

        maps, summed.[at..] |> Array.map Tensor.item |> Array.toList

    let private stepWith
        (donate: bool)
        (shard: Shard option)
        (model: GanModel)
        (config: TrainConfig)
        (gLr: float)
        (dLr: float)
        (real: Tensor)
        (state: TrainState)
        =
        let optimize = if donate then Optimizer.updateDonated else Optimizer.update
        // donated parameters are written in place, except D's when G is then differentiated
        // through the D from before its update (SimultaneousUpdates)
        let optimizeG = if donate then Optimizer.updateInPlace else Optimizer.update

        let optimizeD =
            if donate && not config.SimultaneousUpdates then
                Optimizer.updateInPlace
            else
                optimize

        let n = (Tensor.shape real).[0]
        // a job of one rank is a plain step: nothing to gather or reduce
        let shard =
            match shard with
            | Some sh when sh.Reducer.Ranks > 1 -> Some sh
            | _ -> None

        match shard with
        | Some sh when sh.Offset < 0 || sh.Offset + n > sh.Total ->
            invalidArg
                "real"
                (sprintf "rows %d..%d are outside a global batch of %d" sh.Offset (sh.Offset + n - 1) sh.Total)
        | _ -> ()

        // whole-batch draws (noise, penalty mixes), this rank's rows of them
        let rows (draw: int -> Tensor) =
            match shard with
            | Some sh -> Tensor.narrow 0 sh.Offset n (draw sh.Total)
            | None -> draw n

        // the whole batch's logits on every rank: losses and scores are the one-process ones
        let gather (logits: Tensor) =
            match shard with
            | Some sh -> Tensor.allGather sh.Reducer sh.Offset sh.Total logits
            | None -> logits

        // a per-row penalty's mean over this rank's rows, weighted so that the ranks' sum,
        // divided by the rank count, is its mean over the whole batch
        let penaltyScale =
            match shard with
            | Some sh -> float sh.Reducer.Ranks * float n / float sh.Total
            | None -> 1.0

        let perRankState =
            match shard with
            | Some sh -> not sh.SyncBatchNorm
            | None -> false

        // the step's keys, by use: each draw has its own, and the next step's key is used for
        // nothing else (a key that both draws and seeds later keys would correlate them)
        let ks = Random.splitN 8 state.Key
        let noiseKey = ks.[0]
        let generatorKey = ks.[1]
        let dRealKey = ks.[2]
        let dFakeKey = ks.[3]
        let criticKey = ks.[4]
        let penaltyKey = ks.[5]
        let gThroughDKey = ks.[6]
        let nextKey = ks.[7]

        let ctx key = {
            Mode = Train
            Key = key
            Shard = shard
        }

        // in the real batch's dtype (float64 runs check the float32 ones)
        let z = rows (fun m -> Tensor.cast (Tensor.dtype real) (noise model noiseKey m))
        let updateG = updatesGenerator config state.Step
        // G forward, taped against G's parameters only when G will be updated
        let fake, gState, pullbackG =
            if updateG then
                let fake, gState, pullback =
                    Autodiff.vjpNamedWithAux
                        (fun p -> model.Generator.Apply { state.G with Params = p } (ctx generatorKey) z)
                        state.G.Params

                fake, gState, Some pullback
            else
                let fake, gState = model.Generator.Apply state.G (ctx generatorKey) z
                Tensor.detach fake, gState, None

        let g = withState state.G gState
        // discriminator update
        let fakeC = Tensor.detach fake

        let dResult =
            Autodiff.valueAndGradsWithAux
                (fun p ->
                    let dv = { state.D with Params = p }
                    let realLogits, s1 = model.Discriminator.Apply dv (ctx dRealKey) real
                    let dv = withState dv s1
                    let fakeLogits, s2 = model.Discriminator.Apply dv (ctx dFakeKey) fakeC
                    let realLogits, fakeLogits = gather realLogits, gather fakeLogits

                    let critic x =
                        fst (model.Discriminator.Apply { dv with Params = p } (ctx criticKey) x)

                    let mutable loss = Losses.discriminator config.Loss realLogits fakeLogits

                    if config.GpWeight > 0.0 then
                        let alpha = rows (fun m -> Losses.penaltyMix penaltyKey m real)

                        loss <-
                            loss
                            + Losses.gradientPenaltyAt critic alpha real fakeC
                              * (config.GpWeight * penaltyScale)

                    if config.R1Weight > 0.0 then
                        loss <- loss + Losses.r1Penalty critic real * (config.R1Weight * penaltyScale)

                    loss, (Tensor.detach realLogits, Tensor.detach fakeLogits, (withState dv s2).State))
                state.D.Params

        let realLogits, fakeLogits, dState = dResult.Aux

        // one allreduce for D: its gradients averaged over ranks (the gathered loss is the whole
        // batch's on every rank, so each rank's gradient is the rank count times its rows'
        // share), with the loss and, under per-rank BatchNorm, both networks' statistics
        let dGrads, dState, gStateNow, dLoss =
            match shard with
            | None -> dResult.Grads, dState, g.State, Tensor.item dResult.Loss
            | Some sh ->
                let states = if perRankState then [ dState; g.State ] else []

                match reduceNamed sh.Reducer (dResult.Grads :: states) [ Tensor.item dResult.Loss ] with
                | grads :: rest, [ loss ] ->
                    match rest with
                    | [ ds; gs ] -> grads, ds, gs, loss
                    | _ -> grads, dState, g.State, loss
                | _ -> invalidOp "reduceNamed returned other groups than it was given"

        let g = { g with State = gStateNow }

        let dParams, dOpt = optimizeD config.DOptimizer dLr dGrads state.DOpt state.D.Params

        let d = { Params = dParams; State = dState }
        // generator update through the updated discriminator
        let g, gOpt, gLoss, d =
            match pullbackG with
            | None -> g, state.GOpt, nan, d
            | Some pullback ->
                let mutable dAfter = d.State
                // the discriminator G is differentiated through (see SimultaneousUpdates)
                let dForG =
                    if config.SimultaneousUpdates then
                        { d with Params = state.D.Params }
                    else
                        d

                let gLossValue, dFake =
                    Autodiff.valueAndGrad
                        (fun f ->
                            let logits, s = model.Discriminator.Apply dForG (ctx gThroughDKey) f
                            dAfter <- (withState d s).State
                            Losses.generator config.Loss realLogits (gather logits))
                        fakeC

                let grads = pullback dFake

                // one allreduce for G: its gradients and, under per-rank BatchNorm, D's
                // statistics from this pass
                let grads, dAfter =
                    match shard with
                    | None -> grads, dAfter
                    | Some sh ->
                        match reduceNamed sh.Reducer [ grads; (if perRankState then dAfter else Map.empty) ] [] with
                        | [ grads; ds ], _ -> grads, (if perRankState then ds else dAfter)
                        | _ -> invalidOp "reduceNamed returned other groups than it was given"

                let gParams, gOpt = optimizeG config.GOptimizer gLr grads state.GOpt g.Params
                { g with Params = gParams }, gOpt, Tensor.item gLossValue, { d with State = dAfter }

        let ema =
            if config.EmaDecay > 0.0 && updateG then
                Ema.update config.EmaDecay state.GEma g.Params
            else
                state.GEma

        let metrics = {
            DLoss = dLoss
            GLoss = gLoss
            RealScore = Tensor.item (Tensor.mean (Tensor.sigmoid realLogits))
            FakeScore = Tensor.item (Tensor.mean (Tensor.sigmoid fakeLogits))
        }

        {
            state with
                G = g
                D = d
                GOpt = gOpt
                DOpt = dOpt
                GEma = ema
                Step = state.Step + 1
                Key = nextKey
        },
        metrics

    /// Every tensor `state` holds: both networks' parameters and statistics, the optimizers'
    /// moments and the EMA weights.
    let tensors (state: TrainState) =
        [
            state.G.Params
            state.G.State
            state.D.Params
            state.D.State
            state.GOpt.Moment1
            state.GOpt.Moment2
            state.DOpt.Moment1
            state.DOpt.Moment2
            state.GEma
        ]
        |> Seq.collect (fun m -> m.Values)

    /// One training step on a real batch [N, C, H, W] with learning rates `gLr` and `dLr`:
    /// G(z) is computed once; D is updated on (x, G(z)) with its loss plus penalties; then, on
    /// every DSteps-th step, G is updated through the updated D. BatchNorm statistics of both
    /// networks are updated by each forward pass in train mode, as in PyTorch. Pure: `state` is
    /// unchanged and can be stepped again.
    let step model config gLr dLr real state =
        stepWith false None model config gLr dLr real state

    /// As <c>step</c>, but `state` is donated: the optimizers write the new moments and
    /// parameters over the old ones (<c>Optimizer.updateInPlace</c>; D's parameters are copied
    /// instead under SimultaneousUpdates, where G's pass reads D from before its update), so peak
    /// memory holds one copy of them, as PyTorch's in-place optimizers do. The same result as
    /// <c>step</c>; `state` must not be used after the call. For training loops that own their
    /// state (the C# <c>GanTrainer</c> uses it).
    let stepDonated model config gLr dLr real state =
        stepWith true None model config gLr dLr real state

    /// One data-parallel step: this rank's rows `real` of the global batch (where they sit:
    /// `shard`). Every rank draws the whole batch's noise (and penalty mixes) and takes its rows;
    /// D's loss and G's loss are computed on the whole batch's logits (gathered); the gradients
    /// of each network are averaged over the ranks in one allreduce of a flat buffer, so every
    /// rank applies the same update and the variables stay identical. With
    /// <c>Shard.SyncBatchNorm</c>, N ranks compute what <c>step</c> computes on the whole batch
    /// (up to float summation order); without it BatchNorm normalises with each rank's own
    /// rows (PyTorch DDP's default) and the running statistics are averaged over the ranks.
    /// The step calls the reducer a fixed number of times in a fixed order, the same on every
    /// rank. A job of one rank is <c>step</c> exactly.
    let stepShard (shard: Shard) model config gLr dLr real state =
        stepWith false (Some shard) model config gLr dLr real state

    /// <c>stepShard</c> with `state` donated (see <c>stepDonated</c>).
    let stepShardDonated (shard: Shard) model config gLr dLr real state =
        stepWith true (Some shard) model config gLr dLr real state
