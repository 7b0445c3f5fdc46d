namespace Gan.Functional.Gan

open Gan.Functional
open Gan.Functional.Nn

/// A training state as a flat list of named tensors and back: the content of a checkpoint
/// (the file format is the host's business). Names follow PyTorch's state_dict under a prefix:
/// "generator.0.weight", "discriminator.3.running_mean"; optimizer buffers as
/// "optim.generator.exp_avg.0.weight" (Adam/RMSProp second moment: exp_avg_sq); the EMA as
/// "ema.generator.0.weight"; the step counts and RNG key as float64 scalars/vectors under "train.".
module Checkpoint =

    let private under (prefix: string) (m: Map<string, Tensor>) =
        m |> Map.toList |> List.map (fun (k, v) -> prefix + k, v)

    let private num (v: float) = Tensor.scalarAs Float64 v

    /// All of `state` as named tensors.
    let toNamed (state: TrainState) : (string * Tensor) list = [
        yield! under "generator." state.G.Params
        yield! under "generator." state.G.State
        yield! under "discriminator." state.D.Params
        yield! under "discriminator." state.D.State
        yield! under "optim.generator.exp_avg." state.GOpt.Moment1
        yield! under "optim.generator.exp_avg_sq." state.GOpt.Moment2
        yield! under "optim.discriminator.exp_avg." state.DOpt.Moment1
        yield! under "optim.discriminator.exp_avg_sq." state.DOpt.Moment2
        yield! under "ema.generator." state.GEma
        "optim.generator.step", num (float state.GOpt.Step)
        "optim.discriminator.step", num (float state.DOpt.Step)
        "train.step", num (float state.Step)
        "train.key", Tensor.ofArray64 [| 2 |] [| float state.Key.K0; float state.Key.K1 |]
    ]

    /// Raised when named tensors do not fit the model they are loaded into.
    exception CheckpointMismatchException of string

    /// Rebuilds a state shaped like `template` (e.g. a fresh <c>Training.init</c> of the same
    /// model and settings) from named tensors; every template entry must be present with the
    /// same shape, else a CheckpointMismatchException names the first offender.
    let ofNamed (template: TrainState) (named: (string * Tensor) list) =
        let table = dict named

        let fetch (name: string) (like: Tensor) =
            match table.TryGetValue name with
            | true, t when Tensor.shape t = Tensor.shape like -> Tensor.cast (Tensor.dtype like) t
            | true, t ->
                raise (
                    CheckpointMismatchException(
                        sprintf
                            "'%s' has shape %s, the model expects %s"
                            name
                            (Shape.show (Tensor.shape t))
                            (Shape.show (Tensor.shape like))
                    )
                )
            | _ -> raise (CheckpointMismatchException(sprintf "'%s' is missing" name))

        let load prefix (m: Map<string, Tensor>) =
            m |> Map.map (fun k v -> fetch (prefix + k) v)

        let scalar name =
            int (Tensor.item (fetch name (num 0.0)))

        let key =
            Tensor.toArray64 (fetch "train.key" (Tensor.zerosLike (Tensor.ofArray64 [| 2 |] [| 0.0; 0.0 |])))

        {
            G = {
                Params = load "generator." template.G.Params
                State = load "generator." template.G.State
            }
            D = {
                Params = load "discriminator." template.D.Params
                State = load "discriminator." template.D.State
            }
            GOpt = {
                Step = scalar "optim.generator.step"
                Moment1 = load "optim.generator.exp_avg." template.GOpt.Moment1
                Moment2 = load "optim.generator.exp_avg_sq." template.GOpt.Moment2
            }
            DOpt = {
                Step = scalar "optim.discriminator.step"
                Moment1 = load "optim.discriminator.exp_avg." template.DOpt.Moment1
                Moment2 = load "optim.discriminator.exp_avg_sq." template.DOpt.Moment2
            }
            GEma = load "ema.generator." template.GEma
            Step = scalar "train.step"
            Key = {
                K0 = uint32 key.[0]
                K1 = uint32 key.[1]
            }
        }
