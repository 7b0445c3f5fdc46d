namespace Gan.Functional.Nn

open Gan.Functional

/// An exponential moving average of weights (e.g. the generator's, for sampling).
module Ema =
    /// ema ← decay·ema + (1 − decay)·current, for every name in `current`.
    let update (decay: float) (ema: Map<string, Tensor>) (current: Map<string, Tensor>) =
        current
        |> Map.map (fun name p ->
            match Map.tryFind name ema with
            | Some e -> Tensor.detach e * decay + Tensor.detach p * (1.0 - decay)
            | None -> Tensor.detach p)
