namespace Gan.Functional

open System
open System.Threading
open Gan.Functional.Kernels

/// An immutable n-dimensional array of float32 or float64 that can take part in reverse-mode
/// differentiation. A tensor is either a constant (a raw buffer) or a value being
/// differentiated at some nesting level: then it remembers its primal (the same value one level
/// out) and the primitive that produced it. Build tensors with the <c>Tensor</c> module.
[<NoEquality; NoComparison>]
type Tensor =
    internal
    | TConst of RawTensor
    | TRev of Node

    /// Shape, dtype and the first values, e.g. `Tensor([2x3], Float32, [1, 2, 3, 4, 5, 6])`.
    override t.ToString() =
        let rec raw t =
            match t with
            | TConst r -> r
            | TRev n -> raw n.Primal

        let r = raw t
        let values = RawTensor.toFloat64Array r

        let shown =
            values
            |> Array.truncate 8
            |> Array.map (fun v -> v.ToString("G6", Globalization.CultureInfo.InvariantCulture))

        sprintf
            "Tensor(%s, %A, [%s%s])"
            (Shape.show r.Shape)
            r.DType
            (String.Join(", ", shown))
            (if values.Length > 8 then ", ..." else "")

/// One recorded primitive application at nesting level `Tag`. Reference identity matters:
/// the backward pass keys adjoints by node.
and internal Node(primal: Tensor, tag: int64, op: Op) =
    member _.Primal = primal
    member _.Tag = tag
    member _.Op = op

/// The closed set of differentiable primitives. Every other operation is a composition of
/// these; each case has exactly one backward arm in <c>Autodiff</c>.
and internal Op =
    | Leaf
    | Neg of Tensor
    | Exp of Tensor
    | Log of Tensor
    | Sqrt of Tensor
    | Tanh of Tensor
    | Sigmoid of Tensor
    | Abs of Tensor
    | Add of Tensor * Tensor
    | Sub of Tensor * Tensor
    | Mul of Tensor * Tensor
    | Div of Tensor * Tensor
    | Pow of Tensor * Tensor
    | Where of mask: RawTensor * Tensor * Tensor
    | Sum of Tensor * axes: int[]
    | Max of Tensor * axes: int[]
    | Reshape of Tensor
    | Permute of Tensor * perm: int[]
    | Expand of Tensor
    | Slice of Tensor * starts: int[]
    | Pad of Tensor * before: int[]
    /// y = the strided window (offset, strides) of x, of the node's shape, read as a contiguous
    /// tensor; its positions are distinct (checked), so its adjoint writes g back into zeros.
    /// Slice is the box case; this serves interleavings such as the sub-pixel convolution's.
    | StridedView of Tensor * offset: int * strides: int[]
    /// y = zeros of the node's shape with x written into the strided window (offset,
    /// strides): StridedView's adjoint, as Pad is Slice's.
    | StridedEmbed of Tensor * offset: int * strides: int[]
    | Concat of Tensor[] * axis: int
    | Take of Tensor * index: int[]
    | ScatterAdd of Tensor * index: int[]
    | MatMul of Tensor * transA: bool * Tensor * transB: bool
    | Conv of Tensor * Tensor * ConvSpec
    | ConvInputGrad of Tensor * Tensor * ConvSpec
    | ConvWeightGrad of Tensor * Tensor * ConvSpec
    | Cast of Tensor
    /// The same values at another place (a device, or the host): Tensor.toDevice/toHost. The
    /// adjoint moves back to the input's place.
    | Move of Tensor
    /// y = x where x > 0, αx elsewhere: one pass forward and back, and the tape keeps x only
    /// (composed as x·slope it would also keep a full-size slope tensor).
    | LeakyRelu of Tensor * alpha: float
    /// Batched pairwise L1 distances: x [G, P, C], y [G, R, C] → [G, P, R] (one kernel each
    /// way; the G·P·R·C differences are never stored).
    | PairwiseL1 of Tensor * Tensor
    /// Train-mode batch normalisation of x with per-channel gamma and beta ([C]); the batch
    /// statistics the kernel computed are kept for the backward pass.
    | BatchNorm of x: Tensor * gamma: Tensor * beta: Tensor * eps: float * mean: RawTensor * var: RawTensor
    /// LeakyRelu(α ≥ 0) of a BatchNorm's output, recorded as one node on the BatchNorm's inputs
    /// (see Rewrites.leakyRelu): the tape keeps x and the activated output, not the normalised
    /// values in between (PyTorch's in-place ReLU after BatchNorm keeps as little).
    | BatchNormAct of
        x: Tensor *
        gamma: Tensor *
        beta: Tensor *
        eps: float *
        mean: RawTensor *
        var: RawTensor *
        alpha: float
    /// y = the elementwise sum of x over the ranks of a data-parallel job (every rank gets
    /// it); its adjoint is the same sum of the ranks' adjoints.
    | AllReduce of Tensor * IReducer

    /// The tensors a primitive consumed, in argument order.
    member op.Inputs =
        match op with
        | Leaf -> [||]
        | Neg a
        | Exp a
        | Log a
        | Sqrt a
        | Tanh a
        | Sigmoid a
        | Abs a
        | Sum(a, _)
        | Max(a, _)
        | Reshape a
        | Permute(a, _)
        | Expand a
        | Slice(a, _)
        | Pad(a, _)
        | StridedView(a, _, _)
        | StridedEmbed(a, _, _)
        | Take(a, _)
        | ScatterAdd(a, _)
        | LeakyRelu(a, _)
        | AllReduce(a, _)
        | Move a
        | Cast a -> [| a |]
        | Add(a, b)
        | Sub(a, b)
        | Mul(a, b)
        | Div(a, b)
        | Pow(a, b)
        | PairwiseL1(a, b)
        | Where(_, a, b)
        | MatMul(a, _, b, _)
        | Conv(a, b, _)
        | ConvInputGrad(a, b, _)
        | ConvWeightGrad(a, b, _) -> [| a; b |]
        | Concat(xs, _) -> xs
        | BatchNorm(x, gamma, beta, _, _, _)
        | BatchNormAct(x, gamma, beta, _, _, _, _) -> [| x; gamma; beta |]

