namespace Gan.Functional.Gan

open Gan.Functional
open Gan.Functional.Nn

/// Generating images and exploring the latent space.
module Sampling =

    /// G(z) in eval mode (running BatchNorm statistics), [N, C, H, W].
    let generate (model: GanModel) (g: Variables) (z: Tensor) =
        let y, _ =
            model.Generator.Apply
                g
                {
                    Mode = Eval
                    Key = Random.key 0UL
                    Shard = None
                }
                z

        Tensor.detach y

    /// `steps` points on the segment from z0 to z1 (rows [steps, D]), ends included.
    let lerp (z0: Tensor) (z1: Tensor) (steps: int) =
        let ts =
            Array.init steps (fun i -> if steps = 1 then 0.0 else float i / float (steps - 1))

        Tensor.stack 0 [ for t in ts -> z0 * (1.0 - t) + z1 * t ]

    /// `steps` points on the great circle from z0 to z1 (spherical interpolation, White 2016),
    /// falling back to lerp when the two are (anti)parallel.
    let slerp (z0: Tensor) (z1: Tensor) (steps: int) =
        let a = Tensor.toArray64 z0
        let b = Tensor.toArray64 z1
        let na = sqrt (Array.sumBy (fun v -> v * v) a)
        let nb = sqrt (Array.sumBy (fun v -> v * v) b)
        let cos = Array.fold2 (fun acc x y -> acc + x * y) 0.0 a b / (na * nb)
        let omega = acos (max -1.0 (min 1.0 cos))

        if abs (sin omega) < 1e-6 then
            lerp z0 z1 steps
        else
            let ts =
                Array.init steps (fun i -> if steps = 1 then 0.0 else float i / float (steps - 1))

            Tensor.stack 0 [
                for t in ts -> z0 * (sin ((1.0 - t) * omega) / sin omega) + z1 * (sin (t * omega) / sin omega)
            ]

    /// Latent vector arithmetic (S3): mean(a) − mean(b) + mean(c) over groups of latent rows,
    /// e.g. smiling woman − neutral woman + neutral man ([D]).
    let arithmetic (a: Tensor) (b: Tensor) (c: Tensor) =
        let m (t: Tensor) = Tensor.meanAxes [| 0 |] false t
        m a - m b + m c
