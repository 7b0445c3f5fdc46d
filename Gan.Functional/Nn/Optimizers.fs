namespace Gan.Functional.Nn

open Gan.Functional

/// An optimizer's state by name: the step count and per-parameter buffers (momentum, Adam's
/// moments), keyed like the parameters. A plain value a checkpoint can save.
type OptimizerState = {
    Step: int
    /// First-moment / momentum buffers (PyTorch's exp_avg, momentum_buffer).
    Moment1: Map<string, Tensor>
    /// Second-moment buffers (PyTorch's exp_avg_sq, square_avg).
    Moment2: Map<string, Tensor>
}

/// Which update rule, with its hyper-parameters (the learning rate comes per step from a schedule).
type OptimizerKind =
    /// SGD with momentum and dampening 0; Nesterov off by default as in PyTorch.
    | Sgd of momentum: float * nesterov: bool * weightDecay: float
    /// Adam (Kingma & Ba); weight decay as L2 added to the gradient (PyTorch's Adam), or
    /// decoupled (AdamW) when `decoupled`.
    | Adam of beta1: float * beta2: float * eps: float * weightDecay: float * decoupled: bool
    /// RMSProp (PyTorch's form: v ← αv + (1 − α)g², p ← p − lr·g/(√v + ε)).
    | RmsProp of alpha: float * eps: float * momentum: float