/// Nesting levels and the one generic rule by which every primitive is taped.
module internal Tape =
    let mutable private counter = 0L

    /// A fresh nesting level; later (inner) differentiations get larger tags.
    let newTag () = Interlocked.Increment(&counter)

    /// The nesting level a tensor is tracked at (0: a constant).
    let tagOf t =
        match t with
        | TConst _ -> 0L
        | TRev n -> n.Tag

    /// The underlying buffer, through every nesting level.
    let rec raw t =
        match t with
        | TConst r -> r
        | TRev n -> raw n.Primal

    /// The tensor as seen one level out from `tag`: its primal if tracked at `tag`, else itself.
    let primalAt tag t =
        match t with
        | TRev n when n.Tag = tag -> n.Primal
        | _ -> t

    /// Applies a primitive: constants go straight to the kernel (no taping cost); otherwise the
    /// innermost level among the inputs records `op`, and the primal is computed one level out,
    /// recursively, so outer levels record their own nodes (this is what makes nesting work and
    /// keeps levels apart: an input tracked at an outer level is a constant at this one).
    let rec lift (inputs: Tensor[]) (kernel: RawTensor[] -> RawTensor) (op: Tensor[] -> Op) : Tensor =
        let mutable tag = 0L

        for i in inputs do
            tag <- max tag (tagOf i)

        if tag = 0L then
            TConst(kernel (Array.map raw inputs))
        else
            let primals = Array.map (primalAt tag) inputs
            TRev(Node(lift primals kernel op, tag, op inputs))

