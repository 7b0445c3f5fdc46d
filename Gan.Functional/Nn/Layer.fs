namespace Gan.Functional.Nn

open Gan.Functional

/// Whether a forward pass trains (batch statistics, dropout active) or evaluates.
type Mode =
    | Train
    | Eval

/// Where one rank's rows sit in the global batch of a data-parallel step: the ranks' slices
/// tile rows 0 … Total − 1 in rank order. Layers that look across the batch use it.
type Shard = {
    /// Sums across the job's ranks.
    Reducer: IReducer
    /// The global index of this rank's first row.
    Offset: int
    /// The rows of all ranks together.
    Total: int
    /// BatchNorm normalises with the whole batch's mean and variance (allreduced; the
    /// gradients flow through them) instead of this rank's, so N ranks compute what one process
    /// computes on the whole batch.
    SyncBatchNorm: bool
}

/// What a forward pass needs besides parameters: the mode, a key for stochastic layers (each
/// layer of a <c>Layer.sequential</c> gets its own key folded from this one), and, in a
/// data-parallel step, where this rank's rows sit in the global batch (None: the batch is
/// whole here). Dropout draws its mask for the whole batch and takes this rank's rows, so it
/// depends on the global row index only; BatchNorm (with SyncBatchNorm) and minibatch
/// discrimination see the whole batch.
type Context = {
    Mode: Mode
    Key: Key
    Shard: Shard option
}

/// A model's variables by hierarchical name ("0.weight", "3.running_mean", …), laid out as
/// PyTorch's state_dict: `Params` are trained by the optimizer; `State` is carried along
/// (BatchNorm statistics, spectral-norm vectors) and updated by forward passes in train mode.
type Variables = {
    Params: Map<string, Tensor>
    State: Map<string, Tensor>
}

/// A layer as a pair of pure functions plus a description. `Init` draws fresh variables from a
/// key; `Apply` maps an input batch to an output batch and returns the layer's updated state
/// (an empty map for stateless layers). Configuration lives in the closures, apart from the
/// variables (as Flax's modules or Equinox's static fields).
type Layer = {
    Describe: string
    Init: Key -> Variables
    Apply: Variables -> Context -> Tensor -> Tensor * Map<string, Tensor>
}

/// Building and composing layers.
module Layer =

    /// No parameters and no state.
    let emptyVariables = {
        Params = Map.empty
        State = Map.empty
    }

    /// A stateless, parameterless layer from a pure function.
    let ofFunction (describe: string) (f: Tensor -> Tensor) = {
        Describe = describe
        Init = fun _ -> emptyVariables
        Apply = fun _ _ x -> f x, Map.empty
    }

    /// The entries of `m` under `prefix.`, with the prefix removed.
    let scope (prefix: string) (m: Map<string, Tensor>) =
        let p = prefix + "."

        m
        |> Seq.choose (fun kv ->
            if kv.Key.StartsWith(p, System.StringComparison.Ordinal) then
                Some(kv.Key.Substring p.Length, kv.Value)
            else
                None)
        |> Map.ofSeq

    /// The entries of `m` renamed to `prefix.name`.
    let prefixed (prefix: string) (m: Map<string, Tensor>) =
        m |> Seq.map (fun kv -> prefix + "." + kv.Key, kv.Value) |> Map.ofSeq

    /// Union of maps (later entries win).
    let merge (maps: Map<string, Tensor> seq) =
        maps |> Seq.collect Map.toSeq |> Map.ofSeq

    /// Variables restricted to one child, names relative to it.
    let child (prefix: string) (v: Variables) = {
        Params = scope prefix v.Params
        State = scope prefix v.State
    }

    /// Layers applied in order; child i's variables are named "i.…" (torch.nn.Sequential's
    /// naming) and child i draws from key `foldIn key i`.
    let sequential (layers: Layer list) =
        let layers = List.toArray layers

        {
            Describe =
                "Sequential("
                + (layers |> Array.map (fun l -> l.Describe) |> String.concat ", ")
                + ")"
            Init =
                fun key ->
                    let vs = layers |> Array.mapi (fun i l -> l.Init(Random.foldIn key i))

                    {
                        Params = merge (vs |> Array.mapi (fun i v -> prefixed (string i) v.Params))
                        State = merge (vs |> Array.mapi (fun i v -> prefixed (string i) v.State))
                    }
            Apply =
                fun vars ctx x ->
                    let mutable h = x
                    let states = ResizeArray()

                    for i in 0 .. layers.Length - 1 do
                        let name = string i

                        let y, s =
                            layers.[i].Apply
                                (child name vars)
                                {
                                    ctx with
                                        Key = Random.foldIn ctx.Key i
                                }
                                h

                        h <- y

                        if not s.IsEmpty then
                            states.Add(prefixed name s)

                    h, merge states
        }

    /// A named sub-module: its variables live under `name.` (e.g. "lin.weight").
    let named (name: string) (layer: Layer) = {
        Describe = layer.Describe
        Init =
            fun key ->
                let v = layer.Init key

                {
                    Params = prefixed name v.Params
                    State = prefixed name v.State
                }
        Apply =
            fun vars ctx x ->
                let y, s = layer.Apply (child name vars) ctx x
                y, prefixed name s
    }

    /// Runs a layer, returning the output and the variables with the state replaced by the
    /// updated one (unchanged entries kept).
    let run (layer: Layer) (vars: Variables) (ctx: Context) (x: Tensor) =
        let y, s = layer.Apply vars ctx x

        y,
        {
            vars with
                State = Map.fold (fun acc k v -> Map.add k v acc) vars.State s
        }

    /// The number of trainable scalars.
    let parameterCount (vars: Variables) =
        vars.Params |> Seq.sumBy (fun kv -> Tensor.numel kv.Value)
