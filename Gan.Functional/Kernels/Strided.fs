/// Generic (float32/float64) loops over contiguous buffers shared by the reference backend.
/// Every function is `inline` so that each dtype gets its own specialised loop, and lambdas are
/// inlined into the loop body (no closure call per element).
module internal Gan.Functional.Kernels.Strided

open Gan.Functional

/// Strides of `shape` read as a broadcast into `outShape`: 0 on broadcast dimensions.
let broadcastStrides (shape: int[]) (outShape: int[]) =
    let r = outShape.Length
    let off = r - shape.Length
    let own = Shape.strides shape
    Array.init r (fun i -> if i < off || shape.[i - off] = 1 then 0 else own.[i - off])

/// Advances an odometer over all but the last dimension of `shape`, moving each base offset by
/// its stride set; returns nothing, mutates `idx` and `bases`.
let inline private advance (idx: int[]) (shape: int[]) (strides: int[][]) (bases: int[]) =
    let mutable d = shape.Length - 2
    let mutable carry = true

    while carry && d >= 0 do
        idx.[d] <- idx.[d] + 1

        for s in 0 .. strides.Length - 1 do
            bases.[s] <- bases.[s] + strides.[s].[d]

        if idx.[d] < shape.[d] then
            carry <- false
        else
            for s in 0 .. strides.Length - 1 do
                bases.[s] <- bases.[s] - strides.[s].[d] * shape.[d]

            idx.[d] <- 0
            d <- d - 1

/// dst = contiguous copy of the strided view of `src`.
let inline view (src: ^T[]) (offset: int) (strides: int[]) (shape: int[]) : ^T[] =
    let n = Shape.numel shape
    let dst: ^T[] = Array.zeroCreate n

    if n > 0 then
        let r = shape.Length

        if r = 0 then
            dst.[0] <- src.[offset]
        else
            let inner = shape.[r - 1]
            let si = strides.[r - 1]
            let idx = Array.zeroCreate r
            let ss = [| strides |]
            let bases = [| offset |]
            let mutable o = 0

            while o < n do
                let mutable s = bases.[0]

                if si = 1 then
                    System.Array.Copy(src, s, dst, o, inner)
                else
                    for j in 0 .. inner - 1 do
                        dst.[o + j] <- src.[s]
                        s <- s + si

                o <- o + inner
                advance idx shape ss bases

    dst

/// Writes `src` (contiguous, of `shape`) into the strided window of `dst`.
let inline embed (src: ^T[]) (shape: int[]) (dst: ^T[]) (offset: int) (strides: int[]) =
    let n = src.Length

    if n > 0 then
        let r = shape.Length

        if r = 0 then
            dst.[offset] <- src.[0]
        else
            let inner = shape.[r - 1]
            let si = strides.[r - 1]
            let idx = Array.zeroCreate r
            let ss = [| strides |]
            let bases = [| offset |]
            let mutable o = 0

            while o < n do
                let mutable s = bases.[0]

                if si = 1 then
                    System.Array.Copy(src, o, dst, s, inner)
                else
                    for j in 0 .. inner - 1 do
                        dst.[s] <- src.[o + j]
                        s <- s + si

                o <- o + inner
                advance idx shape ss bases

/// dst = f(a, b) with NumPy broadcasting into `outShape`.
let inline zip
    ([<InlineIfLambda>] f: ^T -> ^T -> ^T)
    (a: ^T[])
    (aShape: int[])
    (b: ^T[])
    (bShape: int[])
    (outShape: int[])
    : ^T[] =
    let n = Shape.numel outShape
    let dst: ^T[] = Array.zeroCreate n

    if a.Length = n && b.Length = n then
        for i in 0 .. n - 1 do
            dst.[i] <- f a.[i] b.[i]
    elif b.Length = 1 && a.Length = n then
        let bv = b.[0]

        for i in 0 .. n - 1 do
            dst.[i] <- f a.[i] bv
    elif a.Length = 1 && b.Length = n then
        let av = a.[0]

        for i in 0 .. n - 1 do
            dst.[i] <- f av b.[i]
    elif n > 0 then
        let r = outShape.Length
        let sa = broadcastStrides aShape outShape
        let sb = broadcastStrides bShape outShape
        let inner = outShape.[r - 1]
        let ia = sa.[r - 1]
        let ib = sb.[r - 1]
        let idx = Array.zeroCreate r
        let ss = [| sa; sb |]
        let bases = [| 0; 0 |]
        let mutable o = 0

        while o < n do
            let mutable pa = bases.[0]
            let mutable pb = bases.[1]

            for j in 0 .. inner - 1 do
                dst.[o + j] <- f a.[pa] b.[pb]
                pa <- pa + ia
                pb <- pb + ib

            o <- o + inner
            advance idx outShape ss bases

    dst