/// Optimizers as init/update pairs over named parameters.
module Optimizer =

    /// Adam with PyTorch's defaults (β = 0.9, 0.999; ε = 1e-8; no weight decay).
    let adam = Adam(0.9, 0.999, 1e-8, 0.0, false)

    /// Adam with DCGAN's β1 = 0.5.
    let adamGan = Adam(0.5, 0.999, 1e-8, 0.0, false)

    /// Zeroed buffers for `parameters` (each buffer its own, so that they can be donated).
    let init (kind: OptimizerKind) (parameters: Map<string, Tensor>) =
        let zeros () =
            parameters |> Map.map (fun _ p -> Tensor.zerosLike p)

        match kind with
        | Sgd(m, _, _) -> {
            Step = 0
            Moment1 = (if m > 0.0 then zeros () else Map.empty)
            Moment2 = Map.empty
          }
        | Adam _ -> {
            Step = 0
            Moment1 = zeros ()
            Moment2 = zeros ()
          }
        | RmsProp(_, _, m) -> {
            Step = 0
            Moment1 = (if m > 0.0 then zeros () else Map.empty)
            Moment2 = zeros ()
          }

    /// The scalars of Adam's t-th step (1-based).
    let private adamCoefficients lr (t: int) b1 b2 eps wd decoupled = {
        Lr = lr
        Beta1 = b1
        Beta2 = b2
        Eps = eps
        WeightDecay = wd
        Decoupled = decoupled
        BiasCorrection1 = 1.0 - pown b1 t
        BiasCorrection2 = 1.0 - pown b2 t
    }

    /// Adam on every parameter that has a gradient, written over the parameters and moments
    /// in one pass (the backend's <c>IInPlaceOptimizer</c>); None where that does not apply:
    /// another optimizer or backend, float64, or buffers shared between parameters or moments
    /// (a tied weight would be stepped twice).
    let private adamInPlace
        kind
        (lr: float)
        (grads: Map<string, Tensor>)
        (state: OptimizerState)
        (parameters: Map<string, Tensor>)
        =
        // host buffers only (checked below): the backend that runs host tensors
        match kind, Gan.Functional.Kernels.Placement.hostBackend () with
        | Adam(b1, b2, eps, wd, decoupled), (:? IInPlaceOptimizer as o) ->
            let t = state.Step + 1

            let stepped =
                parameters
                |> Map.toArray
                |> Array.choose (fun (name, p) ->
                    match Map.tryFind name grads with
                    | Some g ->
                        Some(
                            Tensor.toRaw (Tensor.detach p),
                            Tensor.toRaw (Tensor.detach g),
                            Tensor.toRaw state.Moment1.[name],
                            Tensor.toRaw state.Moment2.[name]
                        )
                    | None -> None)

            let buffers =
                stepped
                |> Array.collect (fun (p, _, m, v) -> [| p; m; v |])
                |> Array.map (fun r ->
                    match r.Storage with
                    | Storage.F32 a -> Some a
                    | _ -> None)

            let arrays = Array.choose id buffers
            let seen = System.Collections.Generic.HashSet<float32[]>(HashIdentity.Reference)
            let distinct = arrays.Length = buffers.Length && Array.forall seen.Add arrays

            if distinct && not (Array.isEmpty stepped) then
                let c = adamCoefficients lr t b1 b2 eps wd decoupled

                let pick f = Array.map f stepped

                o.AdamStepsInPlace(
                    pick (fun (p, _, _, _) -> p),
                    pick (fun (_, g, _, _) -> g),
                    pick (fun (_, _, m, _) -> m),
                    pick (fun (_, _, _, v) -> v),
                    c
                )
                // the parameters' buffers hold the new values: the same tensors, detached
                let updated =
                    parameters
                    |> Map.map (fun name p -> if grads.ContainsKey name then Tensor.detach p else p)

                Some(updated, { state with Step = t })
            else
                None
        | _ -> None

    let private updateWith
        (donate: bool)
        (kind: OptimizerKind)
        (lr: float)
        (grads: Map<string, Tensor>)
        (state: OptimizerState)
        (parameters: Map<string, Tensor>)
        =
        let t = state.Step + 1
        let mutable m1 = state.Moment1
        let mutable m2 = state.Moment2

        let updated =
            parameters
            |> Map.map (fun name p ->
                match Map.tryFind name grads with
                | None -> p
                | Some g ->
                    let p = Tensor.detach p
                    let g = Tensor.detach g

                    match kind with
                    | Sgd(momentum, nesterov, wd) ->
                        let g = if wd <> 0.0 then g + p * wd else g

                        if momentum = 0.0 then
                            p - g * lr
                        else
                            let buf = if t = 1 then g else m1.[name] * momentum + g
                            m1 <- Map.add name buf m1
                            let d = if nesterov then g + buf * momentum else buf
                            p - d * lr
                    | Adam(b1, b2, eps, wd, decoupled) ->
                        // one fused pass per parameter (PyTorch's arrangement, see AdamCoefficients)
                        let c = adamCoefficients lr t b1 b2 eps wd decoupled

                        let m, v = Tensor.toRaw m1.[name], Tensor.toRaw m2.[name]

                        // donation needs two distinct buffers; a state built by hand may share one
                        if donate && not (RawTensor.sameBuffer m v) then
                            // m and v now hold the new moments: the maps keep the same tensors
                            Tensor.ofRaw (
                                Prim.fusedOptimizer().AdamStepDonated(Tensor.toRaw p, Tensor.toRaw g, m, v, c)
                            )
                        else
                            let p', m', v' =
                                Prim.fusedOptimizer().AdamStep(Tensor.toRaw p, Tensor.toRaw g, m, v, c)

                            m1 <- Map.add name (Tensor.ofRaw m') m1
                            m2 <- Map.add name (Tensor.ofRaw v') m2
                            Tensor.ofRaw p'
                    | RmsProp(alpha, eps, momentum) ->
                        let v = m2.[name] * alpha + g * g * (1.0 - alpha)
                        m2 <- Map.add name v m2
                        let d = g / (Tensor.sqrt v + eps)

                        if momentum > 0.0 then
                            let buf = m1.[name] * momentum + d
                            m1 <- Map.add name buf m1
                            p - buf * lr
                        else
                            p - d * lr)

        updated, { Step = t; Moment1 = m1; Moment2 = m2 }

    /// One step with learning rate `lr`: returns the new parameters and state. Parameters
    /// without a gradient are left as they are. Pure: `state` and `parameters` are unchanged.
    let update kind lr grads state parameters =
        updateWith false kind lr grads state parameters

    /// <summary>As <c>Optimizer.update</c>, but `state` is
    /// donated (JAX's buffer donation): Adam's moment buffers are overwritten with the new
    /// moments instead of being copied, which saves two parameter-sized buffers per parameter at
    /// the peak. `state` must not be used after the call (its moments are the returned state's).
    /// Other optimizers and `parameters` are treated as by <c>update</c>.</summary>
    let updateDonated kind lr grads state parameters =
        updateWith true kind lr grads state parameters

    /// <summary>As <c>Optimizer.updateDonated</c>, with `parameters` donated too: Adam writes
    /// the new parameters and moments over the old ones, for the whole network in one pass, where
    /// the backend offers it (<c>IInPlaceOptimizer</c>); elsewhere it is
    /// <c>Optimizer.updateDonated</c>. Neither `state` nor `parameters` may be used after the
    /// call: the returned ones may share their buffers.</summary>
    let updateInPlace kind lr grads state parameters =
        match adamInPlace kind lr grads state parameters with
        | Some result -> result
        | None -> updateWith true kind lr grads state parameters
