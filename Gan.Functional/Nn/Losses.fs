namespace Gan.Functional.Nn

open Gan.Functional

/// The objective a GAN is trained with.
type GanLoss =
    /// Goodfellow's minimax game with the saturating generator loss E[log(1 − D(G(z)))].
    | Minimax
    /// The same discriminator, with the non-saturating generator loss −E[log D(G(z))].
    | NonSaturating
    /// WGAN: the critic maximises E[D(x)] − E[D(G(z))]; use with a gradient penalty.
    | Wasserstein
    /// LSGAN (a = 0, b = c = 1) on raw outputs.
    | LeastSquares
    /// Hinge loss (SAGAN, BigGAN).
    | Hinge
    /// Relativistic average GAN with BCE (Jolicoeur-Martineau 2018).
    | RelativisticAverage

/// Losses as pure functions of discriminator outputs. Discriminators return logits (raw scores);
/// probabilities are σ(logit). All losses are means over the batch.
module Losses =

    /// Binary cross-entropy of probabilities p against targets t:
    /// −mean(t·ln p + (1 − t)·ln(1 − p)), each log clamped at −100 as PyTorch does.
    let bce (p: Tensor) (target: Tensor) =
        // ln q clamped at −100; at q = 0 the log is never evaluated (ln 0's gradient 0/0 would
        // poison the sum with NaN even though the clamp discards it)
        let clampedLog (q: Tensor) =
            let floor = Tensor.fullLike q -100.0
            let positive = Tensor.gt q (Tensor.zerosLike q)

            Tensor.maximum
                (Tensor.where positive (Tensor.log (Tensor.where positive q (Tensor.onesLike q))) floor)
                floor

        let logp = clampedLog p
        let log1mp = clampedLog (1.0 - p)
        -(Tensor.mean (target * logp + (1.0 - target) * log1mp))

    /// BCE on logits x, stable for any |x|: mean(softplus(x) − x·t).
    let bceWithLogits (logits: Tensor) (target: Tensor) =
        Tensor.mean (Tensor.softplus logits - logits * target)

    /// BCE-with-logits against a constant target label (1 for real, 0 for fake).
    let bceWithLogitsLabel (logits: Tensor) (label: float) =
        bceWithLogits logits (Tensor.fullLike logits label)

    /// The discriminator's loss for logits on a real and a fake batch.
    let discriminator (kind: GanLoss) (real: Tensor) (fake: Tensor) =
        match kind with
        | Minimax
        | NonSaturating -> bceWithLogitsLabel real 1.0 + bceWithLogitsLabel fake 0.0
        | Wasserstein -> Tensor.mean fake - Tensor.mean real
        | LeastSquares ->
            0.5 * Tensor.mean (Tensor.square (real - 1.0))
            + 0.5 * Tensor.mean (Tensor.square fake)
        | Hinge -> Tensor.mean (Tensor.relu (1.0 - real)) + Tensor.mean (Tensor.relu (1.0 + fake))
        | RelativisticAverage ->
            bceWithLogitsLabel (real - Tensor.mean fake) 1.0
            + bceWithLogitsLabel (fake - Tensor.mean real) 0.0

    /// The generator's loss for logits on a real and a fake batch (only the relativistic loss
    /// reads the real logits).
    let generator (kind: GanLoss) (real: Tensor) (fake: Tensor) =
        match kind with
        | Minimax -> -(Tensor.mean (Tensor.softplus fake)) // E[ln(1 − σ(f))] = −E[softplus(f)]
        | NonSaturating -> bceWithLogitsLabel fake 1.0
        | Wasserstein
        | Hinge -> -(Tensor.mean fake)
        | LeastSquares -> 0.5 * Tensor.mean (Tensor.square (fake - 1.0))
        | RelativisticAverage ->
            bceWithLogitsLabel (fake - Tensor.mean real) 1.0
            + bceWithLogitsLabel (real - Tensor.mean fake) 0.0

    /// Per-example L2 norm of the critic's input gradient at x: ‖∇ₓ Σ D(x)‖ over all non-batch
    /// axes (a tiny ε inside the root keeps its own gradient finite at 0). Differentiable in
    /// whatever `critic` closes over (nested differentiation).
    let private inputGradients (critic: Tensor -> Tensor) (x: Tensor) =
        Autodiff.grad (fun x -> Tensor.sum (critic x)) x

    /// The WGAN-GP mixing weights α ~ U(0, 1), one per example: [n, 1, …] like `real`'s rank.
    let penaltyMix (key: Key) (n: int) (real: Tensor) =
        let s = Tensor.shape real

        Tensor.cast (Tensor.dtype real) (Tensor.rand key (Array.init s.Length (fun i -> if i = 0 then n else 1)))

    /// WGAN-GP at given mixing weights `alpha` ([N, 1, …]): see <c>gradientPenalty</c>.
    let gradientPenaltyAt (critic: Tensor -> Tensor) (alpha: Tensor) (real: Tensor) (fake: Tensor) =
        let s = Tensor.shape real

        let xhat = alpha * Tensor.detach real + (1.0 - alpha) * Tensor.detach fake
        let g = inputGradients critic xhat
        let axes = Array.init (s.Length - 1) (fun i -> i + 1)
        let norm = Tensor.sqrt (Tensor.sumAxes axes false (g * g) + 1e-12)
        Tensor.mean (Tensor.square (norm - 1.0))

    /// WGAN-GP (Gulrajani et al. 2017): mean((‖∇D(x̂)‖₂ − 1)²) at x̂ = αx + (1 − α)x̃ with
    /// α ~ U(0, 1) drawn per example from `key`.
    let gradientPenalty (critic: Tensor -> Tensor) (key: Key) (real: Tensor) (fake: Tensor) =
        gradientPenaltyAt critic (penaltyMix key (Tensor.shape real).[0] real) real fake

    /// R1 (Mescheder et al. 2018): mean over the batch of ‖∇D(x)‖² on real data; the usual
    /// γ/2 factor is the caller's weight.
    let r1Penalty (critic: Tensor -> Tensor) (real: Tensor) =
        let g = inputGradients critic (Tensor.detach real)
        let s = Tensor.shape real
        Tensor.mean (Tensor.sumAxes (Array.init (s.Length - 1) (fun i -> i + 1)) false (g * g))
