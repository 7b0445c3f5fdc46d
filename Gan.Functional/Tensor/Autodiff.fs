namespace Gan.Functional

open System.Collections.Generic

/// The outcome of differentiating a loss that also returns auxiliary values (metrics,
/// updated BatchNorm statistics): the loss, one gradient per named parameter, and the aux.
type GradResult<'Aux> = {
    Loss: Tensor
    Grads: Map<string, Tensor>
    Aux: 'Aux
}

/// Reverse-mode automatic differentiation as functions (<c>grad f x</c>), nestable to any
/// order: backward rules are written in differentiable tensor operations, and every call opens
/// its own nesting level so that levels never mix (no perturbation confusion).
module Autodiff =

    /// The adjoints of a node's inputs, in input order: ValueNone where an input needs none
    /// (it is not tracked at the node's level).
    type private Adjoints = Tensor voption[]

    let inline private wantedIf (wanted: bool[]) (i: int) (f: unit -> Tensor) =
        if wanted.[i] then ValueSome(f ()) else ValueNone

    /// BatchNorm's adjoints (dx, dgamma, dbeta) for output adjoint g: on constants (first order)
    /// the fused kernel, all three at once; otherwise the closed form in differentiable
    /// operations, recomputing the statistics from x so that higher-order derivatives see their
    /// dependence on x.
    let private batchNormRule (n: Node) (g: Tensor) (wanted: bool[]) x gamma (eps: float) mean var : Adjoints =
        let xp, gp = Tape.primalAt n.Tag x, Tape.primalAt n.Tag gamma
        let c = (Prim.shape gp).[0]

        if Tape.tagOf g = 0L && Tape.tagOf xp = 0L && Tape.tagOf gp = 0L then
            let dx, dg, db =
                Prim.backend().BatchNormBackward(Tape.raw g, Tape.raw xp, Tape.raw gp, mean, var, eps)

            [|
                wantedIf wanted 0 (fun () -> TConst dx)
                wantedIf wanted 1 (fun () -> TConst dg)
                wantedIf wanted 2 (fun () -> TConst db)
            |]
        else
            let s = Prim.shape xp
            let axes = Array.init s.Length id |> Array.filter (fun a -> a <> 1)
            let bshape = Array.init s.Length (fun a -> if a = 1 then c else 1)
            let m = float (Shape.numel s / c)
            let k v = Prim.scalarLike xp v
            let mu = Prim.mul (Prim.sumKeep axes xp) (k (1.0 / m))
            let xc = Prim.sub xp mu
            let v = Prim.mul (Prim.sumKeep axes (Prim.mul xc xc)) (k (1.0 / m))
            let inv = Prim.div (k 1.0) (Prim.sqrt (Prim.add v (k eps)))
            let xhat = Prim.mul xc inv
            let sg = Prim.sumKeep axes g
            let sgx = Prim.sumKeep axes (Prim.mul g xhat)

            [|
                wantedIf wanted 0 (fun () ->
                    let scale = Prim.mul (Prim.mul (Prim.reshape bshape gp) inv) (k (1.0 / m))
                    Prim.mul scale (Prim.sub (Prim.sub (Prim.mul g (k m)) sg) (Prim.mul xhat sgx)))
                wantedIf wanted 1 (fun () -> Prim.reshape [| c |] sgx)
                wantedIf wanted 2 (fun () -> Prim.reshape [| c |] sg)
            |]

    /// LeakyRelu's adjoint g·slope, the slope (1 where `sign` > 0, α elsewhere) read from the
    /// activation's input or, for α ≥ 0, its output: the fused kernel on constants; otherwise a
    /// multiply by the slope as a constant, since it is piecewise constant at every order.
    let private leakyReluAdjoint (alpha: float) (g: Tensor) (sign: Tensor) =
        if Tape.tagOf g = 0L && Tape.tagOf sign = 0L then
            TConst(Prim.backend().LeakyReluBackward(Tape.raw g, Tape.raw sign, alpha))
        else
            let mask = Tensor.gt (TConst(Tape.raw sign)) (Prim.scalarLike sign 0.0)

            let slope =
                Prim.add (Prim.mul mask (Prim.scalarLike sign (1.0 - alpha))) (Prim.scalarLike sign alpha)

            Prim.mul g slope

    /// PairwiseL1's adjoint in x, Σ_r g[., p, r]·sign(x_p − y_r): the kernel on constants;
    /// otherwise the same sum over the broadcast differences in differentiable operations
    /// (the signs are piecewise constant, so only g carries higher-order derivatives).
    let private pairwiseL1Adjoint (g: Tensor) (x: Tensor) (y: Tensor) =
        if Tape.tagOf g = 0L && Tape.tagOf x = 0L && Tape.tagOf y = 0L then
            TConst(Prim.backend().PairwiseL1Backward(Tape.raw g, Tape.raw x, Tape.raw y))
        else
            let sx, sy = Prim.shape x, Prim.shape y
            let gs, ps, rs, cs = sx.[0], sx.[1], sy.[1], sx.[2]
            // [G, P, 1, C] − [G, 1, R, C] → signs [G, P, R, C], constants
            let constant t = TConst(Tape.raw t)

            let diff =
                Prim.sub (Prim.reshape [| gs; ps; 1; cs |] (constant x)) (Prim.reshape [| gs; 1; rs; cs |] (constant y))

            let signs = Tensor.sign diff
            let gx = Prim.mul (Prim.reshape [| gs; ps; rs; 1 |] g) signs
            Prim.reshape sx (Prim.sumKeep [| 2 |] gx)

    /// The vector-Jacobian product of one primitive: given the adjoint `g` of node `n`'s
    /// output, the adjoint contributions to all its inputs at once, computed for the `wanted`
    /// ones only. One arm per primitive (the gradient table). `scratch` receives temporaries the
    /// rule made and no longer needs (buffers the caller may recycle).
    let private rule (n: Node) (g: Tensor) (wanted: bool[]) (scratch: Tensor -> unit) : Adjoints =
        let p t = Tape.primalAt n.Tag t
        let y = n.Primal
        let shapeOf t = Prim.shape t
        let one t = Prim.scalarLike t 1.0
        let unary (f: unit -> Tensor) = [| wantedIf wanted 0 f |]

        let binary (f0: unit -> Tensor) (f1: unit -> Tensor) = [| wantedIf wanted 0 f0; wantedIf wanted 1 f1 |]

        match n.Op with
        | Leaf -> [||]
        | Neg _ -> unary (fun () -> Prim.neg g)
        | Exp _ -> unary (fun () -> Prim.mul g y)
        | Log a -> unary (fun () -> Prim.div g (p a))
        | Sqrt _ -> unary (fun () -> Prim.div g (Prim.mul y (Prim.scalarLike y 2.0)))
        | Tanh _ -> unary (fun () -> Prim.mul g (Prim.sub (one y) (Prim.mul y y)))
        | Sigmoid _ -> unary (fun () -> Prim.mul g (Prim.mul y (Prim.sub (one y) y)))
        | Abs a -> unary (fun () -> Prim.mul g (Tensor.sign (p a)))
        | Add(a, b) -> binary (fun () -> Prim.sumTo (shapeOf a) g) (fun () -> Prim.sumTo (shapeOf b) g)
        | Sub(a, b) ->
            binary
                (fun () -> Prim.sumTo (shapeOf a) g)
                // negate after summing: a broadcast operand's sum is the smaller tensor
                (fun () -> Prim.neg (Prim.sumTo (shapeOf b) g))
        | Mul(a, b) ->
            binary (fun () -> Prim.sumTo (shapeOf a) (Prim.mul g (p b))) (fun () ->
                Prim.sumTo (shapeOf b) (Prim.mul g (p a)))
        | Div(a, b) ->
            binary (fun () -> Prim.sumTo (shapeOf a) (Prim.div g (p b))) (fun () ->
                Prim.neg (Prim.sumTo (shapeOf b) (Prim.div (Prim.mul g y) (p b))))
        | Pow(a, b) ->
            binary
                (fun () ->
                    Prim.sumTo (shapeOf a) (Prim.mul g (Prim.mul (p b) (Prim.pow (p a) (Prim.sub (p b) (one y))))))
                (fun () -> Prim.sumTo (shapeOf b) (Prim.mul g (Prim.mul y (Prim.log (p a)))))
        | Where(m, _, _) ->
            let zero = Prim.scalarLike g 0.0
            binary (fun () -> Prim.where (TConst m) g zero) (fun () -> Prim.where (TConst m) zero g)
        | Sum(a, _) -> unary (fun () -> Prim.expand (shapeOf a) g)
        | Max(a, axes) ->
            // d max = the share of g for every position equal to the maximum (ties split evenly)
            unary (fun () ->
                let mask = Tensor.eq (p a) y
                let count = TConst(Tape.raw (Prim.sumKeep axes mask))
                Prim.mul (Prim.expand (shapeOf a) (Prim.div g count)) mask)
        | Reshape a -> unary (fun () -> Prim.reshape (shapeOf a) g)
        | Permute(_, perm) ->
            unary (fun () ->
                let inverse = Array.zeroCreate perm.Length
                perm |> Array.iteri (fun k v -> inverse.[v] <- k)
                Prim.permute inverse g)
        | Expand a -> unary (fun () -> Prim.sumTo (shapeOf a) g)
        | Slice(a, starts) ->
            unary (fun () ->
                let s = shapeOf a
                let gs = shapeOf g
                Prim.pad starts (Array.init s.Length (fun d -> s.[d] - starts.[d] - gs.[d])) g)
        | Pad(a, before) -> unary (fun () -> Prim.slice before (shapeOf a) g)
        | StridedView(a, offset, strides) -> unary (fun () -> Prim.stridedEmbed (shapeOf a) offset strides g)
        | StridedEmbed(a, offset, strides) -> unary (fun () -> Prim.stridedView offset strides (shapeOf a) g)
        | Concat(xs, axis) ->
            let mutable offset = 0

            xs
            |> Array.mapi (fun i x ->
                let s = shapeOf x
                let start = offset
                offset <- offset + s.[axis]

                wantedIf wanted i (fun () ->
                    let starts = Array.zeroCreate s.Length
                    starts.[axis] <- start
                    Prim.slice starts s g))
        | Take(a, index) -> unary (fun () -> Prim.scatterAdd index (shapeOf a) g)
        | ScatterAdd(a, index) -> unary (fun () -> Prim.take index (shapeOf a) g)
        | MatMul(a, ta, b, tb) ->
            // C = A'B' with A' = A or Aᵀ: dA' = g B'ᵀ, dB' = A'ᵀ g, transposed back where needed
            binary
                (fun () ->
                    let d =
                        if ta then
                            Prim.matmulT (p b) tb g true
                        else
                            Prim.matmulT g false (p b) (not tb)

                    Prim.sumTo (shapeOf a) d)
                (fun () ->
                    let d =
                        if tb then
                            Prim.matmulT g true (p a) ta
                        else
                            Prim.matmulT (p a) (not ta) g false

                    Prim.sumTo (shapeOf b) d)
        | Conv(x, w, spec) ->
            binary (fun () -> Prim.conv2dInputGrad spec (shapeOf x) g (p w)) (fun () ->
                Prim.conv2dWeightGrad spec (shapeOf w) (p x) g)
        | ConvInputGrad(gg, w, spec) ->
            // z = convᵀ(gg, w): ⟨z, u⟩ = ⟨gg, conv(u, w)⟩
            binary (fun () -> Prim.conv2d spec g (p w)) (fun () -> Prim.conv2dWeightGrad spec (shapeOf w) g (p gg))
        | ConvWeightGrad(x, gg, spec) ->
            // k = convW(x, gg): ⟨k, V⟩ = ⟨gg, conv(x, V)⟩
            binary (fun () -> Prim.conv2dInputGrad spec (shapeOf x) (p gg) g) (fun () -> Prim.conv2d spec (p x) g)
        | Cast a -> unary (fun () -> Prim.cast (Prim.dtype a) g)
        | Move a -> unary (fun () -> Prim.moveTo (Gan.Functional.Kernels.Placement.ownerOf (Tape.raw a)) g)
        | PairwiseL1(a, b) ->
            binary
                (fun () -> pairwiseL1Adjoint g (p a) (p b))
                // the same rule with the roles of x and y swapped: d[p, r] = d'[r, p]
                (fun () -> pairwiseL1Adjoint (Prim.permute [| 0; 2; 1 |] g) (p b) (p a))
        | LeakyRelu(a, alpha) -> unary (fun () -> leakyReluAdjoint alpha g (p a))
        // every rank's output depends on every rank's input: the adjoint sums over ranks too
        | AllReduce(_, reducer) -> unary (fun () -> Prim.allReduce reducer g)
        | BatchNorm(x, gamma, _, eps, mean, var) -> batchNormRule n g wanted x gamma eps mean var
        | BatchNormAct(x, gamma, _, eps, mean, var, alpha) ->
            // the activation's adjoint first (sign(y) = sign of the normalised value for α ≥ 0),
            // then BatchNorm's rule on it; the activation's adjoint is a temporary of this rule
            let gb = leakyReluAdjoint alpha g y
            let adjoints = batchNormRule n gb wanted x gamma eps mean var
            scratch gb
            adjoints

    /// The float32 buffer under a constant, a host array or a device buffer (none for tracked
    /// or float64 tensors).
    let private constBuffer (t: Tensor) : obj voption =
        match t with
        | TConst r ->
            match r.Storage with
            | Storage.F32 a -> ValueSome(a :> obj)
            | Storage.Device d when d.DType = Float32 -> ValueSome(d :> obj)
            | _ -> ValueNone
        | TRev _ -> ValueNone

    /// Hands buffers that one backward pass created back to the backend once they are dead.
    ///
    /// First order (every primal a constant, as in a training step), the rules compute on
    /// constants only, so no outer tape keeps an adjoint, and a buffer a rule created is dead
    /// once no adjoint slot holds it any more. Such buffers go back to the backend for reuse
    /// (a third to a half of a step's allocations). Rules return either fresh buffers or their
    /// adjoint `g` itself (reshaped, or passed through by sumTo, expand, cast), never a primal,
    /// so counting the adjoint slots that hold each buffer is enough. Otherwise (a nested
    /// differentiation) nothing is recycled.
    [<Sealed>]
    type private Recycler private (enabled: bool) =
        let holders = Dictionary<obj, int>(HashIdentity.Reference)
        let fresh = HashSet<obj>(HashIdentity.Reference)

        let recycleIfDead (t: Tensor) (b: obj) =
            if not (holders.ContainsKey b) && fresh.Remove b then
                Prim.backend().Recycle(Tape.raw t)

        /// The recycler of a backward pass from `seed` over `order` (the nodes of level `tag`):
        /// enabled at first order only, when it also starts a new phase of the backend's pool.
        static member For(tag: int64, order: List<Node>, seed: Tensor) =
            let enabled =
                Tape.tagOf seed = 0L
                && order
                   |> Seq.forall (fun n ->
                       Tape.tagOf n.Primal = 0L
                       && n.Op.Inputs |> Array.forall (fun i -> Tape.tagOf (Tape.primalAt tag i) = 0L))

            if enabled then
                Prim.backend().NextPhase()

            Recycler(enabled)

        /// An adjoint slot takes `t`.
        member _.Hold(t: Tensor) =
            match constBuffer t with
            | ValueSome b when enabled ->
                match holders.TryGetValue b with
                | true, c -> holders.[b] <- c + 1
                | _ -> holders.[b] <- 1
            | _ -> ()

        /// A rule's result: fresh unless it is an adjoint some slot holds (or the seed).
        member _.Created(t: Tensor) =
            match constBuffer t with
            | ValueSome b when enabled && not (holders.ContainsKey b) -> fresh.Add b |> ignore
            | _ -> ()

        /// A slot lets go of `t`.
        member _.Drop(t: Tensor) =
            match constBuffer t with
            | ValueSome b when enabled ->
                match holders.TryGetValue b with
                | true, c when c > 1 -> holders.[b] <- c - 1
                | _ ->
                    holders.Remove b |> ignore
                    recycleIfDead t b
            | _ -> ()

        /// A result that no slot took (it was summed into an accumulator).
        member _.Discard(t: Tensor) =
            match constBuffer t with
            | ValueSome b when enabled -> recycleIfDead t b
            | _ -> ()

        /// A rule's own temporary, dead once the rule returns (never an adjoint a slot holds).
        member _.Scratch(t: Tensor) =
            if enabled then
                match t with
                | TConst r ->
                    match constBuffer t with
                    | ValueSome b when holders.ContainsKey b -> ()
                    | _ -> Prim.backend().Recycle r
                | TRev _ -> ()

    /// Reverse topological order of the nodes of level `tag` that `root` depends on, found with
    /// an explicit stack (no recursion limit on deep graphs): `root` comes last.
    let private topologicalOrder (tag: int64) (root: Node) =
        let order = List<Node>()
        let visited = HashSet<Node>(HashIdentity.Reference)
        let stack = Stack<struct (Node * bool)>()
        stack.Push(struct (root, false))

        while stack.Count > 0 do
            let struct (n, expanded) = stack.Pop()

            if expanded then
                order.Add n
            elif visited.Add n then
                stack.Push(struct (n, true))

                for input in n.Op.Inputs do
                    match input with
                    | TRev c when c.Tag = tag && not (visited.Contains c) -> stack.Push(struct (c, false))
                    | _ -> ()

        order

    /// Propagates `seed` (the adjoint of `root`) back through every node of level `tag` in
    /// reverse topological order; fan-out adjoints are summed. Returns the adjoints of the
    /// leaves (and of nothing else: interior adjoints are dropped once propagated).
    let private backward (tag: int64) (root: Node) (seed: Tensor) =
        let order = topologicalOrder tag root
        let recycler = Recycler.For(tag, order, seed)
        let adjoints = Dictionary<Node, Tensor>(HashIdentity.Reference)
        adjoints.[root] <- seed
        recycler.Hold seed

        for k in order.Count - 1 .. -1 .. 0 do
            let n = order.[k]

            match adjoints.TryGetValue n with
            | true, g ->
                let inputs = n.Op.Inputs

                let wanted =
                    inputs
                    |> Array.map (fun input ->
                        match input with
                        | TRev c -> c.Tag = tag
                        | TConst _ -> false)

                let contributions = rule n g wanted recycler.Scratch

                for i in 0 .. inputs.Length - 1 do
                    match inputs.[i], contributions.[i] with
                    | TRev c, ValueSome gi when wanted.[i] ->
                        recycler.Created gi

                        match adjoints.TryGetValue c with
                        | true, acc ->
                            let sum = Prim.add acc gi
                            recycler.Created sum
                            adjoints.[c] <- sum
                            recycler.Hold sum
                            recycler.Drop acc
                            recycler.Discard gi
                        | _ ->
                            adjoints.[c] <- gi
                            recycler.Hold gi
                    | _ -> ()

                // interior adjoints are no longer needed once propagated
                match n.Op with
                | Leaf -> ()
                | _ ->
                    adjoints.Remove n |> ignore
                    recycler.Drop g
            | _ -> ()

        adjoints

    /// Opens a fresh level, runs `f` on leaves at that level holding `xs`, and returns the
    /// output, f's other result and a pullback: given a cotangent shaped like the output (ones
    /// when None), each leaf's adjoint (zeros for a leaf the output does not depend on). The
    /// pullback may run later, after other work.
    let private record (f: Tensor[] -> Tensor * 'Aux) (xs: Tensor[]) =
        let tag = Tape.newTag ()
        let leaves = xs |> Array.map (fun x -> Node(x, tag, Leaf))
        let y, aux = f (leaves |> Array.map TRev)
        let value = Tape.primalAt tag y

        let pullback (seed: Tensor option) =
            match seed with
            | Some s when Prim.shape s <> Prim.shape y ->
                Shape.fail
                    "vjp"
                    (sprintf
                        "cotangent %s does not match output %s"
                        (Shape.show (Prim.shape s))
                        (Shape.show (Prim.shape y)))
            | _ -> ()

            match y with
            | TRev n when n.Tag = tag ->
                let s = seed |> Option.defaultWith (fun () -> Tensor.onesLike value)
                let adjoints = backward tag n s

                Array.map2
                    (fun (leaf: Node) (x: Tensor) ->
                        match adjoints.TryGetValue leaf with
                        | true, g -> g
                        | _ -> Tensor.zerosLike x)
                    leaves
                    xs
            | _ -> xs |> Array.map Tensor.zerosLike

        value, aux, pullback

    /// Runs `f` on leaves at a fresh level, then back-propagates `seed` (ones when None) from
    /// its output. Returns the output's value one level out and each leaf's adjoint.
    let private run (f: Tensor[] -> Tensor) (xs: Tensor[]) (seed: Tensor option) =
        let value, (), pullback = record (fun leaves -> f leaves, ()) xs
        value, pullback seed

    let private scalarOutput (f: Tensor[] -> Tensor) =
        fun (leaves: Tensor[]) ->
            let y = f leaves

            if Prim.shape y |> Shape.numel <> 1 then
                Shape.fail
                    "grad"
                    (sprintf "the function must return a single value, got %s" (Shape.show (Prim.shape y)))

            y

    /// f(x) and ∇f(x) for a function returning one element.
    let valueAndGrad (f: Tensor -> Tensor) (x: Tensor) =
        let value, grads = run (scalarOutput (fun xs -> f xs.[0])) [| x |] None
        value, grads.[0]

    /// ∇f(x) for a function returning one element; nest it for higher derivatives.
    let grad (f: Tensor -> Tensor) (x: Tensor) = snd (valueAndGrad f x)

    /// f(x) and the vector-Jacobian product vᵀ ∂f/∂x for a cotangent `v` shaped like f(x).
    let vjp (f: Tensor -> Tensor) (x: Tensor) (v: Tensor) =
        let value, grads = run (fun xs -> f xs.[0]) [| x |] (Some v)
        value, grads.[0]

    /// The Hessian-vector product ∇²f(x)·v, by differentiating ⟨∇f(x), v⟩.
    let hvp (f: Tensor -> Tensor) (x: Tensor) (v: Tensor) =
        grad (fun x -> Tensor.sum (Prim.mul (grad f x) v)) x

    let private named (f: Map<string, Tensor> -> 'r) (ps: Map<string, Tensor>) =
        let names = ps |> Map.toArray |> Array.map fst
        let values = ps |> Map.toArray |> Array.map snd
        names, values, (fun (xs: Tensor[]) -> f (Array.zip names xs |> Map.ofArray))

    /// The loss and one gradient per named parameter: the shape a training step needs.
    let valueAndGrads (f: Map<string, Tensor> -> Tensor) (ps: Map<string, Tensor>) =
        let names, values, g = named f ps
        let value, grads = run (scalarOutput g) values None
        value, Array.zip names grads |> Map.ofArray

    /// One gradient per named parameter.
    let grads (f: Map<string, Tensor> -> Tensor) (ps: Map<string, Tensor>) = snd (valueAndGrads f ps)

    /// Like <see cref="valueAndGrads"/> for a function that also returns auxiliary values;
    /// tensors inside the aux should be detached by `f` if they are to outlive the step.
    let valueAndGradsWithAux (f: Map<string, Tensor> -> Tensor * 'Aux) (ps: Map<string, Tensor>) : GradResult<'Aux> =
        let mutable aux = Unchecked.defaultof<'Aux>

        let value, grads =
            valueAndGrads
                (fun p ->
                    let loss, a = f p
                    aux <- a
                    loss)
                ps

        {
            Loss = value
            Grads = grads
            Aux = aux
        }

    /// Runs `f` once, taping it, and returns its value, its auxiliary output and a pullback that
    /// maps a cotangent for the value (shaped like it) to one gradient per named parameter. The
    /// pullback may be called later — after other work — so a forward pass can be shared, as a
    /// GAN step shares G(z) between the discriminator and the generator updates.
    let vjpNamedWithAux (f: Map<string, Tensor> -> Tensor * 'Aux) (ps: Map<string, Tensor>) =
        let names, values, g = named f ps
        let value, aux, pullback = record g values

        value, aux, (fun (seed: Tensor) -> Array.zip names (pullback (Some seed)) |> Map.ofArray)
