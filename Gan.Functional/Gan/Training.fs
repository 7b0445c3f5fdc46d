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
            GEma = (if config.EmaDecay > 0.0 then g.Params else Map.empty)
            Step = 0
            Key = ks.[2]
        }

    /// z ~ N(0, 1) of shape [n, noiseDim].
    let noise (model: GanModel) (key: Key) (n: int) =
        Tensor.randn key [| n; model.NoiseDim |]

    let private withState (vars: Variables) (s: Map<string, Tensor>) = {
        vars with
            State = Map.fold (fun acc k v -> Map.add k (Tensor.detach v) acc) vars.State s
    }

    let private stepWith
        (donate: bool)
        (model: GanModel)
        (config: TrainConfig)
        (gLr: float)
        (dLr: float)
        (real: Tensor)
        (state: TrainState)
        =
        let optimize = if donate then Optimizer.updateDonated else Optimizer.update

        let n = (Tensor.shape real).[0]
        let ks = Random.splitN 7 state.Key
        let ctx i = { Mode = Train; Key = ks.[i] }
        let z = noise model ks.[0] n
        let updateG = (state.Step + 1) % (max 1 config.DSteps) = 0
        // G forward, taped against G's parameters only when G will be updated
        let fake, gState, pullbackG =
            if updateG then
                let fake, gState, pullback =
                    Autodiff.vjpNamedWithAux
                        (fun p -> model.Generator.Apply { state.G with Params = p } (ctx 1) z)
                        state.G.Params

                fake, gState, Some pullback
            else
                let fake, gState = model.Generator.Apply state.G (ctx 1) z
                Tensor.detach fake, gState, None

        let g = withState state.G gState
        // discriminator update
        let fakeC = Tensor.detach fake

        let dResult =
            Autodiff.valueAndGradsWithAux
                (fun p ->
                    let dv = { state.D with Params = p }
                    let realLogits, s1 = model.Discriminator.Apply dv (ctx 2) real
                    let dv = withState dv s1
                    let fakeLogits, s2 = model.Discriminator.Apply dv (ctx 3) fakeC

                    let critic x =
                        fst (model.Discriminator.Apply { dv with Params = p } (ctx 4) x)

                    let mutable loss = Losses.discriminator config.Loss realLogits fakeLogits

                    if config.GpWeight > 0.0 then
                        loss <- loss + Losses.gradientPenalty critic ks.[5] real fakeC * config.GpWeight

                    if config.R1Weight > 0.0 then
                        loss <- loss + Losses.r1Penalty critic real * config.R1Weight

                    loss, (Tensor.detach realLogits, Tensor.detach fakeLogits, (withState dv s2).State))
                state.D.Params

        let realLogits, fakeLogits, dState = dResult.Aux

        let dParams, dOpt =
            optimize config.DOptimizer dLr dResult.Grads state.DOpt state.D.Params

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
                            let logits, s = model.Discriminator.Apply dForG (ctx 6) f
                            dAfter <- (withState d s).State
                            Losses.generator config.Loss realLogits logits)
                        fakeC

                let grads = pullback dFake
                let gParams, gOpt = optimize config.GOptimizer gLr grads state.GOpt g.Params
                { g with Params = gParams }, gOpt, Tensor.item gLossValue, { d with State = dAfter }

        let ema =
            if config.EmaDecay > 0.0 && updateG then
                Ema.update config.EmaDecay state.GEma g.Params
            else
                state.GEma

        let metrics = {
            DLoss = Tensor.item dResult.Loss
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
                Key = ks.[6]
        },
        metrics

    /// One training step on a real batch [N, C, H, W] with learning rates `gLr` and `dLr`:
    /// G(z) is computed once; D is updated on (x, G(z)) with its loss plus penalties; then, on
    /// every DSteps-th step, G is updated through the updated D. BatchNorm statistics of both
    /// networks are updated by each forward pass in train mode, as in PyTorch. Pure: `state` is
    /// unchanged and can be stepped again.
    let step model config gLr dLr real state =
        stepWith false model config gLr dLr real state

    /// As <c>step</c>, but `state` is donated: the optimizers' moment buffers are overwritten
    /// (<c>Optimizer.updateDonated</c>), so peak memory holds one copy of them, as PyTorch's
    /// in-place optimizers do. The same result as <c>step</c>; `state` must not be used after the
    /// call. For training loops that own their state (the C# <c>GanTrainer</c> uses it).
    let stepDonated model config gLr dLr real state =
        stepWith true model config gLr dLr real state
