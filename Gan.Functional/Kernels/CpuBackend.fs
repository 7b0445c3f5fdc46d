namespace Gan.Functional.Kernels

open System
open System.Numerics.Tensors
open System.Threading.Tasks
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open Gan.Functional

/// Hand-vectorised loops (Vector<float32>) for what TensorPrimitives lacks or does slowly.
module internal Vec =
    open System.Numerics

    // Eigen's rational approximation of tanh on [−9, 9] (generic_fast_tanh_float): a degree-13
    // odd numerator over a degree-6 even denominator, within a few ulp in float32. Measured
    // ~10x faster here than TensorPrimitives.Tanh.
    let private a1, a3, a5, a7 =
        4.89352455891786e-03f, 6.37261928875436e-04f, 1.48572235717979e-05f, 5.12229709037114e-08f

    let private a9, a11, a13 =
        -8.60467152213735e-11f, 2.00018790482477e-13f, -2.76076847742355e-16f

    let private b0, b2, b4, b6 =
        4.89352518554385e-03f, 2.26843463243900e-03f, 1.18534705686654e-04f, 1.19825839466702e-06f

    let private tanhScalar (v: float32) =
        if abs v < 0.0004f then
            v
        else
            let x = max -9.0f (min 9.0f v)
            let x2 = x * x

            let p =
                x
                * (((((((a13 * x2 + a11) * x2 + a9) * x2 + a7) * x2 + a5) * x2 + a3) * x2) + a1)

            let q = ((b6 * x2 + b4) * x2 + b2) * x2 + b0
            p / q

    /// y[lo..hi) = tanh x[lo..hi).
    /// y[lo..hi) = sign(x) ∈ {−1, 0, 1} (0 for ±0 and NaN, as the reference): the 0/1 masks of
    /// x > 0 and x < 0, subtracted.
    let sign (x: float32[]) (y: float32[]) (lo: int) (hi: int) =
        let w = Vector<float32>.Count
        let one = Vector<float32>.One
        let zero = Vector<float32>.Zero
        let mutable i = lo

        while i + w <= hi do
            let v = Vector<float32>(x, i)

            (Vector.BitwiseAnd(Vector.GreaterThan<float32>(v, zero), one)
             - Vector.BitwiseAnd(Vector.LessThan<float32>(v, zero), one))
                .CopyTo(y, i)

            i <- i + w

        while i < hi do
            let v = x.[i]

            y.[i] <-
                if v > 0.0f then 1.0f
                elif v < 0.0f then -1.0f
                else 0.0f

            i <- i + 1

    let tanh (x: float32[]) (y: float32[]) (lo: int) (hi: int) =
        let w = Vector<float32>.Count
        let nine = Vector<float32>(9.0f)
        let tiny = Vector<float32>(0.0004f)
        let mutable i = lo

        while i + w <= hi do
            let v = Vector<float32>(x, i)
            let xc = Vector.Min(Vector.Max(v, -nine), nine)
            let x2 = xc * xc
            let mutable p = x2 * Vector<float32>(a13) + Vector<float32>(a11)
            p <- x2 * p + Vector<float32>(a9)
            p <- x2 * p + Vector<float32>(a7)
            p <- x2 * p + Vector<float32>(a5)
            p <- x2 * p + Vector<float32>(a3)
            p <- x2 * p + Vector<float32>(a1)
            p <- xc * p

            let q =
                ((x2 * Vector<float32>(b6) + Vector<float32>(b4)) * x2 + Vector<float32>(b2))
                * x2
                + Vector<float32>(b0)

            Vector.ConditionalSelect(Vector.LessThan(Vector.Abs v, tiny), v, p / q).CopyTo(y, i)
            i <- i + w

        while i < hi do
            y.[i] <- tanhScalar x.[i]
            i <- i + 1

    /// y = x where x > 0, αx elsewhere.
    let leakyRelu (alpha: float32) (x: float32[]) (y: float32[]) (lo: int) (hi: int) =
        let w = Vector<float32>.Count
        let k = Vector<float32>(alpha)
        let mutable i = lo

        while i + w <= hi do
            let v = Vector<float32>(x, i)
            Vector.ConditionalSelect(Vector.GreaterThan(v, Vector<float32>.Zero), v, v * k).CopyTo(y, i)
            i <- i + w

        while i < hi do
            let v = x.[i]
            y.[i] <- if v > 0.0f then v else alpha * v
            i <- i + 1

    /// dx = g where x > 0, αg elsewhere.
    let leakyReluBackward (alpha: float32) (g: float32[]) (x: float32[]) (dx: float32[]) (lo: int) (hi: int) =
        let w = Vector<float32>.Count
        let k = Vector<float32>(alpha)
        let mutable i = lo

        while i + w <= hi do
            let gv = Vector<float32>(g, i)

            Vector
                .ConditionalSelect(Vector.GreaterThan(Vector<float32>(x, i), Vector<float32>.Zero), gv, gv * k)
                .CopyTo(dx, i)

            i <- i + w

        while i < hi do
            dx.[i] <- if x.[i] > 0.0f then g.[i] else alpha * g.[i]
            i <- i + 1

    /// y = m ≠ 0 ? a : b over [lo, hi).
    let where (m: float32[]) (a: float32[]) (b: float32[]) (y: float32[]) (lo: int) (hi: int) =
        let w = Vector<float32>.Count
        let mutable i = lo

        while i + w <= hi do
            let mv = Vector<float32>(m, i)

            Vector
                .ConditionalSelect(
                    Vector.Equals(mv, Vector<float32>.Zero),
                    Vector<float32>(b, i),
                    Vector<float32>(a, i)
                )
                .CopyTo(y, i)

            i <- i + w

        while i < hi do
            y.[i] <- if m.[i] <> 0.0f then a.[i] else b.[i]
            i <- i + 1

    /// 0/1 masks of a comparison `test`; `b` is one value (bScalar) or as long as `a`.
    let inline private compareWith
        ([<InlineIfLambda>] test: Vector<float32> -> Vector<float32> -> Vector<int>)
        ([<InlineIfLambda>] scalarTest: float32 -> float32 -> bool)
        (a: float32[])
        (b: float32[])
        (bScalar: bool)
        (y: float32[])
        (lo: int)
        (hi: int)
        =
        let w = Vector<float32>.Count
        let one = Vector<float32>.One
        let zero = Vector<float32>.Zero
        let mutable i = lo

        if bScalar then
            let bs = Vector<float32>(b.[0])

            while i + w <= hi do
                Vector.ConditionalSelect(test (Vector<float32>(a, i)) bs, one, zero).CopyTo(y, i)
                i <- i + w
        else
            while i + w <= hi do
                Vector.ConditionalSelect(test (Vector<float32>(a, i)) (Vector<float32>(b, i)), one, zero).CopyTo(y, i)
                i <- i + w

        while i < hi do
            y.[i] <-
                if scalarTest a.[i] (if bScalar then b.[0] else b.[i]) then
                    1.0f
                else
                    0.0f

            i <- i + 1

    /// 0/1 masks of a comparison; `b` is one value (bScalar) or as long as `a`.
    let compare (op: BinaryOp) (a: float32[]) (b: float32[]) (bScalar: bool) (y: float32[]) (lo: int) (hi: int) =
        match op with
        | Equal -> compareWith (fun x z -> Vector.Equals(x, z)) (fun x z -> x = z) a b bScalar y lo hi
        | Less -> compareWith (fun x z -> Vector.LessThan(x, z)) (fun x z -> x < z) a b bScalar y lo hi
        | LessEqual -> compareWith (fun x z -> Vector.LessThanOrEqual(x, z)) (fun x z -> x <= z) a b bScalar y lo hi
        | Greater -> compareWith (fun x z -> Vector.GreaterThan(x, z)) (fun x z -> x > z) a b bScalar y lo hi
        | _ -> compareWith (fun x z -> Vector.GreaterThanOrEqual(x, z)) (fun x z -> x >= z) a b bScalar y lo hi

    /// One fused Adam step over [lo, hi) (see AdamCoefficients).
    let adam
        (c: AdamCoefficients)
        (p: float32[])
        (g: float32[])
        (m: float32[])
        (v: float32[])
        (p': float32[])
        (m': float32[])
        (v': float32[])
        (lo: int)
        (hi: int)
        =
        let b1, b2 = float32 c.Beta1, float32 c.Beta2
        let step = float32 (c.Lr / c.BiasCorrection1)
        let inv = float32 (1.0 / sqrt c.BiasCorrection2)
        let eps = float32 c.Eps
        let wd = if c.Decoupled then 0.0f else float32 c.WeightDecay

        let shrink =
            if c.Decoupled then
                float32 (1.0 - c.Lr * c.WeightDecay)
            else
                1.0f

        let w = Vector<float32>.Count
        let vb1, vb2 = Vector<float32>(b1), Vector<float32>(b2)
        let vc1, vc2 = Vector<float32>(1.0f - b1), Vector<float32>(1.0f - b2)

        let vstep, vinv, veps =
            Vector<float32>(step), Vector<float32>(inv), Vector<float32>(eps)

        let vwd, vshrink = Vector<float32>(wd), Vector<float32>(shrink)
        let mutable i = lo

        while i + w <= hi do
            let pv = Vector<float32>(p, i)
            let gv = Vector<float32>(g, i) + vwd * pv
            let mv = vb1 * Vector<float32>(m, i) + vc1 * gv
            let vv = vb2 * Vector<float32>(v, i) + vc2 * gv * gv
            mv.CopyTo(m', i)
            vv.CopyTo(v', i)
            (pv * vshrink - vstep * mv / (Vector.SquareRoot vv * vinv + veps)).CopyTo(p', i)
            i <- i + w

        while i < hi do
            let gi = g.[i] + wd * p.[i]
            let mi = b1 * m.[i] + (1.0f - b1) * gi
            let vi = b2 * v.[i] + (1.0f - b2) * gi * gi
            m'.[i] <- mi
            v'.[i] <- vi
            p'.[i] <- p.[i] * shrink - step * mi / (sqrt vi * inv + eps)
            i <- i + 1

/// Vectorised float32 loops (TensorPrimitives) over runs found by merging dimensions.
module internal Fast =

    /// Merges adjacent output dimensions along which every operand is laid out alike
    /// (contiguous, or broadcast), so loops run over the longest possible runs.
    let merge (shape: int[]) (strides: int[][]) =
        let dims = ResizeArray<int>()
        let st = strides |> Array.map (fun _ -> ResizeArray<int>())

        for d in 0 .. shape.Length - 1 do
            if shape.[d] <> 1 then
                let k = dims.Count

                let fits =
                    k > 0
                    && strides
                       |> Array.forall2 (fun (s: ResizeArray<int>) (src: int[]) -> s.[k - 1] = src.[d] * shape.[d]) st

                if fits then
                    dims.[k - 1] <- dims.[k - 1] * shape.[d]

                    for i in 0 .. st.Length - 1 do
                        st.[i].[k - 1] <- strides.[i].[d]
                else
                    dims.Add shape.[d]

                    for i in 0 .. st.Length - 1 do
                        st.[i].Add strides.[i].[d]

        if dims.Count = 0 then
            dims.Add 1

            for s in st do
                s.Add 0

        dims.ToArray(), st |> Array.map (fun s -> s.ToArray())

    // Elementwise passes below this many elements run on one thread. On a quiet machine 64K
    // measured best (dcgan28 437-465 ms a step against 488-490 at 512K; mlp unchanged); on a
    // loaded one waking a second thread can cost more than it saves (mlp's 131K-element
    // multiplies once ran 5x slower split in two), so GAN_PARALLEL_THRESHOLD overrides it.
    let private parallelThreshold =
        match Int32.TryParse(Environment.GetEnvironmentVariable "GAN_PARALLEL_THRESHOLD") with
        | true, n when n > 0 -> n
        | _ -> 1 <<< 16

    /// Pieces per thread: with several small pieces instead of one per thread, whichever thread
    /// runs takes the next piece, so a worker the OS has not scheduled (the machine is shared)
    /// does not hold up the caller, which otherwise finishes its half and waits.
    let private piecesPerThread = 8

    /// Runs `body lo hi` over [0, count) split into ranges, on up to `parts` threads.
    let split parts (count: int) (body: int -> int -> unit) =
        let parts = max 1 (min parts count)

        if parts = 1 then
            body 0 count
        else
            let pieces = min count (parts * piecesPerThread)
            let size = (count + pieces - 1) / pieces

            Parallel.For(
                0,
                pieces,
                ParallelOptions(MaxDegreeOfParallelism = parts),
                fun p ->
                    let lo = p * size
                    let hi = min count (lo + size)

                    if hi > lo then
                        body lo hi
            )
            |> ignore

    /// Runs `body lo hi` over [0, n) in chunks, in parallel when large.
    let chunks threads (n: int) (body: int -> int -> unit) =
        if threads > 1 && n >= parallelThreshold then
            // pieces of at least parallelThreshold/4 elements, a multiple of 16 so vector loops stay aligned
            let pieces = min (threads * piecesPerThread) (max 2 (n / (parallelThreshold / 4)))
            let size = ((n + pieces - 1) / pieces + 15) &&& ~~~15

            Parallel.For(
                0,
                (n + size - 1) / size,
                ParallelOptions(MaxDegreeOfParallelism = threads),
                fun p ->
                    let lo = p * size
                    let hi = min n (lo + size)

                    if hi > lo then
                        body lo hi
            )
            |> ignore
        else
            body 0 n

    let private unaryRun (op: UnaryOp) (x: float32[]) (y: float32[]) (lo: int) (len: int) =
        let a = ReadOnlySpan(x, lo, len)
        let d = Span(y, lo, len)

        match op with
        | Neg -> TensorPrimitives.Negate(a, d)
        | Exp -> TensorPrimitives.Exp(a, d)
        | Log -> TensorPrimitives.Log(a, d)
        | Sqrt -> TensorPrimitives.Sqrt(a, d)
        | Tanh -> TensorPrimitives.Tanh(a, d)
        | Sigmoid -> TensorPrimitives.Sigmoid(a, d)
        | Abs -> TensorPrimitives.Abs(a, d)
        | Sign -> invalidOp "sign has no vectorised kernel"

    let unary threads (op: UnaryOp) (x: float32[]) : float32[] option =
        match op with
        | Sign ->
            let y = BufferPool.rent x.Length
            chunks threads x.Length (fun lo hi -> Vec.sign x y lo hi)
            Some y
        | Tanh ->
            let y = BufferPool.rent x.Length
            chunks threads x.Length (fun lo hi -> Vec.tanh x y lo hi)
            Some y
        | _ ->
            let y = BufferPool.rent x.Length
            chunks threads x.Length (fun lo hi -> unaryRun op x y lo (hi - lo))
            Some y

    let private vectorised (op: BinaryOp) =
        match op with
        | Pow -> false
        | _ -> true

    let private isComparison (op: BinaryOp) =
        match op with
        | Equal
        | Less
        | LessEqual
        | Greater
        | GreaterEqual -> true
        | _ -> false

    let private compareScalar (op: BinaryOp) (x: float32) (z: float32) =
        match op with
        | Equal -> x = z
        | Less -> x < z
        | LessEqual -> x <= z
        | Greater -> x > z
        | _ -> x >= z

    /// y[po..] = (a[pa..] op b[pb..]) ? 1 : 0 over `len` elements (strides 0 or 1): the
    /// all-ones lanes of a vector comparison, ANDed with 1.0f, are exactly the 0/1 mask.
    let private compareRun (op: BinaryOp) (a: float32[]) pa ia (b: float32[]) pb ib (y: float32[]) po len =
        let w = Numerics.Vector<float32>.Count
        let one = Numerics.Vector<float32>.One
        let a0 = Numerics.Vector<float32>(a.[pa])
        let b0 = Numerics.Vector<float32>(b.[pb])
        let mutable i = 0

        while i + w <= len do
            let x = if ia = 0 then a0 else Numerics.Vector<float32>(a, pa + i)
            let z = if ib = 0 then b0 else Numerics.Vector<float32>(b, pb + i)

            let m =
                match op with
                | Equal -> Numerics.Vector.Equals<float32>(x, z)
                | Less -> Numerics.Vector.LessThan<float32>(x, z)
                | LessEqual -> Numerics.Vector.LessThanOrEqual<float32>(x, z)
                | Greater -> Numerics.Vector.GreaterThan<float32>(x, z)
                | _ -> Numerics.Vector.GreaterThanOrEqual<float32>(x, z)

            Numerics.Vector.BitwiseAnd(m, one).CopyTo(y, po + i)
            i <- i + w

        while i < len do
            y.[po + i] <-
                if compareScalar op a.[pa + i * ia] b.[pb + i * ib] then
                    1.0f
                else
                    0.0f

            i <- i + 1

    /// y[po..] = a[pa..] op b[pb..] over `len` elements; a stride of 0 reads one value.
    let private binaryRun (op: BinaryOp) (a: float32[]) pa ia (b: float32[]) pb ib (y: float32[]) po len =
        let d = Span(y, po, len)

        match ia, ib with
        | _ when isComparison op -> compareRun op a pa ia b pb ib y po len
        | 0, 0 ->
            let av, bv = a.[pa], b.[pb]

            let v =
                match op with
                | Add -> av + bv
                | Sub -> av - bv
                | Mul -> av * bv
                | Div -> av / bv
                | Maximum -> if av >= bv then av else bv
                | _ -> if av <= bv then av else bv

            d.Fill v
        | _, 0 ->
            let x = ReadOnlySpan(a, pa, len)
            let s = b.[pb]

            match op with
            | Add -> TensorPrimitives.Add(x, s, d)
            | Sub -> TensorPrimitives.Subtract(x, s, d)
            | Mul -> TensorPrimitives.Multiply(x, s, d)
            | Div -> TensorPrimitives.Divide(x, s, d)
            | Maximum -> TensorPrimitives.Max(x, s, d)
            | _ -> TensorPrimitives.Min(x, s, d)
        | 0, _ ->
            let s = a.[pa]
            let x = ReadOnlySpan(b, pb, len)

            match op with
            | Add -> TensorPrimitives.Add(x, s, d)
            | Sub -> TensorPrimitives.Subtract(s, x, d)
            | Mul -> TensorPrimitives.Multiply(x, s, d)
            | Div -> TensorPrimitives.Divide(s, x, d)
            | Maximum -> TensorPrimitives.Max(x, s, d)
            | _ -> TensorPrimitives.Min(x, s, d)
        | _ ->
            let x = ReadOnlySpan(a, pa, len)
            let z = ReadOnlySpan(b, pb, len)

            match op with
            | Add -> TensorPrimitives.Add(x, z, d)
            | Sub -> TensorPrimitives.Subtract(x, z, d)
            | Mul -> TensorPrimitives.Multiply(x, z, d)
            | Div -> TensorPrimitives.Divide(x, z, d)
            | Maximum -> TensorPrimitives.Max(x, z, d)
            | _ -> TensorPrimitives.Min(x, z, d)

    /// Broadcast binary op: after merging dimensions, the innermost run has operand strides
    /// of 1 (span kernel) or 0 (scalar kernel); outer positions are decoded per row.
    let binary
        threads
        (op: BinaryOp)
        (a: float32[])
        (aShape: int[])
        (b: float32[])
        (bShape: int[])
        (outShape: int[])
        : float32[] option =
        if not (vectorised op) then
            None
        else
            let n = Shape.numel outShape
            let y = BufferPool.rent n

            if n > 0 then
                let sa = Strided.broadcastStrides aShape outShape
                let sb = Strided.broadcastStrides bShape outShape
                let dims, st = merge outShape [| sa; sb |]
                let r = dims.Length
                let inner = dims.[r - 1]
                let ia, ib = st.[0].[r - 1], st.[1].[r - 1]

                if n = inner then
                    chunks threads inner (fun lo hi -> binaryRun op a (lo * ia) ia b (lo * ib) ib y lo (hi - lo))
                else
                    let rows = n / inner

                    split (if n >= parallelThreshold then threads else 1) rows (fun r0 r1 ->
                        for row in r0 .. r1 - 1 do
                            let mutable rem = row
                            let mutable pa = 0
                            let mutable pb = 0

                            for d in r - 2 .. -1 .. 0 do
                                let c = rem % dims.[d]
                                rem <- rem / dims.[d]
                                pa <- pa + c * st.[0].[d]
                                pb <- pb + c * st.[1].[d]

                            binaryRun op a pa ia b pb ib y (row * inner) inner)

            Some y

    /// y[o + 2m] = y[o + 2m + 1] = x[p + m] for m < count, eight elements (sixteen outputs) at a time.
    let private duplicatePairs (x: float32[]) (p: int) (y: float32[]) (o: int) (count: int) =
        let lo = Vector256.Create(0, 0, 1, 1, 2, 2, 3, 3)
        let hi = Vector256.Create(4, 4, 5, 5, 6, 6, 7, 7)
        let mutable m = 0

        while m + 8 <= count do
            let v = Vector256.Create(x, p + m)
            Avx2.PermuteVar8x32(v, lo).CopyTo(y, o + 2 * m)
            Avx2.PermuteVar8x32(v, hi).CopyTo(y, o + 2 * m + 8)
            m <- m + 8

        while m < count do
            let v = x.[p + m]
            y.[o + 2 * m] <- v
            y.[o + 2 * m + 1] <- v
            m <- m + 1

    /// y[o + j] = x[p + 2j] + x[p + 2j + 1] + x[p + 2w + 2j] + x[p + 2w + 2j + 1] for j < w: two
    /// rows of pairs folded into one row, eight outputs at a time.
    let private sumPairBlocks (x: float32[]) (p: int) (y: float32[]) (o: int) (w: int) =
        let mutable j = 0

        while j + 8 <= w do
            let a = Vector256.Create(x, p + 2 * j) + Vector256.Create(x, p + 2 * w + 2 * j)

            let b =
                Vector256.Create(x, p + 2 * j + 8) + Vector256.Create(x, p + 2 * w + 2 * j + 8)
            // hadd pairs within 128-bit lanes: [a01 a23 b01 b23 | a45 a67 b45 b67]; reorder lanes
            let h = Avx.HorizontalAdd(a, b)
            Avx2.Permute4x64(h.AsDouble(), 0b11011000uy).AsSingle().CopyTo(y, o + j)
            j <- j + 8

        while j < w do
            y.[o + j] <-
                x.[p + 2 * j]
                + x.[p + 2 * j + 1]
                + x.[p + 2 * w + 2 * j]
                + x.[p + 2 * w + 2 * j + 1]

            j <- j + 1

    /// Contiguous copy of a strided view: after merging, the innermost run is a copy (stride 1),
    /// a fill (stride 0, a broadcast) or a strided gather; rows split across threads.
    let view threads (x: float32[]) (offset: int) (strides: int[]) (shape: int[]) : float32[] =
        let n = Shape.numel shape
        let y = BufferPool.rent n

        if n > 0 then
            let dims, st = merge shape [| strides |]
            let r = dims.Length
            let inner = dims.[r - 1]
            let si = st.[0].[r - 1]

            // a short innermost run (nearest upsampling's ×2 broadcast) is handled together with
            // the dimension outside it, so the index arithmetic is paid once per block, not per run
            let blocked = inner < 16 && r >= 2
            let outerDims = if blocked then r - 2 else r - 1
            let mid = if blocked then dims.[r - 2] else 1
            let sm = if blocked then st.[0].[r - 2] else 0
            let block = inner * mid
            let rows = n / block
            // nearest ×2 upsampling along the last axis: every element written twice in a row
            let pairs = blocked && inner = 2 && si = 0 && sm = 1 && Avx2.IsSupported

            split (if n >= parallelThreshold then threads else 1) rows (fun r0 r1 ->
                for row in r0 .. r1 - 1 do
                    let mutable rem = row
                    let mutable px = offset

                    for d in outerDims - 1 .. -1 .. 0 do
                        let c = rem % dims.[d]
                        rem <- rem / dims.[d]
                        px <- px + c * st.[0].[d]

                    let o = row * block

                    if not blocked && si = 1 then
                        Array.Copy(x, px, y, o, inner)
                    elif not blocked && si = 0 then
                        Span(y, o, inner).Fill x.[px]
                    else if pairs then
                        duplicatePairs x px y o mid
                    else
                        for m in 0 .. mid - 1 do
                            let pm = px + m * sm
                            let om = o + m * inner

                            if si = 0 then
                                let v = x.[pm]

                                for j in 0 .. inner - 1 do
                                    y.[om + j] <- v
                            else
                                for j in 0 .. inner - 1 do
                                    y.[om + j] <- x.[pm + j * si])

        y

    /// Zeros of `target` elements with x (contiguous, of `shape`) written into the strided
    /// window (offset, strides), whose positions are distinct (pad, concatenation, the adjoint of
    /// a strided view): rows of the window in parallel, a short innermost run handled together
    /// with the dimension outside it, as in `view` (the walk is written out in both: shared
    /// through a closure per block, the two ran 3–4 ms a step slower on dcgan28).
    let embed threads (x: float32[]) (shape: int[]) (target: int) (offset: int) (strides: int[]) : float32[] =
        let y = BufferPool.rentZeroed target
        let n = x.Length

        if n > 0 then
            let dims, st = merge shape [| strides |]
            let r = dims.Length
            let inner = dims.[r - 1]
            let si = st.[0].[r - 1]
            let blocked = inner < 16 && r >= 2
            let outerDims = if blocked then r - 2 else r - 1
            let mid = if blocked then dims.[r - 2] else 1
            let sm = if blocked then st.[0].[r - 2] else 0
            let block = inner * mid
            let rows = n / block

            split (if n >= parallelThreshold then threads else 1) rows (fun r0 r1 ->
                for row in r0 .. r1 - 1 do
                    let mutable rem = row
                    let mutable py = offset

                    for d in outerDims - 1 .. -1 .. 0 do
                        let c = rem % dims.[d]
                        rem <- rem / dims.[d]
                        py <- py + c * st.[0].[d]

                    let o = row * block

                    if not blocked && si = 1 then
                        Array.Copy(x, o, y, py, inner)
                    else
                        for m in 0 .. mid - 1 do
                            let pm = py + m * sm
                            let om = o + m * inner

                            for j in 0 .. inner - 1 do
                                y.[pm + j * si] <- x.[om + j])

        y

    /// Sum or max over axes (kept as 1): merged dimensions alternate between reduced and kept;
    /// a reduced innermost run folds to one value, a kept one accumulates elementwise.
    let reduce threads (op: ReduceOp) (x: float32[]) (shape: int[]) (axes: int[]) : float32[] option =
        let r = shape.Length

        match op with
        | ReduceMin -> None
        | ReduceSum when
            r >= 3
            && axes = [| r - 3; r - 1 |]
            && shape.[r - 3] = 2
            && shape.[r - 1] = 2
            && Avx2.IsSupported
            ->
            // the gradient of nearest ×2 upsampling: each output sums a 2×2 block
            let w = shape.[r - 2]
            let rows = x.Length / (4 * w)
            let y = BufferPool.rent (rows * w)

            split (if x.Length >= parallelThreshold then threads else 1) rows (fun r0 r1 ->
                for row in r0 .. r1 - 1 do
                    sumPairBlocks x (row * 4 * w) y (row * w) w)

            Some y
        | ReduceSum
        | ReduceMax ->
            let outShape = Shape.reduceKeep shape axes
            let m = Shape.numel outShape
            // hoisted: F#'s = on a union is a call, too slow per element
            let isSum = op = ReduceSum
            let init = if isSum then 0.0f else Single.NegativeInfinity
            let y = BufferPool.rent m
            Array.Fill(y, init)

            if x.Length > 0 then
                let own = Shape.strides outShape

                let so =
                    Array.init shape.Length (fun i -> if Array.contains i axes then 0 else own.[i])

                let sx = Shape.strides shape
                let dims, st = merge shape [| sx; so |]
                let r = dims.Length
                let inner = dims.[r - 1]
                let io = st.[1].[r - 1]

                // a short innermost run (the gradient of nearest upsampling sums runs of 2) is
                // folded together with the dimension outside it, as in `view`
                let blocked = inner < 16 && r >= 2
                let outerDims = if blocked then r - 2 else r - 1
                let mid = if blocked then dims.[r - 2] else 1
                let smx = if blocked then st.[0].[r - 2] else 0
                let smo = if blocked then st.[1].[r - 2] else 0
                let rows = x.Length / (inner * mid)

                let foldBlock (y: float32[]) (px: int) (po: int) =
                    for m in 0 .. mid - 1 do
                        let pxm = px + m * smx
                        let pom = po + m * smo

                        if io = 0 then
                            let mutable acc = y.[pom]

                            for j in 0 .. inner - 1 do
                                acc <- if isSum then acc + x.[pxm + j] else max acc x.[pxm + j]

                            y.[pom] <- acc
                        else
                            for j in 0 .. inner - 1 do
                                let k = pom + j * io

                                y.[k] <- if isSum then y.[k] + x.[pxm + j] else max y.[k] x.[pxm + j]

                // each thread folds its own range of rows into a private partial result
                let fold (y: float32[]) (r0: int) (r1: int) =
                    for row in r0 .. r1 - 1 do
                        let mutable rem = row
                        let mutable px = 0
                        let mutable po = 0

                        for d in outerDims - 1 .. -1 .. 0 do
                            let c = rem % dims.[d]
                            rem <- rem / dims.[d]
                            px <- px + c * st.[0].[d]
                            po <- po + c * st.[1].[d]

                        let src = ReadOnlySpan(x, px, inner)

                        if blocked then
                            foldBlock y px po
                        elif io = 0 then
                            y.[po] <-
                                if isSum then
                                    y.[po] + TensorPrimitives.Sum(src)
                                else
                                    max y.[po] (TensorPrimitives.Max(src))
                        else
                            let dst = Span(y, po, inner)

                            if isSum then
                                TensorPrimitives.Add(ReadOnlySpan(y, po, inner), src, dst)
                            else
                                TensorPrimitives.Max(ReadOnlySpan(y, po, inner), src, dst)

                // when the outermost dimension is kept, rows of different outermost indices write
                // disjoint outputs: split that dimension across threads straight into y, with no
                // partial results to allocate and add
                let disjoint = outerDims >= 1 && st.[1].[0] <> 0

                let parts =
                    if disjoint then
                        1
                    elif threads > 1 && x.Length >= parallelThreshold && rows > 1 then
                        // several pieces per thread (see piecesPerThread), each with its own
                        // partial result, summed in a fixed order
                        min (threads * 4) rows
                    else
                        1

                if disjoint then
                    let per = rows / dims.[0]

                    split (if x.Length >= parallelThreshold then threads else 1) dims.[0] (fun i0 i1 ->
                        fold y (i0 * per) (i1 * per))
                elif parts = 1 then
                    fold y 0 rows
                else
                    let partials = Array.init parts (fun _ -> Array.create m init)
                    let size = (rows + parts - 1) / parts

                    Parallel.For(
                        0,
                        parts,
                        ParallelOptions(MaxDegreeOfParallelism = threads),
                        fun p -> fold partials.[p] (min rows (p * size)) (min rows ((p + 1) * size))
                    )
                    |> ignore

                    for part in partials do
                        if isSum then
                            TensorPrimitives.Add(ReadOnlySpan(y), ReadOnlySpan(part), Span(y))
                        else
                            TensorPrimitives.Max(ReadOnlySpan(y), ReadOnlySpan(part), Span(y))

            Some y

/// The fast CPU backend: float32 GEMM through OpenBLAS (or a managed SIMD kernel),
/// convolutions as im2col + GEMM, vectorised elementwise ops and reductions, parallel across
/// `threads` cores. Everything it does not accelerate (float64, gather/scatter, comparisons)
/// goes to the reference kernels, which it is tested against.
type CpuBackend(threads: int) =
    let reference = ReferenceBackend.Instance :> IBackend
    let threads = if threads <= 0 then Environment.ProcessorCount else threads
    do Blas.setThreads threads

    /// The thread count in use.
    member _.Threads = threads

    /// One line: which GEMM and how many threads, and why.
    member _.Description =
        sprintf "cpu backend, %d thread%s, %s" threads (if threads = 1 then "" else "s") (Blas.info ()).Description

    /// True when OpenBLAS was loaded.
    member _.UsesOpenBlas = (Blas.info ()).UsesOpenBlas

    interface IBackend with
        member _.Name = "cpu"

        member _.Unary(op, x) =
            match x.Storage with
            | Storage.F32 a ->
                match Fast.unary threads op a with
                | Some y -> {
                    Shape = x.Shape
                    Storage = Storage.F32 y
                  }
                | None -> reference.Unary(op, x)
            | Storage.F64 _ -> reference.Unary(op, x)

        member _.Binary(op, a, b, outShape) =
            match a.Storage, b.Storage with
            | Storage.F32 x, Storage.F32 y ->
                match Fast.binary threads op x a.Shape y b.Shape outShape with
                | Some r -> {
                    Shape = outShape
                    Storage = Storage.F32 r
                  }
                | None -> reference.Binary(op, a, b, outShape)
            | _ -> reference.Binary(op, a, b, outShape)

        member _.Where(m, a, b) =
            match m.Storage, a.Storage, b.Storage with
            | Storage.F32 mm, Storage.F32 x, Storage.F32 y ->
                let r = BufferPool.rent x.Length
                Fast.chunks threads x.Length (fun lo hi -> Vec.where mm x y r lo hi)

                {
                    Shape = a.Shape
                    Storage = Storage.F32 r
                }
            | _ -> reference.Where(m, a, b)

        member _.Reduce(op, x, axes) =
            match x.Storage with
            | Storage.F32 a ->
                match Fast.reduce threads op a x.Shape axes with
                | Some y -> {
                    Shape = Shape.reduceKeep x.Shape axes
                    Storage = Storage.F32 y
                  }
                | None -> reference.Reduce(op, x, axes)
            | Storage.F64 _ -> reference.Reduce(op, x, axes)

        member _.ArgMax(x, axis) = reference.ArgMax(x, axis)

        member _.View(x, offset, strides, shape) =
            match x.Storage with
            | Storage.F32 a -> {
                Shape = shape
                Storage = Storage.F32(Fast.view threads a offset strides shape)
              }
            | Storage.F64 _ -> reference.View(x, offset, strides, shape)

        member _.Embed(x, shape, offset, strides) =
            match x.Storage with
            | Storage.F32 a -> {
                Shape = shape
                Storage = Storage.F32(Fast.embed threads a x.Shape (Shape.numel shape) offset strides)
              }
            | Storage.F64 _ -> reference.Embed(x, shape, offset, strides)

        member _.Concat(xs, axis) = reference.Concat(xs, axis)
        member _.Take(x, index, shape) = reference.Take(x, index, shape)
        member _.ScatterAdd(src, index, shape) = reference.ScatterAdd(src, index, shape)

        member _.MatMul(a, transA, b, transB, outShape) =
            match a.Storage, b.Storage with
            | Storage.F32 x, Storage.F32 y ->
                let r = outShape.Length
                let m, n = outShape.[r - 2], outShape.[r - 1]

                let k =
                    if transA then
                        a.Shape.[a.Shape.Length - 2]
                    else
                        a.Shape.[a.Shape.Length - 1]

                let c = BufferPool.rent (Shape.numel outShape)
                let batchShape = outShape.[.. r - 3]
                let sa = Strided.broadcastStrides a.Shape.[.. a.Shape.Length - 3] batchShape
                let sb = Strided.broadcastStrides b.Shape.[.. b.Shape.Length - 3] batchShape

                for bi in 0 .. Shape.numel batchShape - 1 do
                    let mutable rem = bi
                    let mutable ao = 0
                    let mutable bo = 0

                    for d in batchShape.Length - 1 .. -1 .. 0 do
                        let i = rem % batchShape.[d]
                        rem <- rem / batchShape.[d]
                        ao <- ao + i * sa.[d]
                        bo <- bo + i * sb.[d]

                    Blas.sgemm transA transB m n k x (ao * m * k) y (bo * k * n) c (bi * m * n) false

                {
                    Shape = outShape
                    Storage = Storage.F32 c
                }
            | _ -> reference.MatMul(a, transA, b, transB, outShape)

        member _.Conv2d(x, w, spec) =
            match x.Storage, w.Storage with
            | Storage.F32 xa, Storage.F32 wa ->
                let outShape = ConvSpec.outputShape "conv2d" spec x.Shape w.Shape

                {
                    Shape = outShape
                    Storage =
                        Storage.F32(
                            if DenseConv.applies spec x.Shape w.Shape then
                                DenseConv.conv2d xa x.Shape wa w.Shape
                            elif SingleChannelConv.applies spec w.Shape then
                                SingleChannelConv.conv2d threads spec xa x.Shape wa w.Shape
                            else
                                match Dnnl.conv2d spec xa x.Shape wa w.Shape with
                                | Some y -> y
                                | None -> Im2col.conv2d threads spec xa x.Shape wa w.Shape
                        )
                }
            | _ -> reference.Conv2d(x, w, spec)

        member _.Conv2dInputGrad(g, w, spec, xShape) =
            match g.Storage, w.Storage with
            | Storage.F32 ga, Storage.F32 wa -> {
                Shape = xShape
                Storage =
                    Storage.F32(
                        if DenseConv.applies spec xShape w.Shape then
                            DenseConv.inputGrad ga wa w.Shape xShape
                        elif SingleChannelConv.applies spec w.Shape then
                            SingleChannelConv.conv2dInputGrad threads spec ga wa w.Shape xShape
                        else
                            match Dnnl.conv2dInputGrad spec ga g.Shape wa w.Shape xShape with
                            | Some dx -> dx
                            | None -> Im2col.conv2dInputGrad threads spec ga wa w.Shape xShape
                    )
              }
            | _ -> reference.Conv2dInputGrad(g, w, spec, xShape)

        member _.Conv2dWeightGrad(x, g, spec, wShape) =
            match x.Storage, g.Storage with
            | Storage.F32 xa, Storage.F32 ga -> {
                Shape = wShape
                Storage =
                    Storage.F32(
                        if DenseConv.applies spec x.Shape wShape then
                            DenseConv.weightGrad xa x.Shape ga wShape
                        elif SingleChannelConv.applies spec wShape then
                            SingleChannelConv.conv2dWeightGrad threads spec xa x.Shape ga wShape
                        else
                            match Dnnl.conv2dWeightGrad spec xa x.Shape ga g.Shape wShape with
                            | Some dw -> dw
                            | None -> Im2col.conv2dWeightGrad threads spec xa x.Shape ga wShape
                    )
              }
            | _ -> reference.Conv2dWeightGrad(x, g, spec, wShape)

        member _.BatchNormForward(x, gamma, beta, eps) =
            match x.Storage, gamma.Storage, beta.Storage with
            | Storage.F32 xa, Storage.F32 ga, Storage.F32 ba ->
                let y, m, v = FastBatchNorm.forward threads xa x.Shape ga ba eps
                let c = [| x.Shape.[1] |]
                RawTensor.ofFloat32 x.Shape y, RawTensor.ofFloat32 c m, RawTensor.ofFloat32 c v
            | _ -> reference.BatchNormForward(x, gamma, beta, eps)

        member _.BatchNormBackward(g, x, gamma, mean, var, eps) =
            match g.Storage, x.Storage, gamma.Storage, mean.Storage, var.Storage with
            | Storage.F32 ga, Storage.F32 xa, Storage.F32 gm, Storage.F32 ma, Storage.F32 va ->
                let dx, dg, db = FastBatchNorm.backward threads ga xa x.Shape gm ma va eps
                let c = [| x.Shape.[1] |]
                RawTensor.ofFloat32 x.Shape dx, RawTensor.ofFloat32 c dg, RawTensor.ofFloat32 c db
            | _ -> reference.BatchNormBackward(g, x, gamma, mean, var, eps)

        member _.MaxPool2dIndices(x, kh, kw, spec) =
            reference.MaxPool2dIndices(x, kh, kw, spec)

        member _.Cast(x, dtype) = reference.Cast(x, dtype)

        member _.Recycle x =
            match x.Storage with
            | Storage.F32 a -> BufferPool.give a
            | Storage.F64 _ -> ()

        member _.NextPhase() = BufferPool.nextPhase ()

        member _.LeakyRelu(x, alpha) =
            match x.Storage with
            | Storage.F32 a ->
                let y = BufferPool.rent a.Length
                Fast.chunks threads a.Length (fun lo hi -> Vec.leakyRelu (float32 alpha) a y lo hi)
                RawTensor.ofFloat32 x.Shape y
            | Storage.F64 _ -> reference.LeakyRelu(x, alpha)

        member _.LeakyReluBackward(g, x, alpha) =
            match g.Storage, x.Storage with
            | Storage.F32 ga, Storage.F32 xa ->
                let dx = BufferPool.rent xa.Length
                Fast.chunks threads xa.Length (fun lo hi -> Vec.leakyReluBackward (float32 alpha) ga xa dx lo hi)
                RawTensor.ofFloat32 x.Shape dx
            | _ -> reference.LeakyReluBackward(g, x, alpha)

        member _.PairwiseL1(x, y) =
            match x.Storage, y.Storage with
            | Storage.F32 xa, Storage.F32 ya ->
                let gs, ps, rs, cs = x.Shape.[0], x.Shape.[1], y.Shape.[1], x.Shape.[2]
                let d = BufferPool.rent (gs * ps * rs)
                PairwiseL1.forward threads gs ps rs cs xa ya d
                RawTensor.ofFloat32 [| gs; ps; rs |] d
            | _ -> reference.PairwiseL1(x, y)

        member _.PairwiseL1Backward(g, x, y) =
            match g.Storage, x.Storage, y.Storage with
            | Storage.F32 ga, Storage.F32 xa, Storage.F32 ya ->
                let gs, ps, rs, cs = x.Shape.[0], x.Shape.[1], y.Shape.[1], x.Shape.[2]
                let dx = BufferPool.rent xa.Length
                PairwiseL1.backward threads gs ps rs cs ga xa ya dx
                RawTensor.ofFloat32 x.Shape dx
            | _ -> reference.PairwiseL1Backward(g, x, y)

        member _.AdamStep(p, g, m, v, c) =
            match p.Storage, g.Storage, m.Storage, v.Storage with
            | Storage.F32 pa, Storage.F32 ga, Storage.F32 ma, Storage.F32 va ->
                let n = pa.Length
                // the new parameters outlive the step: pinned object heap (see AdamStepDonated)
                let p' = GC.AllocateUninitializedArray<float32>(n, true)
                let m' = BufferPool.rent n
                let v' = BufferPool.rent n
                Fast.chunks threads n (fun lo hi -> Vec.adam c pa ga ma va p' m' v' lo hi)

                let wrap a = {
                    Shape = p.Shape
                    Storage = Storage.F32 a
                }

                wrap p', wrap m', wrap v'
            | _ -> reference.AdamStep(p, g, m, v, c)

        member _.AdamStepDonated(p, g, m, v, c) =
            match p.Storage, g.Storage, m.Storage, v.Storage with
            | Storage.F32 pa, Storage.F32 ga, Storage.F32 ma, Storage.F32 va ->
                // The new parameters outlive the step: on the pinned object heap, which the GC
                // never compacts, they are not copied by the frequent large-object-heap
                // compactions of GC ConserveMemory (mbd28: 405-423 -> 373-395 ms a step, peak RSS
                // 822 -> 750-771 MB on a quiet machine). Moments allocated there too measured
                // worse (12 instead of 7.5 gen-2 collections a step), so they stay where they are.
                let p' = GC.AllocateUninitializedArray<float32>(pa.Length, true)
                // the kernel reads m[i] and v[i] before writing them, so in place is exact
                Fast.chunks threads pa.Length (fun lo hi -> Vec.adam c pa ga ma va p' ma va lo hi)

                {
                    Shape = p.Shape
                    Storage = Storage.F32 p'
                }
            | _ -> reference.AdamStepDonated(p, g, m, v, c)

/// The backend the engine uses until one is selected with <see cref="M:Gan.Functional.Backend.set"/>:
/// the fast CPU backend with one thread per core, so that scripts and F# Interactive get the same
/// kernels as the host without configuring anything. The environment variable
/// <c>GAN_BACKEND=reference</c> selects the reference kernels instead (to rule out a fast kernel
/// when debugging); <c>cpu</c> or unset selects the CPU backend.
module DefaultBackend =
    let private instance =
        lazy
            (match Environment.GetEnvironmentVariable "GAN_BACKEND" with
             | null
             | ""
             | "cpu" -> CpuBackend(0) :> IBackend
             | "reference" -> ReferenceBackend.Instance :> IBackend
             | other ->
                 invalidOp (
                     sprintf "GAN_BACKEND must be 'cpu' or 'reference' (got '%s'); unset it for the default (cpu)" other
                 ))

    /// The default backend (created on first use).
    let get () = instance.Force()
