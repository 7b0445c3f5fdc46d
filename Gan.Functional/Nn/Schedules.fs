namespace Gan.Functional.Nn

/// A learning rate as a function of the epoch (0-based).
type Schedule =
    /// The base rate throughout.
    | ConstantRate
    /// PyTorch's MultiStepLR: multiplied by gamma at each listed epoch.
    | StepDecay of epochs: int list * gamma: float
    /// base · gammaᵉᵖᵒᶜʰ.
    | ExponentialDecay of gamma: float
    /// Linearly from base at `start` down to 0 at `total` epochs.
    | LinearDecay of start: int * total: int

/// Evaluating schedules.
module Schedule =
    /// The learning rate at `epoch` for base rate `baseLr`.
    let rate (schedule: Schedule) (baseLr: float) (epoch: int) =
        match schedule with
        | ConstantRate -> baseLr
        | StepDecay(epochs, gamma) -> baseLr * pown gamma (epochs |> List.filter (fun e -> epoch >= e) |> List.length)
        | ExponentialDecay gamma -> baseLr * (gamma ** float epoch)
        | LinearDecay(start, total) ->
            if epoch < start then
                baseLr
            else
                baseLr * max 0.0 (1.0 - float (epoch - start) / float (max 1 (total - start)))
