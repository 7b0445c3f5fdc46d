namespace Gan.Functional.Nn

open Gan.Functional

/// Settings of a BatchNorm layer. `Momentum` uses PyTorch's convention,
/// running ← (1 − momentum)·running + momentum·batch; Keras's `momentum` m is PyTorch's 1 − m
/// (Keras 0.8 = PyTorch 0.2; Keras 0.99 = PyTorch 0.01).
type BatchNormConfig = {
    Features: int
    Momentum: float
    Eps: float
    /// Learned scale ("weight") and shift ("bias").
    Affine: bool
    ScaleInit: Initializer
    /// PyTorch updates running_var with the unbiased batch variance (n/(n−1)); Keras with the
    /// biased one.
    UnbiasedRunningVar: bool
}

/// Normalisation layers.
module Normalization =

    /// PyTorch's BatchNorm defaults: momentum 0.1, eps 1e-5, affine, scale 1, unbiased running variance.
    let batchNormConfig (features: int) = {
        Features = features
        Momentum = 0.1
        Eps = 1e-5
        Affine = true
        ScaleInit = Constant 1.0
        UnbiasedRunningVar = true
    }

    /// Keras's BatchNormalization with its `momentum` (decay) and `epsilon`, translated.
    let kerasBatchNormConfig (features: int) (kerasMomentum: float) (eps: float) = {
        batchNormConfig features with
            Momentum = 1.0 - kerasMomentum
            Eps = eps
            UnbiasedRunningVar = false
    }

    /// Batch normalisation over every axis but the channel axis 1: [N, C] (BatchNorm1d) or
    /// [N, C, H, W] (BatchNorm2d). Train mode normalises with the batch mean and biased
    /// variance and returns updated "running_mean"/"running_var"; eval mode uses the running
    /// ones. y = (x − μ)/√(σ² + ε)·weight + bias.
    let batchNormWith (c: BatchNormConfig) =
        let describe =
            sprintf "BatchNorm(%d, momentum=%g, eps=%g)" c.Features c.Momentum c.Eps

        {
            Describe = describe
            Init =
                fun key ->
                    let ps =
                        if c.Affine then
                            [
                                "weight", Init.draw c.ScaleInit key 0 [| c.Features |]
                                "bias", Tensor.zeros [| c.Features |]
                            ]
                        else
                            []

                    {
                        Params = Map.ofList ps
                        State =
                            Map.ofList [
                                "running_mean", Tensor.zeros [| c.Features |]
                                "running_var", Tensor.ones [| c.Features |]
                            ]
                    }
            Apply =
                fun vars ctx x ->
                    let s = Tensor.shape x

                    if s.Length < 2 || s.[1] <> c.Features then
                        Shape.fail describe (sprintf "expected input [N, %d, …], got %s" c.Features (Shape.show s))

                    let bshape = Array.init s.Length (fun a -> if a = 1 then c.Features else 1)

                    let state name =
                        match Map.tryFind name vars.State with
                        | Some t -> t
                        | None -> invalidArg "vars" (sprintf "%s: state '%s' is missing" describe name)

                    let updated (mean: Tensor) (batchVar: Tensor) (n: int) =
                        let batchVar =
                            if c.UnbiasedRunningVar then
                                batchVar * (float n / float (n - 1))
                            else
                                batchVar

                        let m = c.Momentum
                        let rm = state "running_mean" * (1.0 - m) + mean * m
                        let rv = state "running_var" * (1.0 - m) + batchVar * m
                        Map.ofList [ "running_mean", rm; "running_var", rv ]

                    match ctx.Mode, ctx.Shard with
                    | Train, Some sh when sh.SyncBatchNorm && sh.Reducer.Ranks > 1 ->
                        // the whole batch's statistics: per-channel sums allreduced (two passes,
                        // as one process computes them), composed so gradients flow through them
                        let n = Shape.numel s / c.Features / s.[0] * sh.Total

                        if n < 2 then
                            Shape.fail
                                describe
                                (sprintf "train mode needs more than one value per channel, got %d in the whole batch" n)

                        let axes = Array.init s.Length id |> Array.filter (fun a -> a <> 1)
                        let count = float n
                        let mean = Tensor.allReduce sh.Reducer (Tensor.sumAxes axes true x) / count
                        let centered = x - mean

                        let var =
                            Tensor.allReduce sh.Reducer (Tensor.sumAxes axes true (centered * centered))
                            / count

                        let xhat = centered / Tensor.sqrt (var + c.Eps)

                        let y =
                            if c.Affine then
                                xhat * Tensor.reshape bshape vars.Params.["weight"]
                                + Tensor.reshape bshape vars.Params.["bias"]
                            else
                                xhat

                        let flat t =
                            Tensor.reshape [| c.Features |] (Tensor.detach t)

                        y, updated (flat mean) (flat var) n
                    | Train, _ ->
                        let n = Shape.numel s / c.Features

                        if n < 2 then
                            Shape.fail
                                describe
                                (sprintf "train mode needs more than one value per channel, got input %s" (Shape.show s))

                        // one fused primitive (statistics, normalisation and the affine map, and
                        // one pass back), instead of about twenty elementwise passes
                        let gamma, beta =
                            if c.Affine then
                                vars.Params.["weight"], vars.Params.["bias"]
                            else
                                let dt = Tensor.dtype x
                                Tensor.fullAs dt [| c.Features |] 1.0, Tensor.fullAs dt [| c.Features |] 0.0

                        let y, mean, var = Prim.batchNorm c.Eps x gamma beta
                        y, updated (Tensor.ofRaw mean) (Tensor.ofRaw var) n
                    | Eval, _ ->
                        // y = (x − μ)·(weight/√(σ² + ε)) + bias: the per-channel factor is folded
                        // before touching the full-size tensor
                        let mean = Tensor.reshape bshape (state "running_mean")
                        let var = Tensor.reshape bshape (state "running_var")
                        let centered, invStd = x - mean, 1.0 / Tensor.sqrt (var + c.Eps)

                        let y =
                            if c.Affine then
                                centered * (invStd * Tensor.reshape bshape vars.Params.["weight"])
                                + Tensor.reshape bshape vars.Params.["bias"]
                            else
                                centered * invStd

                        y, Map.empty
        }

    /// BatchNorm with PyTorch's defaults.
    let batchNorm (features: int) =
        batchNormWith (batchNormConfig features)

    let private l2normalize (v: Tensor) =
        v / (Tensor.sqrt (Tensor.sum (v * v)) + 1e-12)

    /// Spectral normalisation (Miyato et al. 2018) of a layer's "weight": the wrapped layer sees
    /// W / σ(W), σ estimated by one power iteration per train-mode call on W reshaped to
    /// [out, rest]; the iteration vector "weight_u" [out] is state, updated in train mode and
    /// used as is in eval mode. The raw weight is the parameter "weight_orig" (PyTorch's names).
    let spectralNorm (layer: Layer) = {
        Describe = sprintf "SpectralNorm(%s)" layer.Describe
        Init =
            fun key ->
                let k1, k2 = Random.split key
                let v = layer.Init k1
                let w = v.Params.["weight"]
                let rows = (Tensor.shape w).[0]

                {
                    Params = v.Params |> Map.remove "weight" |> Map.add "weight_orig" w
                    State = v.State |> Map.add "weight_u" (l2normalize (Tensor.randn k2 [| rows |]))
                }
        Apply =
            fun vars ctx x ->
                let w = vars.Params.["weight_orig"]
                let ws = Tensor.shape w
                let mat = Tensor.reshape [| ws.[0]; -1 |] w
                let u0 = vars.State.["weight_u"]
                // the power iteration runs on constants: σ's gradient flows only through W
                let matC = Tensor.detach mat

                let u =
                    match ctx.Mode with
                    | Train -> l2normalize (Tensor.matmul matC (l2normalize (Tensor.matmul u0 matC)))
                    | Eval -> u0

                let v = l2normalize (Tensor.matmul u matC)
                let sigma = Tensor.dot u (Tensor.matmul mat v)

                let inner = {
                    Params = vars.Params |> Map.remove "weight_orig" |> Map.add "weight" (w / sigma)
                    State = vars.State |> Map.remove "weight_u"
                }

                let y, s = layer.Apply inner ctx x

                y,
                (match ctx.Mode with
                 | Train -> Map.add "weight_u" u s
                 | Eval -> s)
    }