/// Forward definitions of the primitives: shape checks with clear errors, then the kernel.
module internal Prim =
    /// The kernels: each call runs on the backend that owns its inputs (the selected backend
    /// for host tensors; see <c>Placement</c>).
    let backend () = DispatchBackend.Instance :> IBackend

    /// The fused optimizer steps of the backend that owns the parameters, or the reference
    /// kernels' when it has none.
    let fusedOptimizer () =
        DispatchBackend.Instance :> IFusedOptimizer

    let shape t = (Tape.raw t).Shape
    let dtype (t: Tensor) = (Tape.raw t).DType

    let sameDType op (a: Tensor) (b: Tensor) =
        if dtype a <> dtype b then
            Shape.fail
                op
                (sprintf
                    "dtypes differ: %A %s and %A %s"
                    (dtype a)
                    (Shape.show (shape a))
                    (dtype b)
                    (Shape.show (shape b)))

    let private unary kind (mk: Tensor -> Op) (x: Tensor) =
        Tape.lift [| x |] (fun r -> backend().Unary(kind, r.[0])) (fun i -> mk i.[0])

    let neg x = unary UnaryOp.Neg Neg x
    let exp x = unary UnaryOp.Exp Exp x
    let log x = unary UnaryOp.Log Log x
    let sqrt x = unary UnaryOp.Sqrt Sqrt x
    let tanh x = unary UnaryOp.Tanh Tanh x
    let sigmoid x = unary UnaryOp.Sigmoid Sigmoid x
    let abs x = unary UnaryOp.Abs Abs x

    let private binary name kind (mk: Tensor * Tensor -> Op) (a: Tensor) (b: Tensor) =
        sameDType name a b
        let outShape = Shape.broadcast name (shape a) (shape b)
        Tape.lift [| a; b |] (fun r -> backend().Binary(kind, r.[0], r.[1], outShape)) (fun i -> mk (i.[0], i.[1]))

    let add a b = binary "add" BinaryOp.Add Add a b
    let sub a b = binary "sub" BinaryOp.Sub Sub a b
    let mul a b = binary "mul" BinaryOp.Mul Mul a b
    let div a b = binary "div" BinaryOp.Div Div a b
    let pow a b = binary "pow" BinaryOp.Pow Pow a b

    /// A constant of the same dtype as `like`, holding `v` (shape []).
    let scalarLike (like: Tensor) (v: float) =
        TConst(RawTensor.full (dtype like) [||] v)

    /// A non-differentiable comparison: a constant mask of 0 and 1.
    let compare name kind (a: Tensor) (b: Tensor) =
        sameDType name a b
        let outShape = Shape.broadcast name (shape a) (shape b)
        TConst(backend().Binary(kind, Tape.raw a, Tape.raw b, outShape))

    /// Materialises a broadcast of `x` to `target`.
    let expand (target: int[]) (x: Tensor) =
        let s = shape x

        if not (Shape.broadcastsTo s target) then
            Shape.fail "expand" (sprintf "cannot expand %s to %s" (Shape.show s) (Shape.show target))

        if s = target then
            x
        else
            let strides = Strided.broadcastStrides s target
            Tape.lift [| x |] (fun r -> backend().View(r.[0], 0, strides, target)) (fun i -> Expand i.[0])

    /// y = mask ≠ 0 ? a : b, everything broadcast to one shape; the mask is not differentiated.
    let where (mask: Tensor) (a: Tensor) (b: Tensor) =
        sameDType "where" a b

        let target =
            Shape.broadcast "where" (Shape.broadcast "where" (shape mask) (shape a)) (shape b)

        let m0 = Tape.raw mask

        let m1 =
            if m0.DType = dtype a then
                m0
            else
                backend().Cast(m0, dtype a)

        let m = Tape.raw (expand target (TConst m1))
        let a', b' = expand target a, expand target b
        Tape.lift [| a'; b' |] (fun r -> backend().Where(m, r.[0], r.[1])) (fun i -> Where(m, i.[0], i.[1]))

    /// Sum over resolved axes, keeping them as size 1.
    let sumKeep (axes: int[]) (x: Tensor) =
        Tape.lift [| x |] (fun r -> backend().Reduce(ReduceSum, r.[0], axes)) (fun i -> Sum(i.[0], axes))

    /// Maximum over resolved axes, keeping them as size 1; the gradient is shared among ties.
    let maxKeep (axes: int[]) (x: Tensor) =
        Tape.lift [| x |] (fun r -> backend().Reduce(ReduceMax, r.[0], axes)) (fun i -> Max(i.[0], axes))

    /// The same elements under another shape (no copy).
    let reshape (target: int[]) (x: Tensor) =
        let s = shape x
        let resolved = Shape.reshape "reshape" s target

        if resolved = s then
            x
        else
            Tape.lift [| x |] (fun r -> { r.[0] with Shape = resolved }) (fun i -> Reshape i.[0])

    /// Axes reordered: output axis i is input axis perm[i].
    let permute (perm: int[]) (x: Tensor) =
        let s = shape x

        if perm.Length <> s.Length || (Array.sort perm) <> Array.init s.Length id then
            Shape.fail "permute" (sprintf "%A is not a permutation of the %d axes of %s" perm s.Length (Shape.show s))

        if perm = Array.init s.Length id then
            x
        else
            let st = Shape.strides s
            let strides = perm |> Array.map (fun p -> st.[p])
            let target = perm |> Array.map (fun p -> s.[p])
            Tape.lift [| x |] (fun r -> backend().View(r.[0], 0, strides, target)) (fun i -> Permute(i.[0], perm))

    /// The box starts[i] ≤ index < starts[i] + sizes[i] (step 1).
    let slice (starts: int[]) (sizes: int[]) (x: Tensor) =
        let s = shape x

        if
            starts.Length <> s.Length
            || sizes.Length <> s.Length
            || Array.exists2 (fun st sz -> st < 0 || sz < 0) starts sizes
            || Array.exists id (Array.init s.Length (fun i -> starts.[i] + sizes.[i] > s.[i]))
        then
            Shape.fail "slice" (sprintf "start %A size %A is outside %s" starts sizes (Shape.show s))

        if sizes = s then
            x
        else
            let st = Shape.strides s
            let offset = Array.fold2 (fun acc a b -> acc + a * b) 0 starts st
            Tape.lift [| x |] (fun r -> backend().View(r.[0], offset, st, sizes)) (fun i -> Slice(i.[0], starts))

    /// Zero padding: before[i] zeros ahead of axis i and after[i] behind it.
    let pad (before: int[]) (after: int[]) (x: Tensor) =
        let s = shape x

        if
            before.Length <> s.Length
            || after.Length <> s.Length
            || Array.exists (fun p -> p < 0) (Array.append before after)
        then
            Shape.fail
                "pad"
                (sprintf
                    "padding before %A after %A does not fit %s (one non-negative amount per axis)"
                    before
                    after
                    (Shape.show s))

        if Array.forall ((=) 0) before && Array.forall ((=) 0) after then
            x
        else
            let target = Array.init s.Length (fun i -> before.[i] + s.[i] + after.[i])
            let st = Shape.strides target
            let offset = Array.fold2 (fun acc a b -> acc + a * b) 0 before st
            Tape.lift [| x |] (fun r -> backend().Embed(r.[0], target, offset, st)) (fun i -> Pad(i.[0], before))

    /// Throws unless the window (offset, strides, shape) lies inside `numel` elements and
    /// its positions are distinct: with the axes of size > 1 sorted by stride, each stride
    /// must exceed the furthest offset the smaller ones reach (sufficient, and true of every
    /// box, permutation and interleaving of a contiguous tensor).
    let private checkWindow op (numel: int) (offset: int) (strides: int[]) (shape: int[]) =
        if strides.Length <> shape.Length then
            Shape.fail op (sprintf "%d strides for %d axes" strides.Length shape.Length)

        if Shape.numel shape > 0 then
            let axes =
                Array.init shape.Length id
                |> Array.filter (fun a -> shape.[a] > 1)
                |> Array.sortBy (fun a -> strides.[a])

            let mutable reach = 0L

            for a in axes do
                if int64 strides.[a] <= reach then
                    Shape.fail op (sprintf "strides %A over %s repeat positions" strides (Shape.show shape))

                reach <- reach + int64 strides.[a] * int64 (shape.[a] - 1)

            if offset < 0 || int64 offset + reach >= int64 numel then
                Shape.fail
                    op
                    (sprintf
                        "window at %d, strides %A, shape %s leaves the %d elements"
                        offset
                        strides
                        (Shape.show shape)
                        numel)

    /// The strided window (offset, strides) of contiguous x with shape `shape`, as a new
    /// tensor; its positions must be distinct (no broadcast: see expand).
    let stridedView (offset: int) (strides: int[]) (shape': int[]) (x: Tensor) =
        checkWindow "strided_view" (Shape.numel (shape x)) offset strides shape'

        Tape.lift [| x |] (fun r -> backend().View(r.[0], offset, strides, shape')) (fun i ->
            StridedView(i.[0], offset, strides))

    /// Zeros of `target` with x written into the strided window (offset, strides, x's shape):
    /// stridedView's adjoint.
    let stridedEmbed (target: int[]) (offset: int) (strides: int[]) (x: Tensor) =
        checkWindow "strided_embed" (Shape.numel target) offset strides (shape x)

        Tape.lift [| x |] (fun r -> backend().Embed(r.[0], target, offset, strides)) (fun i ->
            StridedEmbed(i.[0], offset, strides))

    /// Concatenation along a resolved axis; all other dimensions must agree.
    let concat (axis: int) (xs: Tensor[]) =
        if xs.Length = 0 then
            Shape.fail "concat" "needs at least one tensor"

        let s0 = shape xs.[0]

        for x in xs do
            sameDType "concat" xs.[0] x
            let s = shape x

            if
                s.Length <> s0.Length
                || Array.exists id (Array.init s.Length (fun i -> i <> axis && s.[i] <> s0.[i]))
            then
                Shape.fail
                    "concat"
                    (sprintf
                        "shapes %s along axis %d"
                        (xs |> Array.map (shape >> Shape.show) |> String.concat ", ")
                        axis)

        if xs.Length = 1 then
            xs.[0]
        else
            Tape.lift xs (fun r -> backend().Concat(r, axis)) (fun i -> Concat(i, axis))

    /// y.flat[i] = x.flat[index[i]], y of `target` shape.
    let take (index: int[]) (target: int[]) (x: Tensor) =
        let n = Shape.numel (shape x)

        if index.Length <> Shape.numel target then
            Shape.fail "take" (sprintf "%d indices for output %s" index.Length (Shape.show target))

        for i in index do
            if i < 0 || i >= n then
                Shape.fail "take" (sprintf "index %d is outside a tensor of %d elements %s" i n (Shape.show (shape x)))

        Tape.lift [| x |] (fun r -> backend().Take(r.[0], index, target)) (fun i -> Take(i.[0], index))

    /// y = zeros(target); y.flat[index[i]] += x.flat[i].
    let scatterAdd (index: int[]) (target: int[]) (x: Tensor) =
        let n = Shape.numel target

        if index.Length <> Shape.numel (shape x) then
            Shape.fail "scatter_add" (sprintf "%d indices for %s" index.Length (Shape.show (shape x)))

        for i in index do
            if i < 0 || i >= n then
                Shape.fail "scatter_add" (sprintf "index %d is outside %s" i (Shape.show target))

        Tape.lift [| x |] (fun r -> backend().ScatterAdd(r.[0], index, target)) (fun i -> ScatterAdd(i.[0], index))

    /// op(a) · op(b) over the last two axes with broadcast batch axes; both operands rank ≥ 2.
    let matmulT (a: Tensor) (transA: bool) (b: Tensor) (transB: bool) =
        sameDType "matmul" a b
        let sa, sb = shape a, shape b

        if sa.Length < 2 || sb.Length < 2 then
            Shape.fail "matmul" (sprintf "operands must have rank >= 2, got %s and %s" (Shape.show sa) (Shape.show sb))

        let m, ka =
            (if transA then
                 sa.[sa.Length - 1], sa.[sa.Length - 2]
             else
                 sa.[sa.Length - 2], sa.[sa.Length - 1])

        let kb, n =
            (if transB then
                 sb.[sb.Length - 1], sb.[sb.Length - 2]
             else
                 sb.[sb.Length - 2], sb.[sb.Length - 1])

        if ka <> kb then
            Shape.fail
                "matmul"
                (sprintf
                    "inner dimensions differ: %s%s × %s%s"
                    (Shape.show sa)
                    (if transA then "ᵀ" else "")
                    (Shape.show sb)
                    (if transB then "ᵀ" else ""))

        let ba, bb = sa.[.. sa.Length - 3], sb.[.. sb.Length - 3]
        let r = max ba.Length bb.Length

        let pad (d: int[]) =
            Array.append (Array.create (r - d.Length) 1) d

        if Array.exists2 (fun x y -> x <> y && x <> 1 && y <> 1) (pad ba) (pad bb) then
            Shape.fail
                "matmul"
                (sprintf "batch axes of %s and %s cannot be broadcast together" (Shape.show sa) (Shape.show sb))

        let batch = Shape.broadcast "matmul" ba bb
        let outShape = Array.append batch [| m; n |]

        Tape.lift [| a; b |] (fun r -> backend().MatMul(r.[0], transA, r.[1], transB, outShape)) (fun i ->
            MatMul(i.[0], transA, i.[1], transB))

    /// conv2d (cross-correlation) of NCHW `x` with `[out, in/groups, kh, kw]` weights.
    let conv2d (spec: ConvSpec) (x: Tensor) (w: Tensor) =
        sameDType "conv2d" x w
        ConvSpec.outputShape "conv2d" spec (shape x) (shape w) |> ignore
        Tape.lift [| x; w |] (fun r -> backend().Conv2d(r.[0], r.[1], spec)) (fun i -> Conv(i.[0], i.[1], spec))

    /// The adjoint of conv2d in x: maps `g` (conv2d's output shape) to `xShape`.
    let conv2dInputGrad (spec: ConvSpec) (xShape: int[]) (g: Tensor) (w: Tensor) =
        sameDType "conv_transpose2d" g w
        let expected = ConvSpec.outputShape "conv_transpose2d" spec xShape (shape w)

        if expected <> shape g then
            Shape.fail
                "conv_transpose2d"
                (sprintf
                    "input %s does not match the %s that weight %s maps %s to"
                    (Shape.show (shape g))
                    (Shape.show expected)
                    (Shape.show (shape w))
                    (Shape.show xShape))

        Tape.lift [| g; w |] (fun r -> backend().Conv2dInputGrad(r.[0], r.[1], spec, xShape)) (fun i ->
            ConvInputGrad(i.[0], i.[1], spec))

    /// The adjoint of conv2d in w: maps `g` (conv2d's output shape) to `wShape`.
    let conv2dWeightGrad (spec: ConvSpec) (wShape: int[]) (x: Tensor) (g: Tensor) =
        sameDType "conv2d_weight" x g
        let expected = ConvSpec.outputShape "conv2d_weight" spec (shape x) wShape

        if expected <> shape g then
            Shape.fail
                "conv2d_weight"
                (sprintf "gradient %s does not match output %s" (Shape.show (shape g)) (Shape.show expected))

        Tape.lift [| x; g |] (fun r -> backend().Conv2dWeightGrad(r.[0], r.[1], spec, wShape)) (fun i ->
            ConvWeightGrad(i.[0], i.[1], spec))

    /// Batched pairwise L1 distances: x [G, P, C], y [G, R, C] → d [G, P, R],
    /// d[g, p, r] = Σ_c |x[g, p, c] − y[g, r, c]|.
    let pairwiseL1 (x: Tensor) (y: Tensor) =
        sameDType "pairwise_l1" x y
        let sx, sy = shape x, shape y

        if sx.Length <> 3 || sy.Length <> 3 || sx.[0] <> sy.[0] || sx.[2] <> sy.[2] then
            Shape.fail
                "pairwise_l1"
                (sprintf
                    "needs x [G, P, C] and y [G, R, C] with the same G and C, got %s and %s"
                    (Shape.show sx)
                    (Shape.show sy))

        Tape.lift [| x; y |] (fun r -> backend().PairwiseL1(r.[0], r.[1])) (fun i -> PairwiseL1(i.[0], i.[1]))

    /// y = x where x > 0, αx elsewhere (ReLU: α = 0). Tensor.leakyRelu goes through
    /// <c>Rewrites.leakyRelu</c>, which fuses it with a BatchNorm before it gets here.
    let leakyRelu (alpha: float) (x: Tensor) =
        Tape.lift [| x |] (fun r -> backend().LeakyRelu(r.[0], alpha)) (fun i -> LeakyRelu(i.[0], alpha))

    /// The same values in another dtype.
    let cast (dt: DType) (x: Tensor) =
        if dtype x = dt then
            x
        else
            Tape.lift [| x |] (fun r -> backend().Cast(r.[0], dt)) (fun i -> Cast i.[0])

    /// x's values at `target`: a device backend's device, or the host (None); x itself when it
    /// is there already. Differentiable: the adjoint moves back to x's place.
    let moveTo (target: IDeviceBackend option) (x: Tensor) =
        let here = Placement.ownerOf (Tape.raw x)

        let same =
            match here, target with
            | None, None -> true
            | Some a, Some b -> obj.ReferenceEquals(a, b)
            | _ -> false

        if same then
            x
        else
            Tape.lift
                [| x |]
                (fun r ->
                    let h = RawTensor.toHost r.[0]

                    match target with
                    | Some d -> d.Upload h
                    | None -> h)
                (fun i -> Move i.[0])

    /// Train-mode batch normalisation over every axis but 1 in one fused kernel: returns y and
    /// the batch mean and biased variance ([C], constants).
    let batchNorm (eps: float) (x: Tensor) (gamma: Tensor) (beta: Tensor) =
        sameDType "batchNorm" x gamma
        sameDType "batchNorm" x beta
        let mutable stats = None

        let y =
            Tape.lift
                [| x; gamma; beta |]
                (fun r ->
                    let y, m, v = backend().BatchNormForward(r.[0], r.[1], r.[2], eps)
                    stats <- Some(m, v)
                    y)
                (fun i ->
                    // the kernel ran (at the innermost level) before any level records its node
                    let m, v = stats.Value
                    BatchNorm(i.[0], i.[1], i.[2], eps, m, v))

        let m, v = stats.Value
        y, m, v

    /// The elementwise sum of `x` over the ranks of `reducer`'s job: a collective, so every rank
    /// must call it at the same point with the same shape (a fresh buffer; x is not touched).
    let allReduce (reducer: IReducer) (x: Tensor) =
        Tape.lift
            [| x |]
            (fun r ->
                // the reducer works on host memory: a device tensor travels there and back
                let v = RawTensor.toHost r.[0]

                let back (h: RawTensor) =
                    match r.[0].Storage with
                    | Storage.Device d -> (d.Owner :?> IDeviceBackend).Upload h
                    | _ -> h

                match v.Storage with
                | Storage.F32 a ->
                    let b = Array.sub a 0 v.Numel
                    reducer.SumInPlace(System.Span<float32> b)
                    back (RawTensor.ofFloat32 v.Shape b)
                | Storage.F64 a ->
                    let b = Array.sub a 0 v.Numel
                    reducer.SumInPlace(System.Span<float> b)
                    back (RawTensor.ofFloat64 v.Shape b)
                | Storage.Device d -> RawTensor.hostOnly "all_reduce" d)
            (fun i -> AllReduce(i.[0], reducer))

    /// Sums `x` down to `target`, undoing a broadcast (sum over added and stretched axes).
    let sumTo (target: int[]) (x: Tensor) =
        let s = shape x

        if s = target then
            x
        else
            let lead = s.Length - target.Length

            let axes =
                Array.init s.Length id
                |> Array.filter (fun i -> i < lead || (target.[i - lead] = 1 && s.[i] <> 1))

            reshape target (sumKeep axes x)

/// Operators and properties.
type Tensor with
    /// The dimensions, outermost first.
    member t.Shape = Prim.shape t
    /// The element type.
    member t.DType = Prim.dtype t
    /// The number of elements.
    member t.Numel = Shape.numel (Prim.shape t)
    /// True when the tensor is being differentiated at some level.
    member t.IsTracked = Tape.tagOf t <> 0L

    /// Elementwise sum with broadcasting.
    static member (+)(a: Tensor, b: Tensor) = Prim.add a b
    /// Adds a scalar.
    static member (+)(a: Tensor, b: float) = Prim.add a (Prim.scalarLike a b)
    /// Adds a scalar.
    static member (+)(a: float, b: Tensor) = Prim.add (Prim.scalarLike b a) b
    /// Elementwise difference with broadcasting.
    static member (-)(a: Tensor, b: Tensor) = Prim.sub a b
    /// Subtracts a scalar.
    static member (-)(a: Tensor, b: float) = Prim.sub a (Prim.scalarLike a b)
    /// Subtracts from a scalar.
    static member (-)(a: float, b: Tensor) = Prim.sub (Prim.scalarLike b a) b
    /// Elementwise product with broadcasting.
    static member (*)(a: Tensor, b: Tensor) = Prim.mul a b
    /// Scales by a scalar.
    static member (*)(a: Tensor, b: float) = Prim.mul a (Prim.scalarLike a b)
    /// Scales by a scalar.
    static member (*)(a: float, b: Tensor) = Prim.mul (Prim.scalarLike b a) b
    /// Elementwise quotient with broadcasting.
    static member (/)(a: Tensor, b: Tensor) = Prim.div a b
    /// Divides by a scalar.
    static member (/)(a: Tensor, b: float) = Prim.div a (Prim.scalarLike a b)
    /// Divides a scalar.
    static member (/)(a: float, b: Tensor) = Prim.div (Prim.scalarLike b a) b
    /// Elementwise power with broadcasting.
    static member Pow(a: Tensor, b: Tensor) = Prim.pow a b
    /// Elementwise power by a scalar exponent.
    static member Pow(a: Tensor, b: float) = Prim.pow a (Prim.scalarLike a b)
    /// Negation.
    static member (~-)(a: Tensor) = Prim.neg a
