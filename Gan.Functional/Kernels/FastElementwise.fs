namespace Gan.Functional.Kernels

open System
open System.Numerics.Tensors
open System.Threading.Tasks
open System.Runtime.Intrinsics
open System.Runtime.Intrinsics.X86
open Gan.Functional

/// Vectorised float32 loops (TensorPrimitives) over runs found by merging dimensions.
module internal FastElementwise =

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

    /// Runs `body lo hi` over [0, n) in chunks, in parallel from `threshold` elements on
    /// (<c>CpuKnobs.ParallelThreshold</c>).
    let chunks threshold threads (n: int) (body: int -> int -> unit) =
        if threads > 1 && n >= threshold then
            // pieces of at least threshold/4 elements, a multiple of 16 so vector loops stay aligned
            let pieces = min (threads * piecesPerThread) (max 2 (n / (threshold / 4)))
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

    let unary threshold threads (op: UnaryOp) (x: float32[]) : float32[] option =
        match op with
        | Sign ->
            let y = BufferPool.rent x.Length
            chunks threshold threads x.Length (fun lo hi -> SimdLoops.sign x y lo hi)
            Some y
        | Tanh ->
            let y = BufferPool.rent x.Length
            chunks threshold threads x.Length (fun lo hi -> SimdLoops.tanh x y lo hi)
            Some y
        | _ ->
            let y = BufferPool.rent x.Length
            chunks threshold threads x.Length (fun lo hi -> unaryRun op x y lo (hi - lo))
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
        threshold
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
                    chunks threshold threads inner (fun lo hi ->
                        binaryRun op a (lo * ia) ia b (lo * ib) ib y lo (hi - lo))
                else
                    let rows = n / inner

                    split (if n >= threshold then threads else 1) rows (fun r0 r1 ->
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
    let view threshold threads (x: float32[]) (offset: int) (strides: int[]) (shape: int[]) : float32[] =
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

            split (if n >= threshold then threads else 1) rows (fun r0 r1 ->
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
    /// through a closure per block, the two ran measurably slower on dcgan28).
    let embed threshold threads (x: float32[]) (shape: int[]) (target: int) (offset: int) (strides: int[]) : float32[] =
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

            split (if n >= threshold then threads else 1) rows (fun r0 r1 ->
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
    let reduce threshold threads (op: ReduceOp) (x: float32[]) (shape: int[]) (axes: int[]) : float32[] option =
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

            split (if x.Length >= threshold then threads else 1) rows (fun r0 r1 ->
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
                    elif threads > 1 && x.Length >= threshold && rows > 1 then
                        // several pieces per thread (see piecesPerThread), each with its own
                        // partial result, summed in a fixed order
                        min (threads * 4) rows
                    else
                        1

                if disjoint then
                    let per = rows / dims.[0]

                    split (if x.Length >= threshold then threads else 1) dims.[0] (fun i0 i1 ->
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