/// Reduces the given axes of `x` with `f`, starting from `init`; the result keeps the axes as 1.
let inline reduce ([<InlineIfLambda>] f: ^T -> ^T -> ^T) (init: ^T) (x: ^T[]) (shape: int[]) (axes: int[]) : ^T[] =
    let outShape = Shape.reduceKeep shape axes
    let m = Shape.numel outShape
    let dst = Array.create m init
    let n = x.Length

    if n > 0 then
        let r = shape.Length

        if r = 0 || m = 1 then
            let mutable acc = init

            for i in 0 .. n - 1 do
                acc <- f acc x.[i]

            dst.[0] <- acc
        else
            let own = Shape.strides outShape
            let so = Array.init r (fun i -> if Array.contains i axes then 0 else own.[i])
            let inner = shape.[r - 1]
            let io = so.[r - 1]
            let idx = Array.zeroCreate r
            let ss = [| so |]
            let bases = [| 0 |]
            let mutable i = 0

            while i < n do
                let mutable p = bases.[0]

                if io = 0 then
                    let mutable acc = dst.[p]

                    for j in 0 .. inner - 1 do
                        acc <- f acc x.[i + j]

                    dst.[p] <- acc
                else
                    for j in 0 .. inner - 1 do
                        dst.[p] <- f dst.[p] x.[i + j]
                        p <- p + io

                i <- i + inner
                advance idx shape ss bases

    dst

/// Index of the first maximum along `axis`, for every position of the other axes.
let inline argMax (x: ^T[]) (shape: int[]) (axis: int) : int[] =
    let outer = Shape.numel shape.[.. axis - 1]
    let len = shape.[axis]
    let inner = Shape.numel shape.[axis + 1 ..]
    let dst = Array.zeroCreate (outer * inner)

    for o in 0 .. outer - 1 do
        for i in 0 .. inner - 1 do
            let b = o * len * inner + i
            let mutable best = 0
            let mutable bv = x.[b]

            for k in 1 .. len - 1 do
                let v = x.[b + k * inner]

                if v > bv then
                    bv <- v
                    best <- k

            dst.[o * inner + i] <- best

    dst

/// c = op(a) · op(b) for one matrix: a is m×k (or k×m when transA), b is k×n (or n×k when
/// transB); c (m×n, at cOff) is overwritten.
let inline gemm
    (a: ^T[])
    (aOff: int)
    (transA: bool)
    (b: ^T[])
    (bOff: int)
    (transB: bool)
    (c: ^T[])
    (cOff: int)
    (m: int)
    (k: int)
    (n: int)
    =
    match transA, transB with
    | false, false ->
        // i-p-j order: the innermost loop runs along contiguous rows of b and c.
        for i in 0 .. m - 1 do
            let ci = cOff + i * n

            for p in 0 .. k - 1 do
                let av = a.[aOff + i * k + p]
                let bp = bOff + p * n

                for j in 0 .. n - 1 do
                    c.[ci + j] <- c.[ci + j] + av * b.[bp + j]
    | true, false ->
        for p in 0 .. k - 1 do
            let bp = bOff + p * n

            for i in 0 .. m - 1 do
                let av = a.[aOff + p * m + i]
                let ci = cOff + i * n

                for j in 0 .. n - 1 do
                    c.[ci + j] <- c.[ci + j] + av * b.[bp + j]
    | false, true ->
        // rows of a against rows of b: both contiguous dot products.
        for i in 0 .. m - 1 do
            let ai = aOff + i * k

            for j in 0 .. n - 1 do
                let bj = bOff + j * k
                let mutable s = LanguagePrimitives.GenericZero

                for p in 0 .. k - 1 do
                    s <- s + a.[ai + p] * b.[bj + p]

                c.[cOff + i * n + j] <- s
    | true, true ->
        for i in 0 .. m - 1 do
            for j in 0 .. n - 1 do
                let mutable s = LanguagePrimitives.GenericZero

                for p in 0 .. k - 1 do
                    s <- s + a.[aOff + p * m + i] * b.[bOff + j * k + p]

                c.[cOff + i * n + j] <- s

/// Batched matrix product with broadcast batch dimensions (see IBackend.MatMul).
let inline matmul
    (a: ^T[])
    (aShape: int[])
    (transA: bool)
    (b: ^T[])
    (bShape: int[])
    (transB: bool)
    (outShape: int[])
    : ^T[] =
    let r = outShape.Length
    let m = outShape.[r - 2]
    let n = outShape.[r - 1]

    let k =
        if transA then
            aShape.[aShape.Length - 2]
        else
            aShape.[aShape.Length - 1]

    let c: ^T[] = Array.zeroCreate (Shape.numel outShape)
    let batchShape = outShape.[.. r - 3]
    let batches = Shape.numel batchShape
    let aBatch = aShape.[.. aShape.Length - 3]
    let bBatch = bShape.[.. bShape.Length - 3]
    let sa = broadcastStrides aBatch batchShape
    let sb = broadcastStrides bBatch batchShape
    let idx = Array.zeroCreate batchShape.Length

    for bi in 0 .. batches - 1 do
        // decode bi into batch coordinates to find each operand's matrix
        let mutable rem = bi

        for d in batchShape.Length - 1 .. -1 .. 0 do
            idx.[d] <- rem % batchShape.[d]
            rem <- rem / batchShape.[d]

        let mutable ao = 0
        let mutable bo = 0

        for d in 0 .. batchShape.Length - 1 do
            ao <- ao + idx.[d] * sa.[d]
            bo <- bo + idx.[d] * sb.[d]

        gemm a (ao * m * k) transA b (bo * k * n) transB c (bi * m * n) m k n

    c
