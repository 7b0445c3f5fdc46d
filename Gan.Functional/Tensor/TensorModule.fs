namespace Gan.Functional

open System
open Gan.Functional.Kernels

/// Creating, reading and transforming tensors. Every function is pure: it returns a new tensor
/// and differentiates through <c>Autodiff</c> unless said otherwise (comparisons, `sign`,
/// `argmax` and `detach` give constants). Images are NCHW.
[<CompilationRepresentation(CompilationRepresentationFlags.ModuleSuffix)>]
[<RequireQualifiedAccess>]
module Tensor =

    // ---------------------------------------------------------------- creation and reading

    /// Wraps a raw buffer as a constant tensor.
    let internal ofRaw (r: RawTensor) = TConst r

    /// The value as a raw buffer (through every differentiation level).
    let internal toRaw (t: Tensor) = Tape.raw t

    // Creation follows the selected backend (like torch.set_default_device): while a device
    // backend is selected, the functions below that make a tensor from nothing or from host
    // data put it on that device; `...Like` functions put it where their model tensor is.

    /// A constant on the default place (the selected device backend's device, else the host).
    let private made (r: RawTensor) = TConst(Placement.onDefault r)

    /// A float32 tensor of `shape` over row-major `data` (copied), on the default device.
    let ofArray (shape: int[]) (data: float32[]) =
        made (RawTensor.ofFloat32 (Array.copy shape) (Array.copy data))

    /// A float64 tensor of `shape` over row-major `data` (copied), on the default device.
    let ofArray64 (shape: int[]) (data: float[]) =
        made (RawTensor.ofFloat64 (Array.copy shape) (Array.copy data))

    let rec private readNested (value: obj) (shape: ResizeArray<int>) (depth: int) (out: ResizeArray<float>) =
        let note (d: int) (n: int) =
            if shape.Count = d then
                shape.Add n
            elif shape.Count < d || shape.[d] <> n then
                Shape.fail "create" (sprintf "ragged nested data: axis %d has more than one length" d)

        match value with
        | :? float as v -> out.Add v
        | :? float32 as v -> out.Add(float v)
        | :? int as v -> out.Add(float v)
        | :? Array as arr when arr.Rank > 1 ->
            // a .NET multi-dimensional array: all its axes at once, row-major
            for r in 0 .. arr.Rank - 1 do
                note (depth + r) (arr.GetLength r)

            for v in arr do
                readNested v shape (depth + arr.Rank) out
        | :? Collections.IEnumerable as items when not (value :? string) ->
            let xs = items |> Seq.cast<obj> |> Seq.toArray
            note depth xs.Length

            for x in xs do
                readNested x shape (depth + 1) out
        | _ ->
            Shape.fail
                "create"
                (sprintf "cannot read a %s as tensor data (use float, float32 or int)" (value.GetType().Name))

    /// A tensor of the given dtype from nested data of any rank: arrays, lists or sequences of
    /// float, float32 or int, or .NET multi-dimensional arrays. The shape is read off the nesting.
    let createAs (dtype: DType) (value: obj) =
        let shape = ResizeArray<int>()
        let out = ResizeArray<float>()
        readNested value shape 0 out
        let s = shape.ToArray()

        if Shape.numel s <> out.Count then
            Shape.fail "create" "ragged nested data"

        made (RawTensor.cast dtype (RawTensor.ofFloat64 s (out.ToArray())))

    /// A float32 tensor from nested data of any rank (see <see cref="createAs"/>).
    let create (value: obj) = createAs Float32 value

    /// A rank-0 tensor of the given dtype.
    let scalarAs (dtype: DType) (v: float) = made (RawTensor.full dtype [||] v)

    /// A rank-0 float32 tensor.
    let scalar (v: float) = scalarAs Float32 v

    /// A tensor of `shape` filled with `v`.
    let fullAs (dtype: DType) (shape: int[]) (v: float) =
        made (RawTensor.full dtype (Array.copy shape) v)

    /// A float32 tensor of `shape` filled with `v`.
    let full (shape: int[]) (v: float) = fullAs Float32 shape v

    /// Float32 zeros.
    let zeros (shape: int[]) = full shape 0.0

    /// Float32 ones.
    let ones (shape: int[]) = full shape 1.0

    /// A constant with the shape, dtype and place (host or device) of `t`, filled with `v`.
    let fullLike (t: Tensor) (v: float) =
        TConst(Placement.onPlaceOf (Tape.raw t) (RawTensor.full (Prim.dtype t) (Array.copy (Prim.shape t)) v))

    /// Zeros shaped like `t`.
    let zerosLike (t: Tensor) = fullLike t 0.0

    /// Ones shaped like `t`.
    let onesLike (t: Tensor) = fullLike t 1.0

    /// start, start + step, … below `stop` (float32, rank 1).
    let arangeFrom (start: float) (stop: float) (step: float) =
        if step = 0.0 then
            Shape.fail "arange" "step must be non-zero"

        let n = max 0 (int (Math.Ceiling((stop - start) / step)))
        made (RawTensor.ofFloat32 [| n |] (Array.init n (fun i -> float32 (start + float i * step))))

    /// 0, 1, …, n − 1 (float32, rank 1).
    let arange (n: int) = arangeFrom 0.0 (float n) 1.0

    /// The n×n identity (float32).
    let eye (n: int) =
        made (RawTensor.ofFloat32 [| n; n |] (Array.init (n * n) (fun i -> if i / n = i % n then 1.0f else 0.0f)))

    /// U[0, 1) samples of `shape` from `key` (float32). Random draws are the same numbers on
    /// the host and on a device (drawn there when the selected device backend can).
    let rand (key: Key) (shape: int[]) =
        match Placement.selectedDevice () with
        | Some(:? IDeviceRandom as r) -> TConst(r.Uniform(key, Array.copy shape))
        | _ -> made (Random.uniform key Float32 shape)

    /// N(0, 1) samples of `shape` from `key` (float32).
    let randn (key: Key) (shape: int[]) =
        match Placement.selectedDevice () with
        | Some(:? IDeviceRandom as r) -> TConst(r.Normal(key, Array.copy shape))
        | _ -> made (Random.normal key Float32 shape)

    /// 0/1 samples with P(1) = p, of `shape`, from `key` (float32).
    let bernoulli (key: Key) (p: float) (shape: int[]) =
        match Placement.selectedDevice () with
        | Some(:? IDeviceRandom as r) -> TConst(r.Bernoulli(key, p, Array.copy shape))
        | _ -> made (Random.bernoulli key p Float32 shape)

    /// N(0, 1) truncated to [−2, 2] (float32).
    let truncatedNormal (key: Key) (shape: int[]) =
        made (Random.truncatedNormal key Float32 shape)

    /// The dimensions, outermost first.
    let shape (t: Tensor) = Array.copy (Prim.shape t)

    /// The element type.
    let dtype (t: Tensor) = Prim.dtype t

    /// The number of dimensions.
    let rank (t: Tensor) = (Prim.shape t).Length

    /// The number of elements.
    let numel (t: Tensor) = Shape.numel (Prim.shape t)

    /// The values as float32, row-major.
    let toArray (t: Tensor) = RawTensor.toFloat32Array (Tape.raw t)

    /// The values as float64, row-major.
    let toArray64 (t: Tensor) = RawTensor.toFloat64Array (Tape.raw t)

    /// The single value of a one-element tensor.
    let item (t: Tensor) =
        let r = Tape.raw t

        if r.Numel <> 1 then
            Shape.fail "item" (sprintf "needs exactly one element, got %s" (Shape.show r.Shape))

        (RawTensor.toFloat64Array r).[0]

    /// A copy of `t` in the memory of `device`'s device (`t` itself when it is there already),
    /// differentiable (the adjoint moves back). Operations run where their inputs are: every
    /// input of an operation must be on one device (a rank-0 host tensor is moved by itself).
    let toDevice (device: IDeviceBackend) (t: Tensor) = Prim.moveTo (Some device) t

    /// A copy of `t` in host memory (`t` itself when it is there already), differentiable.
    /// Reading values (toArray, item) copies to the host by itself.
    let toHost (t: Tensor) = Prim.moveTo None t

    /// The name of the device `t` lives on, or "the host".
    let placeName (t: Tensor) = RawTensor.placeName (Tape.raw t)

    /// True when `t` lives in a device's memory.
    let isOnDevice (t: Tensor) = (Placement.ownerOf (Tape.raw t)).IsSome

    /// The value with every differentiation level removed: gradients stop here (PyTorch's detach).
    let detach (t: Tensor) = TConst(Tape.raw t)

    /// The same values in another dtype (differentiable).
    let cast (dt: DType) (t: Tensor) = Prim.cast dt t

    // ---------------------------------------------------------------- elementwise

    /// a + b with broadcasting.
    let add (a: Tensor) (b: Tensor) = Prim.add a b
    /// a − b with broadcasting.
    let sub (a: Tensor) (b: Tensor) = Prim.sub a b
    /// a · b with broadcasting.
    let mul (a: Tensor) (b: Tensor) = Prim.mul a b
    /// a / b with broadcasting.
    let div (a: Tensor) (b: Tensor) = Prim.div a b
    /// aᵇ with broadcasting (the gradient in b needs a > 0).
    let pow (a: Tensor) (b: Tensor) = Prim.pow a b
    /// xᵖ for a scalar exponent.
    let powScalar (p: float) (x: Tensor) = Prim.pow x (Prim.scalarLike x p)
    /// −x.
    let neg (x: Tensor) = Prim.neg x
    /// eˣ.
    let exp (x: Tensor) = Prim.exp x
    /// ln x.
    let log (x: Tensor) = Prim.log x
    /// √x.
    let sqrt (x: Tensor) = Prim.sqrt x
    /// |x| (gradient sign(x), 0 at 0).
    let abs (x: Tensor) = Prim.abs x
    /// tanh x.
    let tanh (x: Tensor) = Prim.tanh x
    /// 1 / (1 + e⁻ˣ), computed without overflow.
    let sigmoid (x: Tensor) = Prim.sigmoid x
    /// x².
    let square (x: Tensor) = Prim.mul x x

    /// −1, 0 or 1 (a constant).
    let sign (x: Tensor) =
        TConst(Prim.backend().Unary(UnaryOp.Sign, Tape.raw x))

    /// Mask (0/1 constant) of a = b.
    let eq (a: Tensor) (b: Tensor) = Prim.compare "eq" Equal a b
    /// Mask of a < b.
    let lt (a: Tensor) (b: Tensor) = Prim.compare "lt" Less a b
    /// Mask of a ≤ b.
    let le (a: Tensor) (b: Tensor) = Prim.compare "le" LessEqual a b
    /// Mask of a > b.
    let gt (a: Tensor) (b: Tensor) = Prim.compare "gt" Greater a b
    /// Mask of a ≥ b.
    let ge (a: Tensor) (b: Tensor) = Prim.compare "ge" GreaterEqual a b

    /// cond ≠ 0 ? a : b elementwise, all three broadcast together; cond is not differentiated.
    let where (cond: Tensor) (a: Tensor) (b: Tensor) = Prim.where cond a b

    /// max(a, b); where equal, the gradient goes to a.
    let maximum (a: Tensor) (b: Tensor) = Prim.where (ge a b) a b
    /// min(a, b); where equal, the gradient goes to a.
    let minimum (a: Tensor) (b: Tensor) = Prim.where (le a b) a b

    /// x clamped to [lo, hi] (gradient 1 inside, 0 outside).
    let clamp (lo: float) (hi: float) (x: Tensor) =
        let l, h = Prim.scalarLike x lo, Prim.scalarLike x hi
        Prim.where (lt x l) l (Prim.where (gt x h) h x)

    /// max(x, 0) (gradient 0 at 0, as PyTorch).
    let relu (x: Tensor) = Rewrites.leakyRelu 0.0 x

    /// x for x > 0, αx otherwise (gradient α at 0).
    let leakyRelu (alpha: float) (x: Tensor) =
        // a primitive, not x·slope: one pass each way, and the tape keeps no slope tensor
        // (dcgan64's generator: one activation-sized tensor less per layer)
        Rewrites.leakyRelu alpha x

    /// ln(1 + eˣ) = max(x, 0) + ln(1 + e^−|x|), stable for large |x|.
    let softplus (x: Tensor) =
        Prim.add (relu x) (Prim.log (Prim.add (Prim.scalarLike x 1.0) (Prim.exp (Prim.neg (Prim.abs x)))))

    /// ln σ(x) = −softplus(−x).
    let logSigmoid (x: Tensor) = Prim.neg (softplus (Prim.neg x))

    // ---------------------------------------------------------------- reductions

    let private resolve op (x: Tensor) (axes: int[]) =
        Shape.axes op (Prim.shape x).Length axes

    let private finish (keepDim: bool) (axes: int[]) (x: Tensor) (y: Tensor) =
        if keepDim then
            y
        else
            Prim.reshape (Shape.reduceDrop (Prim.shape x) axes) y

    /// Σ over all elements (rank 0).
    let sum (x: Tensor) =
        Prim.reshape [||] (Prim.sumKeep (resolve "sum" x [||]) x)

    /// Σ over `axes` (negative counts from the end); `keepDim` leaves them as size 1.
    let sumAxes (axes: int[]) (keepDim: bool) (x: Tensor) =
        let ax = resolve "sum" x axes
        finish keepDim ax x (Prim.sumKeep ax x)

    /// Mean of all elements (rank 0).
    let mean (x: Tensor) =
        Prim.div (sum x) (Prim.scalarLike x (float (max 1 (numel x))))

    /// Mean over `axes`.
    let meanAxes (axes: int[]) (keepDim: bool) (x: Tensor) =
        let ax = resolve "mean" x axes
        let count = ax |> Array.fold (fun acc a -> acc * (Prim.shape x).[a]) 1
        Prim.div (sumAxes ax keepDim x) (Prim.scalarLike x (float count))

    /// Variance over `axes`: Σ(x − mean)² / (n − 1) when `unbiased`, else / n.
    let varAxes (axes: int[]) (keepDim: bool) (unbiased: bool) (x: Tensor) =
        let ax = resolve "var" x axes
        let count = ax |> Array.fold (fun acc a -> acc * (Prim.shape x).[a]) 1
        let centered = Prim.sub x (meanAxes ax true x)
        let ss = sumAxes ax keepDim (Prim.mul centered centered)
        Prim.div ss (Prim.scalarLike x (float (if unbiased then max 1 (count - 1) else count)))

    /// Unbiased variance of all elements (PyTorch's default).
    let var (x: Tensor) = varAxes [||] false true x

    /// Largest element (rank 0); ties share the gradient.
    let max (x: Tensor) =
        Prim.reshape [||] (Prim.maxKeep (resolve "max" x [||]) x)

    /// Maximum over `axes`.
    let maxAxes (axes: int[]) (keepDim: bool) (x: Tensor) =
        let ax = resolve "max" x axes
        finish keepDim ax x (Prim.maxKeep ax x)

    /// Minimum over `axes` = −max(−x).
    let minAxes (axes: int[]) (keepDim: bool) (x: Tensor) =
        Prim.neg (maxAxes axes keepDim (Prim.neg x))

    /// Smallest element (rank 0).
    let min (x: Tensor) = Prim.neg (max (Prim.neg x))

    /// Index of the first maximum along `axis` (the axis removed), row-major; not differentiable.
    let argmax (axis: int) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "argmax" s.Length axis
        Prim.backend().ArgMax(Tape.raw x, a)

    /// ln Σ eˣ over `axes`, computed as m + ln Σ e^(x−m) with m the (constant) maximum.
    let logsumexp (axes: int[]) (keepDim: bool) (x: Tensor) =
        let ax = resolve "logsumexp" x axes
        let m = TConst(Tape.raw (Prim.maxKeep ax (TConst(Tape.raw x))))
        let y = Prim.add m (Prim.log (Prim.sumKeep ax (Prim.exp (Prim.sub x m))))
        finish keepDim ax x y

    // ---------------------------------------------------------------- structure

    /// The same elements in a new shape; one dimension may be −1 (inferred).
    let reshape (shape: int[]) (x: Tensor) = Prim.reshape shape x

    /// Flattens axes startDim.. into one: [N, C, H, W] → [N, C·H·W] for startDim 1.
    let flatten (startDim: int) (x: Tensor) =
        let s = Prim.shape x

        let d =
            if s.Length = 0 then
                0
            else
                Shape.axis "flatten" s.Length startDim

        Prim.reshape (Array.append s.[.. d - 1] [| Shape.numel s.[d..] |]) x

    /// Inserts a size-1 axis at `axis` (−1 appends).
    let unsqueeze (axis: int) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "unsqueeze" (s.Length + 1) axis
        Prim.reshape (Array.concat [ s.[.. a - 1]; [| 1 |]; s.[a..] ]) x

    /// Removes a size-1 axis.
    let squeeze (axis: int) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "squeeze" s.Length axis

        if s.[a] <> 1 then
            Shape.fail "squeeze" (sprintf "axis %d of %s has size %d, not 1" axis (Shape.show s) s.[a])

        Prim.reshape (Array.append s.[.. a - 1] s.[a + 1 ..]) x

    /// Reorders axes: output axis i is input axis perm[i].
    let permute (perm: int[]) (x: Tensor) =
        let r = (Prim.shape x).Length
        Prim.permute (perm |> Array.map (Shape.axis "permute" r)) x

    /// Swaps two axes.
    let transpose (a: int) (b: int) (x: Tensor) =
        let r = (Prim.shape x).Length
        let a, b = Shape.axis "transpose" r a, Shape.axis "transpose" r b

        Prim.permute
            (Array.init r (fun i ->
                if i = a then b
                elif i = b then a
                else i))
            x

    /// The transpose of the last two axes.
    let t (x: Tensor) = transpose -2 -1 x

    /// Broadcasts to `shape` (materialised; gradient sums back).
    let expand (shape: int[]) (x: Tensor) = Prim.expand shape x

    /// `length` positions of `axis` from `start` (PyTorch's narrow).
    let narrow (axis: int) (start: int) (length: int) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "narrow" s.Length axis
        let starts = Array.zeroCreate s.Length
        starts.[a] <- start
        let sizes = Array.copy s
        sizes.[a] <- length
        Prim.slice starts sizes x

    /// The box from `starts` (inclusive) to `stops` (exclusive), one pair per axis.
    let slice (starts: int[]) (stops: int[]) (x: Tensor) =
        if starts.Length <> stops.Length then
            Shape.fail "slice" "starts and stops differ in length"

        Prim.slice starts (Array.map2 (-) stops starts) x

    /// Position `index` of `axis`, the axis removed.
    let select (axis: int) (index: int) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "select" s.Length axis
        let i = if index < 0 then index + s.[a] else index
        squeeze a (narrow a i 1 x)

    /// Zero padding with before[i] and after[i] elements on axis i.
    let pad (before: int[]) (after: int[]) (x: Tensor) = Prim.pad before after x

    /// Zero-pads the last two (spatial) axes asymmetrically, as PyTorch's ZeroPad2d((left, right, top, bottom)).
    let pad2d (left: int) (right: int) (top: int) (bottom: int) (x: Tensor) =
        let r = (Prim.shape x).Length

        if r < 2 then
            Shape.fail "pad2d" (sprintf "needs rank >= 2, got %s" (Shape.show (Prim.shape x)))

        let before = Array.zeroCreate r
        let after = Array.zeroCreate r
        before.[r - 2] <- top
        after.[r - 2] <- bottom
        before.[r - 1] <- left
        after.[r - 1] <- right
        Prim.pad before after x

    /// Joins tensors along an existing axis.
    let concat (axis: int) (xs: Tensor seq) =
        let xs = Seq.toArray xs

        if xs.Length = 0 then
            Shape.fail "concat" "needs at least one tensor"

        Prim.concat (Shape.axis "concat" (Prim.shape xs.[0]).Length axis) xs

    /// Joins equally shaped tensors along a new axis.
    let stack (axis: int) (xs: Tensor seq) =
        let xs = Seq.toArray xs

        if xs.Length = 0 then
            Shape.fail "stack" "needs at least one tensor"

        if xs |> Array.exists (fun x -> Prim.shape x <> Prim.shape xs.[0]) then
            Shape.fail
                "stack"
                (sprintf "needs equal shapes, got %s" (xs |> Array.map (Prim.shape >> Shape.show) |> String.concat ", "))

        let a = Shape.axis "stack" ((Prim.shape xs.[0]).Length + 1) axis
        Prim.concat a (xs |> Array.map (unsqueeze a))

    /// Tiles `x` counts[i] times along axis i (PyTorch's repeat).
    let repeat (counts: int[]) (x: Tensor) =
        let s = Prim.shape x

        if counts.Length < s.Length then
            Shape.fail "repeat" (sprintf "%d counts for %s" counts.Length (Shape.show s))

        let s = Array.append (Array.create (counts.Length - s.Length) 1) s
        let inter = Array.init (2 * s.Length) (fun i -> if i % 2 = 0 then 1 else s.[i / 2])

        let big =
            Array.init (2 * s.Length) (fun i -> if i % 2 = 0 then counts.[i / 2] else s.[i / 2])

        x
        |> Prim.reshape inter
        |> Prim.expand big
        |> Prim.reshape (Array.map2 (*) counts s)

    /// The elements at `indices` along `axis` (PyTorch's index_select).
    let indexSelect (axis: int) (indices: int[]) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "index_select" s.Length axis
        let outer = Shape.numel s.[.. a - 1]
        let inner = Shape.numel s.[a + 1 ..]

        for i in indices do
            if i < 0 || i >= s.[a] then
                Shape.fail "index_select" (sprintf "index %d is outside axis %d of %s" i a (Shape.show s))

        let index = Array.zeroCreate (outer * indices.Length * inner)
        let mutable p = 0

        for o in 0 .. outer - 1 do
            for i in indices do
                let b = (o * s.[a] + i) * inner

                for j in 0 .. inner - 1 do
                    index.[p] <- b + j
                    p <- p + 1

        let target = Array.copy s
        target.[a] <- indices.Length
        Prim.take index target x

    /// PyTorch's gather: out[…, i, …] = x[…, index[…, i, …], …] along `axis`, where `index`
    /// (row-major, of shape `indexShape`, same rank as x) gives positions on that axis.
    let gather (axis: int) (indexShape: int[]) (index: int[]) (x: Tensor) =
        let s = Prim.shape x
        let a = Shape.axis "gather" s.Length axis

        if
            indexShape.Length <> s.Length
            || index.Length <> Shape.numel indexShape
            || Array.exists id (Array.init s.Length (fun d -> d <> a && indexShape.[d] > s.[d]))
        then
            Shape.fail
                "gather"
                (sprintf "index shape %s does not fit input %s on axis %d" (Shape.show indexShape) (Shape.show s) a)

        let xs = Shape.strides s
        let is = Shape.strides indexShape

        let flat =
            Array.init index.Length (fun p ->
                let mutable rem = p
                let mutable off = 0

                for d in 0 .. s.Length - 1 do
                    let c = rem / is.[d]
                    rem <- rem % is.[d]
                    let c' = if d = a then index.[p] else c

                    if d = a && (c' < 0 || c' >= s.[a]) then
                        Shape.fail "gather" (sprintf "index %d is outside axis %d of %s" c' a (Shape.show s))

                    off <- off + c' * xs.[d]

                off)

        Prim.take flat (Array.copy indexShape) x

    // ---------------------------------------------------------------- linear algebra

    /// Matrix product with PyTorch's rules: 1-D operands are promoted (and the added axis
    /// removed), batch axes broadcast: [..., m, k] × [..., k, n] → [..., m, n].
    let matmul (a: Tensor) (b: Tensor) =
        let ra, rb = (Prim.shape a).Length, (Prim.shape b).Length

        if ra = 0 || rb = 0 then
            Shape.fail "matmul" "operands must not be scalars"

        let a' = if ra = 1 then unsqueeze 0 a else a
        let b' = if rb = 1 then unsqueeze 1 b else b
        let y = Prim.matmulT a' false b' false
        let y = if ra = 1 then squeeze -2 y else y
        if rb = 1 then squeeze -1 y else y

    /// Batched pairwise L1 distances, PyTorch's <c>torch.cdist(x, y, p=1)</c>: x [G, P, C] and
    /// y [G, R, C] → [G, P, R] with d[g, p, r] = Σ_c |x[g, p, c] − y[g, r, c]|. One primitive:
    /// the G·P·R·C differences are neither stored nor kept for the backward pass, whose
    /// adjoints are dx[g, p, c] = Σ_r ḡ[g, p, r]·sign(x[g, p, c] − y[g, r, c]) and the same for y
    /// with the sign flipped (sign 0 = 0, as the derivative of |·| at 0 in the composed form).
    let cdistL1 (x: Tensor) (y: Tensor) = Prim.pairwiseL1 x y

    /// The elementwise sum of `x` over the ranks of `reducer`'s data-parallel job (MPI's
    /// allreduce), differentiable: its adjoint is the sum of the ranks' adjoints. A collective:
    /// every rank must call it at the same point with the same shape.
    let allReduce (reducer: IReducer) (x: Tensor) = Prim.allReduce reducer x

    /// The rows of every rank, in rank order: this rank's `x` [n, …] are rows offset … offset + n − 1
    /// of the result [total, …] (the ranks' rows must tile 0 … total − 1). Zero padding and one
    /// allreduce, so the adjoint of a rank's rows sums what every rank's use of them contributed.
    let allGather (reducer: IReducer) (offset: int) (total: int) (x: Tensor) =
        let s = Prim.shape x

        if s.Length = 0 || offset < 0 || offset + s.[0] > total then
            Shape.fail
                "all_gather"
                (sprintf "rows %d.. of %s do not fit a total of %d rows" offset (Shape.show s) total)

        let before = Array.init s.Length (fun a -> if a = 0 then offset else 0)

        let after =
            Array.init s.Length (fun a -> if a = 0 then total - offset - s.[0] else 0)

        Prim.allReduce reducer (Prim.pad before after x)

    /// Σ aᵢbᵢ of two vectors (rank 0).
    let dot (a: Tensor) (b: Tensor) =
        if (Prim.shape a).Length <> 1 || Prim.shape a <> Prim.shape b then
            Shape.fail
                "dot"
                (sprintf
                    "needs two vectors of one length, got %s and %s"
                    (Shape.show (Prim.shape a))
                    (Shape.show (Prim.shape b)))

        sum (Prim.mul a b)

    /// y = x·Wᵀ + b for x [..., in], W [out, in], b [out] (PyTorch's Linear layout).
    let linear (x: Tensor) (w: Tensor) (bias: Tensor option) =
        let y =
            if (Prim.shape x).Length = 1 then
                squeeze 0 (Prim.matmulT (unsqueeze 0 x) false w true)
            else
                Prim.matmulT x false w true

        match bias with
        | Some b -> Prim.add y b
        | None -> y

    // ---------------------------------------------------------------- convolution and pooling

    /// 2-D cross-correlation of x [N, C, H, W] with w [O, C/groups, kH, kW] (PyTorch's conv2d,
    /// no bias) → [N, O, H', W'], H' = ⌊(H + pads − d(kH − 1) − 1)/s⌋ + 1. A 3×3, stride-1,
    /// padding-1 convolution of a tracked `upsampleNearest 2 2` output runs in the sub-pixel form
    /// on the upsampling's input (same values up to float rounding; `GAN_FUSE_UPSAMPLE_CONV=0`
    /// turns it off).
    let conv2d (spec: ConvSpec) (x: Tensor) (w: Tensor) = Rewrites.conv2d spec x w

    /// Transposed convolution of x [N, Cin, H, W] with w [Cin, Cout/groups, kH, kW] (PyTorch's
    /// ConvTranspose2d layout, no bias) → [N, Cout, H', W'] with
    /// H' = (H − 1)s − padTop − padBottom + d(kH − 1) + outputPadH + 1.
    let convTranspose2d (spec: ConvSpec) (outputPadH: int) (outputPadW: int) (x: Tensor) (w: Tensor) =
        let xs, ws = Prim.shape x, Prim.shape w

        if xs.Length <> 4 || ws.Length <> 4 then
            Shape.fail
                "conv_transpose2d"
                (sprintf "expected 4-D input and weight, got %s and %s" (Shape.show xs) (Shape.show ws))

        if ws.[0] <> xs.[1] then
            Shape.fail
                "conv_transpose2d"
                (sprintf
                    "weight %s expects %d input channels, input %s has %d"
                    (Shape.show ws)
                    ws.[0]
                    (Shape.show xs)
                    xs.[1])

        if
            outputPadH < 0
            || outputPadW < 0
            || outputPadH >= Math.Max(spec.StrideH, spec.DilationH)
            || outputPadW >= Math.Max(spec.StrideW, spec.DilationW)
        then
            Shape.fail
                "conv_transpose2d"
                (sprintf "output padding %dx%d must be smaller than stride or dilation" outputPadH outputPadW)

        let h =
            (xs.[2] - 1) * spec.StrideH - spec.PadTop - spec.PadBottom
            + spec.DilationH * (ws.[2] - 1)
            + outputPadH
            + 1

        let wd =
            (xs.[3] - 1) * spec.StrideW - spec.PadLeft - spec.PadRight
            + spec.DilationW * (ws.[3] - 1)
            + outputPadW
            + 1

        if h < 1 || wd < 1 then
            Shape.fail
                "conv_transpose2d"
                (sprintf "input %s with weight %s gives an empty output" (Shape.show xs) (Shape.show ws))

        // Output padding is bottom/right padding given back: with pads reduced by it the conv
        // geometry stays consistent for any output padding below max(stride, dilation); rows
        // beyond the kernel's reach are zeros.
        let spec' = {
            spec with
                PadBottom = Math.Max(0, spec.PadBottom - outputPadH)
                PadRight = Math.Max(0, spec.PadRight - outputPadW)
        }

        let extraH = Math.Max(0, outputPadH - spec.PadBottom)
        let extraW = Math.Max(0, outputPadW - spec.PadRight)

        let y =
            Prim.conv2dInputGrad spec' [| xs.[0]; ws.[1] * spec.Groups; h - extraH; wd - extraW |] x w

        if extraH = 0 && extraW = 0 then
            y
        else
            pad2d 0 extraW 0 extraH y

    /// Max pooling with a kH×kW window (padding never wins); gradient to the first maximum.
    let maxPool2d (kh: int) (kw: int) (spec: ConvSpec) (x: Tensor) =
        let s = Prim.shape x

        if s.Length <> 4 then
            Shape.fail "max_pool2d" (sprintf "expected [N,C,H,W], got %s" (Shape.show s))

        ConvSpec.outputShape "max_pool2d" { spec with Groups = 1 } [| s.[0]; 1; s.[2]; s.[3] |] [| 1; 1; kh; kw |]
        |> ignore

        let index, outShape = Prim.backend().MaxPool2dIndices(Tape.raw x, kh, kw, spec)
        Prim.take index outShape x

    /// Average pooling with a kH×kW window, zeros counted in padded windows (PyTorch's default).
    let avgPool2d (kh: int) (kw: int) (spec: ConvSpec) (x: Tensor) =
        let s = Prim.shape x

        if s.Length <> 4 then
            Shape.fail "avg_pool2d" (sprintf "expected [N,C,H,W], got %s" (Shape.show s))

        let c = s.[1]
        let w = fullAs (Prim.dtype x) [| c; 1; kh; kw |] (1.0 / float (kh * kw))
        Prim.conv2d { spec with Groups = c } x w

    /// Nearest-neighbour upsampling of the last two axes by integer factors.
    let upsampleNearest (scaleH: int) (scaleW: int) (x: Tensor) =
        let s = Prim.shape x

        if s.Length < 2 || scaleH < 1 || scaleW < 1 then
            Shape.fail
                "upsample_nearest"
                (sprintf "needs rank >= 2 and factors >= 1, got %s ×%d×%d" (Shape.show s) scaleH scaleW)

        let r = s.Length
        let lead = s.[.. r - 3]
        let h, w = s.[r - 2], s.[r - 1]

        x
        |> Prim.reshape (Array.append lead [| h; 1; w; 1 |])
        |> Prim.expand (Array.append lead [| h; scaleH; w; scaleW |])
        |> Prim.reshape (Array.append lead [| h * scaleH; w * scaleW |])

    /// Bilinear resize of the last two axes to outH×outW (PyTorch's align_corners=False).
    let upsampleBilinear (outH: int) (outW: int) (x: Tensor) =
        let s = Prim.shape x

        if s.Length < 2 || outH < 1 || outW < 1 then
            Shape.fail
                "upsample_bilinear"
                (sprintf "needs rank >= 2 and a positive size, got %s → %dx%d" (Shape.show s) outH outW)

        let r = s.Length

        let interp axis (n: int) (m: int) (t: Tensor) =
            let scale = float n / float m
            let lo = Array.zeroCreate m
            let hi = Array.zeroCreate m
            let wt = Array.zeroCreate m

            for i in 0 .. m - 1 do
                let src = Math.Max(0.0, (float i + 0.5) * scale - 0.5)
                let i0 = Math.Min(int (Math.Floor src), n - 1)
                lo.[i] <- i0
                hi.[i] <- Math.Min(i0 + 1, n - 1)
                wt.[i] <- src - float i0

            let wshape = Array.init r (fun d -> if d = axis then m else 1)

            let w1 =
                TConst(Placement.onPlaceOf (Tape.raw t) (RawTensor.cast (Prim.dtype t) (RawTensor.ofFloat64 wshape wt)))

            let w0 = Prim.sub (Prim.scalarLike t 1.0) w1
            Prim.add (Prim.mul (indexSelect axis lo t) w0) (Prim.mul (indexSelect axis hi t) w1)

        x |> interp (r - 2) s.[r - 2] outH |> interp (r - 1) s.[r - 1] outW
