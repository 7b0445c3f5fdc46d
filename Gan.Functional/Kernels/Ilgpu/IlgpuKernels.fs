namespace Gan.Functional.Kernels.Ilgpu

open ILGPU
open ILGPU.Algorithms

/// The geometry of one 2-D convolution, passed to the im2col/col2im kernels by value.
[<Struct>]
type internal ConvGeom = {
    N: int
    C: int
    H: int
    W: int
    /// Groups.
    G: int
    /// Input channels per group.
    Cg: int
    KH: int
    KW: int
    OH: int
    OW: int
    SH: int
    SW: int
    PT: int
    PL: int
    DH: int
    DW: int
}

/// The scalars of one fused Adam step at float32 (see AdamCoefficients), by value.
[<Struct>]
type internal AdamScalars = {
    B1: float32
    B2: float32
    Step: float32
    InvSqrtBc2: float32
    Eps: float32
    Wd: float32
    Shrink: float32
    Decoupled: int
}

/// Elementwise operations shared by the kernels (inlined into them by ILGPU).
module internal DeviceMath =
    /// UnaryOp by code: Neg 0, Exp 1, Log 2, Sqrt 3, Tanh 4, Sigmoid 5, Abs 6, Sign 7.
    let unary (op: int) (x: float32) : float32 =
        match op with
        | 0 -> -x
        | 1 -> XMath.Exp x
        | 2 -> XMath.Log x
        | 3 -> XMath.Sqrt x
        | 4 -> XMath.Tanh x
        | 5 ->
            // two branches keep exp's argument non-positive, as the reference does
            if x >= 0.0f then
                1.0f / (1.0f + XMath.Exp(-x))
            else
                let e = XMath.Exp x
                e / (1.0f + e)
        | 6 -> XMath.Abs x
        | _ ->
            if x > 0.0f then 1.0f
            elif x < 0.0f then -1.0f
            else 0.0f

    /// BinaryOp by code: Add 0, Sub 1, Mul 2, Div 3, Pow 4, Maximum 5, Minimum 6, Equal 7,
    /// Less 8, LessEqual 9, Greater 10, GreaterEqual 11.
    let binary (op: int) (x: float32) (y: float32) : float32 =
        match op with
        | 0 -> x + y
        | 1 -> x - y
        | 2 -> x * y
        | 3 -> x / y
        | 4 -> XMath.Pow(x, y)
        | 5 -> if x >= y then x else y
        | 6 -> if x <= y then x else y
        | 7 -> if x = y then 1.0f else 0.0f
        | 8 -> if x < y then 1.0f else 0.0f
        | 9 -> if x <= y then 1.0f else 0.0f
        | 10 -> if x > y then 1.0f else 0.0f
        | _ -> if x >= y then 1.0f else 0.0f

    /// The offset of flat index `i` of a tensor of shape meta[s0 .. s0+rank) in a strided
    /// buffer with strides meta[t0 .. t0+rank).
    let stridedOffset (i: int) (rank: int) (meta: ArrayView<int>) (s0: int) (t0: int) =
        let mutable rem = i
        let mutable off = 0
        let mutable d = rank - 1

        while d >= 0 do
            let size = meta.[s0 + d]
            let c = rem % size
            rem <- rem / size
            off <- off + c * meta.[t0 + d]
            d <- d - 1

        off

/// Philox-4x32-10 and the portable elementary functions of Core/Random.fs, for kernels: the
/// same integer arithmetic and IEEE-754 basic operations (fdlibm's coefficients as literals),
/// so a draw on the device is the host's draw.
module internal DeviceRandom =
    [<Literal>]
    let Ln2Hi = 0x3FE62E42FEE00000LF

    [<Literal>]
    let Ln2Lo = 0x3DEA39EF35793C76LF

    [<Literal>]
    let Lg1 = 0x3FE5555555555593LF

    [<Literal>]
    let Lg2 = 0x3FD999999997FA04LF

    [<Literal>]
    let Lg3 = 0x3FD2492494229359LF

    [<Literal>]
    let Lg4 = 0x3FCC71C51D8E78AFLF

    [<Literal>]
    let Lg5 = 0x3FC7466496CB03DELF

    [<Literal>]
    let Lg6 = 0x3FC39A09D078C69FLF

    [<Literal>]
    let Lg7 = 0x3FC2F112DF3E5244LF

    [<Literal>]
    let S1 = 0xBFC5555555555549LF

    [<Literal>]
    let S2 = 0x3F8111111110F8A6LF

    [<Literal>]
    let S3 = 0xBF2A01A019C161D5LF

    [<Literal>]
    let S4 = 0x3EC71DE357B1FE7DLF

    [<Literal>]
    let S5 = 0xBE5AE5E68A2B9CEBLF

    [<Literal>]
    let S6 = 0x3DE5D93A5ACFD57CLF

    [<Literal>]
    let C1 = 0x3FA555555555554CLF

    [<Literal>]
    let C2 = 0xBF56C16C16C15177LF

    [<Literal>]
    let C3 = 0x3EFA01A019CB1590LF

    [<Literal>]
    let C4 = 0xBE927E4F809C52ADLF

    [<Literal>]
    let C5 = 0x3E21EE9EBDB4B1C4LF

    [<Literal>]
    let C6 = 0xBDA8FAE9BE8838D4LF

    /// π·2⁻⁵² (Math.PI / 2^52, exact: a power-of-two scaling).
    [<Literal>]
    let PiOver2Pow52 = 0x3CC921FB54442D18LF

    /// One Philox-4x32-10 block of key (k0, k1) at counter (c0, c1, 0, 0): word `word` (0–3).
    let philoxWord (k0: uint32) (k1: uint32) (block: int64) (word: int) : uint32 =
        let mutable x0 = uint32 block
        let mutable x1 = uint32 (block >>> 32)
        let mutable x2 = 0u
        let mutable x3 = 0u
        let mutable ka = k0
        let mutable kb = k1
        let mutable round = 0

        while round < 10 do
            if round > 0 then
                ka <- ka + 0x9E3779B9u
                kb <- kb + 0xBB67AE85u

            let p0 = uint64 0xD2511F53u * uint64 x0
            let p1 = uint64 0xCD9E8D57u * uint64 x2
            let y0 = uint32 (p1 >>> 32) ^^^ x1 ^^^ ka
            let y2 = uint32 (p0 >>> 32) ^^^ x3 ^^^ kb
            x0 <- y0
            x1 <- uint32 p1
            x2 <- y2
            x3 <- uint32 p0
            round <- round + 1

        if word = 0 then x0
        elif word = 1 then x1
        elif word = 2 then x2
        else x3

    /// PortableMath.log.
    let log (x: float) =
        let b = int64 (Interop.FloatAsInt x)
        let frac = b &&& 0x000FFFFFFFFFFFFFL
        let mutable e = int (b >>> 52) - 1023
        let mutable m = Interop.IntAsFloat(uint64 (frac ||| 0x3FF0000000000000L))

        if frac > 0x6A09E667F3BCDL then
            m <- Interop.IntAsFloat(uint64 (frac ||| 0x3FE0000000000000L))
            e <- e + 1

        let f = m - 1.0
        let hfsq = 0.5 * f * f
        let s = f / (2.0 + f)
        let z = s * s
        let w = z * z
        let t1 = w * (Lg2 + w * (Lg4 + w * Lg6))
        let t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)))
        let r = t2 + t1
        let dk = float e
        dk * Ln2Hi - ((hfsq - (s * (hfsq + r) + dk * Ln2Lo)) - f)

    /// PortableMath's sin/cos kernel on [−π/4, π/4]: sin when `wantSin`, else cos.
    let private kernel (a: float) (wantSin: bool) =
        let z = a * a

        if wantSin then
            let sr = S2 + z * (S3 + z * (S4 + z * (S5 + z * S6)))
            a + (z * a) * (S1 + z * sr)
        else
            let cr = z * (C1 + z * (C2 + z * (C3 + z * (C4 + z * (C5 + z * C6)))))
            let hz = 0.5 * z
            let w = 1.0 - hz
            w + (((1.0 - w) - hz) + z * cr)

    /// PortableMath.sinCos2Pi, one of the pair: sin (2π x/2⁵³) when `wantSin`, else cos.
    let sinCos2Pi (x: uint64) (wantSin: bool) =
        let k = (x + (1UL <<< 50)) >>> 51
        let rem = int64 x - int64 (k <<< 51)
        let a = float rem * PiOver2Pow52
        let q = int (k &&& 3UL)

        if q = 0 then
            kernel a wantSin
        elif q = 1 then
            (if wantSin then kernel a false else -(kernel a true))
        elif q = 2 then
            -(kernel a wantSin)
        else
            (if wantSin then -(kernel a false) else kernel a true)

/// The device kernels, float32, as explicitly grouped ILGPU kernels: static methods whose
/// threads find their work from Grid/Group indices. Elementwise kernels are grid-stride loops
/// that read the grid size once, so any launch size covers any n. Every public static member
/// here is a kernel (the PTX test compiles each).
type internal IlgpuKernels =

    // ------------------------------------------------------------------ elementwise

    static member Unary(op: int, n: int, x: ArrayView<float32>, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- DeviceMath.unary op x.[i]
            i <- i + stride

    /// Both operands of the output's shape (no broadcast).
    static member BinarySame(op: int, n: int, a: ArrayView<float32>, b: ArrayView<float32>, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- DeviceMath.binary op a.[i] b.[i]
            i <- i + stride

    /// Broadcasting: meta = [outShape; aStrides; bStrides] (rank each; stride 0 on broadcast
    /// axes).
    static member Binary
        (
            op: int,
            n: int,
            rank: int,
            meta: ArrayView<int>,
            a: ArrayView<float32>,
            b: ArrayView<float32>,
            y: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            let ia = DeviceMath.stridedOffset i rank meta 0 rank
            let ib = DeviceMath.stridedOffset i rank meta 0 (2 * rank)
            y.[i] <- DeviceMath.binary op a.[ia] b.[ib]
            i <- i + stride

    static member Where
        (n: int, m: ArrayView<float32>, a: ArrayView<float32>, b: ArrayView<float32>, y: ArrayView<float32>)
        =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- if m.[i] <> 0.0f then a.[i] else b.[i]
            i <- i + stride

    static member LeakyRelu(n: int, alpha: float32, x: ArrayView<float32>, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            let v = x.[i]
            y.[i] <- if v > 0.0f then v else alpha * v
            i <- i + stride

    static member LeakyReluBackward
        (n: int, alpha: float32, g: ArrayView<float32>, x: ArrayView<float32>, y: ArrayView<float32>)
        =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- if x.[i] > 0.0f then g.[i] else alpha * g.[i]
            i <- i + stride

    static member CastToF64(n: int, x: ArrayView<float32>, y: ArrayView<float>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- float x.[i]
            i <- i + stride

    static member CastToF32(n: int, x: ArrayView<float>, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- float32 x.[i]
            i <- i + stride

    static member Fill(n: int, v: float32, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- v
            i <- i + stride

    /// One fused Adam step; p', m', v' may be m's and v's own buffers (donation): each thread
    /// reads its element before writing it.
    static member Adam
        (
            n: int,
            c: AdamScalars,
            p: ArrayView<float32>,
            g: ArrayView<float32>,
            m: ArrayView<float32>,
            v: ArrayView<float32>,
            p2: ArrayView<float32>,
            m2: ArrayView<float32>,
            v2: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            let pi = if c.Decoupled <> 0 then p.[i] * c.Shrink else p.[i]
            let gi = if c.Decoupled <> 0 then g.[i] else g.[i] + c.Wd * p.[i]
            let mi = c.B1 * m.[i] + (1.0f - c.B1) * gi
            let vi = c.B2 * v.[i] + (1.0f - c.B2) * gi * gi
            m2.[i] <- mi
            v2.[i] <- vi
            p2.[i] <- pi - c.Step * mi / (XMath.Sqrt vi * c.InvSqrtBc2 + c.Eps)
            i <- i + stride

    // ------------------------------------------------------------------ layout

    /// y[i] = x[offset + Σ coord·stride], meta = [shape; strides].
    static member View
        (n: int, rank: int, offset: int, meta: ArrayView<int>, x: ArrayView<float32>, y: ArrayView<float32>)
        =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- x.[offset + DeviceMath.stridedOffset i rank meta 0 rank]
            i <- i + stride

    /// y[offset + Σ coord·stride] = x[i] for x's elements (y zeroed, or another part's
    /// output for concat), meta = [x's shape; strides in y].
    static member Embed
        (n: int, rank: int, offset: int, meta: ArrayView<int>, x: ArrayView<float32>, y: ArrayView<float32>)
        =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[offset + DeviceMath.stridedOffset i rank meta 0 rank] <- x.[i]
            i <- i + stride

    static member Take(n: int, index: ArrayView<int>, x: ArrayView<float32>, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            y.[i] <- x.[index.[i]]
            i <- i + stride

    /// y (zeroed) [index[i]] += src[i], with atomic adds (the order of a sum is not fixed).
    static member ScatterAdd(n: int, index: ArrayView<int>, src: ArrayView<float32>, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < n do
            Atomic.Add(&y.[index.[i]], src.[i]) |> ignore
            i <- i + stride

    // ------------------------------------------------------------------ reductions

    /// One thread per output: meta = [kept shape; kept strides; reduced shape; reduced
    /// strides]; op: 0 sum, 1 max, 2 min.
    static member ReduceThread
        (
            op: int,
            nOut: int,
            keptRank: int,
            redRank: int,
            redCount: int,
            meta: ArrayView<int>,
            x: ArrayView<float32>,
            y: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let mutable o = Grid.GlobalIndex.X
        let r0 = 2 * keptRank

        while o < nOut do
            let b = DeviceMath.stridedOffset o keptRank meta 0 keptRank
            let mutable acc = x.[b + DeviceMath.stridedOffset 0 redRank meta r0 (r0 + redRank)]
            let mutable r = 1

            while r < redCount do
                let v = x.[b + DeviceMath.stridedOffset r redRank meta r0 (r0 + redRank)]

                acc <-
                    if op = 0 then acc + v
                    elif op = 1 then (if v > acc then v else acc)
                    else (if v < acc then v else acc)

                r <- r + 1

            y.[o] <- acc
            o <- o + stride

    /// Long reductions, `parts` groups per output: group p of output o reduces the elements
    /// p·G + t, stepping by parts·G (G threads a group, a power of two, at most 256), combines
    /// them in shared memory and writes partial[o·parts + p]. With parts = 1 that is the
    /// output itself (one group per output); with more it is the first of two passes (few
    /// outputs, many elements each), the second reducing the partials [nOut, parts] over their
    /// last axis. Meta and op as <c>ReduceThread</c>'s.
    static member ReducePartial
        (
            op: int,
            nOut: int,
            parts: int,
            keptRank: int,
            redRank: int,
            redCount: int,
            meta: ArrayView<int>,
            x: ArrayView<float32>,
            partial: ArrayView<float32>
        ) =
        let sh = SharedMemory.Allocate<float32>(256)
        let t = Group.IdxX
        let r0 = 2 * keptRank
        let mutable w = Grid.IdxX

        while w < nOut * parts do
            let o = w / parts
            let p = w - o * parts
            let b = DeviceMath.stridedOffset o keptRank meta 0 keptRank
            // every thread starts from element 0 (a valid identity for max and min)
            let mutable acc =
                if op = 0 then
                    0.0f
                else
                    x.[b + DeviceMath.stridedOffset 0 redRank meta r0 (r0 + redRank)]

            let mutable r = p * Group.DimX + t

            while r < redCount do
                let v = x.[b + DeviceMath.stridedOffset r redRank meta r0 (r0 + redRank)]

                acc <-
                    if op = 0 then acc + v
                    elif op = 1 then (if v > acc then v else acc)
                    else (if v < acc then v else acc)

                r <- r + parts * Group.DimX

            sh.[t] <- acc
            Group.Barrier()
            let mutable s = Group.DimX / 2

            while s > 0 do
                if t < s then
                    let u, v = sh.[t], sh.[t + s]

                    sh.[t] <-
                        if op = 0 then u + v
                        elif op = 1 then (if v > u then v else u)
                        else (if v < u then v else u)

                Group.Barrier()
                s <- s / 2

            if t = 0 then
                partial.[w] <- sh.[0]

            Group.Barrier()
            w <- w + Grid.DimX

    /// Index (along the axis) of the first maximum of each row: x viewed [outer, len, inner].
    static member ArgMax(nOut: int, len: int, inner: int, x: ArrayView<float32>, y: ArrayView<int>) =
        let stride = Grid.DimX * Group.DimX
        let mutable o = Grid.GlobalIndex.X

        while o < nOut do
            let b = (o / inner) * len * inner + o % inner
            let mutable best = 0
            let mutable bestV = x.[b]
            let mutable j = 1

            while j < len do
                let v = x.[b + j * inner]

                if v > bestV || (v <> v && bestV = bestV) then
                    best <- j
                    bestV <- v

                j <- j + 1

            y.[o] <- best
            o <- o + stride

    // ------------------------------------------------------------------ matrix products

    /// One thread per output element (groups too small for the tiled kernel). aOff/bOff: each
    /// batch's offset in a and b (broadcast batches repeat offsets).
    static member MatMulSimple
        (
            m: int,
            n: int,
            k: int,
            batches: int,
            transA: int,
            transB: int,
            aOff: ArrayView<int>,
            bOff: ArrayView<int>,
            a: ArrayView<float32>,
            b: ArrayView<float32>,
            c: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let total = batches * m * n
        let mutable o = Grid.GlobalIndex.X

        while o < total do
            let bi = o / (m * n)
            let i = (o / n) % m
            let j = o % n
            let ao, bo = aOff.[bi], bOff.[bi]
            let mutable acc = 0.0f
            let mutable kk = 0

            while kk < k do
                let av =
                    if transA <> 0 then
                        a.[ao + kk * m + i]
                    else
                        a.[ao + i * k + kk]

                let bv =
                    if transB <> 0 then
                        b.[bo + j * k + kk]
                    else
                        b.[bo + kk * n + j]

                acc <- acc + av * bv
                kk <- kk + 1

            c.[o] <- acc
            o <- o + stride

    /// Tiled in shared memory: each 256-thread group computes 16×16 outputs of one batch,
    /// stepping through k in 16-wide tiles of A and B; groups stride over the tiles of all
    /// batches.
    static member MatMulTiled
        (
            m: int,
            n: int,
            k: int,
            batches: int,
            transA: int,
            transB: int,
            aOff: ArrayView<int>,
            bOff: ArrayView<int>,
            a: ArrayView<float32>,
            b: ArrayView<float32>,
            c: ArrayView<float32>
        ) =
        let tileA = SharedMemory.Allocate<float32>(256)
        let tileB = SharedMemory.Allocate<float32>(256)
        let t = Group.IdxX
        let ty = t / 16
        let tx = t % 16
        let tilesM = (m + 15) / 16
        let tilesN = (n + 15) / 16
        let tiles = batches * tilesM * tilesN
        let mutable tile = Grid.IdxX

        while tile < tiles do
            let bi = tile / (tilesM * tilesN)
            let tm = (tile / tilesN) % tilesM
            let tn = tile % tilesN
            let ao, bo = aOff.[bi], bOff.[bi]
            let row = tm * 16 + ty
            let col = tn * 16 + tx
            let mutable acc = 0.0f
            let mutable k0 = 0

            while k0 < k do
                // A(row, k0 + tx) and B(k0 + ty, col), zero outside the matrices
                let ka = k0 + tx

                tileA.[t] <-
                    if row < m && ka < k then
                        (if transA <> 0 then
                             a.[ao + ka * m + row]
                         else
                             a.[ao + row * k + ka])
                    else
                        0.0f

                let kb = k0 + ty

                tileB.[t] <-
                    if kb < k && col < n then
                        (if transB <> 0 then
                             b.[bo + col * k + kb]
                         else
                             b.[bo + kb * n + col])
                    else
                        0.0f

                Group.Barrier()
                let mutable e = 0

                while e < 16 do
                    acc <- acc + tileA.[ty * 16 + e] * tileB.[e * 16 + tx]
                    e <- e + 1

                Group.Barrier()
                k0 <- k0 + 16

            if row < m && col < n then
                c.[bi * m * n + row * n + col] <- acc

            tile <- tile + Grid.DimX

    // ------------------------------------------------------------------ convolution

    /// cols[n, g, (cg·KH + ky)·KW + kx, oh·OW + ow] = x[n, g·Cg + cg, oh·SH − PT + ky·DH,
    /// ow·SW − PL + kx·DW] (0 in the padding).
    static member Im2col(total: int, geo: ConvGeom, x: ArrayView<float32>, cols: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let p = geo.OH * geo.OW
        let kk = geo.Cg * geo.KH * geo.KW
        let mutable i = Grid.GlobalIndex.X

        while i < total do
            let pos = i % p
            let kidx = (i / p) % kk
            let ng = i / (p * kk)
            let g = ng % geo.G
            let nn = ng / geo.G
            let kx = kidx % geo.KW
            let ky = (kidx / geo.KW) % geo.KH
            let cg = kidx / (geo.KW * geo.KH)
            let oh = pos / geo.OW
            let ow = pos % geo.OW
            let ih = oh * geo.SH - geo.PT + ky * geo.DH
            let iw = ow * geo.SW - geo.PL + kx * geo.DW

            cols.[i] <-
                if ih >= 0 && ih < geo.H && iw >= 0 && iw < geo.W then
                    x.[((nn * geo.C + g * geo.Cg + cg) * geo.H + ih) * geo.W + iw]
                else
                    0.0f

            i <- i + stride

    /// The adjoint of Im2col as a gather (no atomics): each input element sums the columns
    /// entries that read it.
    static member Col2im(total: int, geo: ConvGeom, cols: ArrayView<float32>, x: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let p = geo.OH * geo.OW
        let kk = geo.Cg * geo.KH * geo.KW
        let mutable i = Grid.GlobalIndex.X

        while i < total do
            let iw = i % geo.W
            let ih = (i / geo.W) % geo.H
            let ch = (i / (geo.W * geo.H)) % geo.C
            let nn = i / (geo.W * geo.H * geo.C)
            let g = ch / geo.Cg
            let cg = ch % geo.Cg
            let colBase = (nn * geo.G + g) * kk * p
            let mutable acc = 0.0f
            let mutable ky = 0

            while ky < geo.KH do
                let th = ih + geo.PT - ky * geo.DH

                if th >= 0 && th % geo.SH = 0 && th / geo.SH < geo.OH then
                    let oh = th / geo.SH
                    let mutable kx = 0

                    while kx < geo.KW do
                        let tw = iw + geo.PL - kx * geo.DW

                        if tw >= 0 && tw % geo.SW = 0 && tw / geo.SW < geo.OW then
                            let ow = tw / geo.SW
                            let kidx = (cg * geo.KH + ky) * geo.KW + kx
                            acc <- acc + cols.[colBase + kidx * p + oh * geo.OW + ow]

                        kx <- kx + 1

                ky <- ky + 1

            x.[i] <- acc
            i <- i + stride

    /// Flat input index of each pooling window's first maximum (windows of KH×KW under geo's
    /// stride, padding and dilation; one plane per (n, c): geo.G = 1, geo.Cg = 1).
    static member MaxPoolIndices(total: int, geo: ConvGeom, x: ArrayView<float32>, y: ArrayView<int>) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < total do
            let ow = i % geo.OW
            let oh = (i / geo.OW) % geo.OH
            let plane = i / (geo.OW * geo.OH)
            let xPlane = plane * geo.H * geo.W
            let mutable best = -1
            let mutable bestV = 0.0f
            let mutable ky = 0

            while ky < geo.KH do
                let ih = oh * geo.SH - geo.PT + ky * geo.DH

                if ih >= 0 && ih < geo.H then
                    let mutable kx = 0

                    while kx < geo.KW do
                        let iw = ow * geo.SW - geo.PL + kx * geo.DW

                        if iw >= 0 && iw < geo.W then
                            let xi = xPlane + ih * geo.W + iw
                            let v = x.[xi]

                            if best < 0 || v > bestV || (v <> v && bestV = bestV) then
                                best <- xi
                                bestV <- v

                        kx <- kx + 1

                ky <- ky + 1

            y.[i] <- best
            i <- i + stride

    // ------------------------------------------------------------------ fused layers

    /// Per-channel batch statistics, one group per channel (x is [N, C, L]): mean and biased
    /// variance in float64 accumulators, two passes, as the reference.
    static member BatchNormStats
        (n: int, c: int, l: int, x: ArrayView<float32>, mean: ArrayView<float32>, var: ArrayView<float32>)
        =
        let sh = SharedMemory.Allocate<float>(256)
        let t = Group.IdxX
        let count = n * l
        let mutable ch = Grid.IdxX

        while ch < c do
            let mutable s = 0.0
            let mutable j = t

            while j < count do
                s <- s + float x.[((j / l) * c + ch) * l + j % l]
                j <- j + Group.DimX

            sh.[t] <- s
            Group.Barrier()
            let mutable h = Group.DimX / 2

            while h > 0 do
                if t < h then
                    sh.[t] <- sh.[t] + sh.[t + h]

                Group.Barrier()
                h <- h / 2

            let mu = sh.[0] / float count
            Group.Barrier()
            let mutable q = 0.0
            j <- t

            while j < count do
                let d = float x.[((j / l) * c + ch) * l + j % l] - mu
                q <- q + d * d
                j <- j + Group.DimX

            sh.[t] <- q
            Group.Barrier()
            h <- Group.DimX / 2

            while h > 0 do
                if t < h then
                    sh.[t] <- sh.[t] + sh.[t + h]

                Group.Barrier()
                h <- h / 2

            if t = 0 then
                mean.[ch] <- float32 mu
                var.[ch] <- float32 (sh.[0] / float count)

            Group.Barrier()
            ch <- ch + Grid.DimX

    /// y = (x − μ)·γ/√(σ² + eps) + β per channel, then LeakyReLU(alpha) when act ≠ 0.
    static member BatchNormApply
        (
            total: int,
            c: int,
            l: int,
            eps: float32,
            x: ArrayView<float32>,
            gamma: ArrayView<float32>,
            beta: ArrayView<float32>,
            mean: ArrayView<float32>,
            var: ArrayView<float32>,
            y: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < total do
            let ch = (i / l) % c
            let a = gamma.[ch] / XMath.Sqrt(var.[ch] + eps)
            y.[i] <- (x.[i] - mean.[ch]) * a + beta.[ch]
            i <- i + stride

    /// Per channel: dbeta = Σ g, dgamma = Σ g·x̂ (float64 accumulators), one group per channel.
    static member BatchNormGradStats
        (
            n: int,
            c: int,
            l: int,
            eps: float32,
            g: ArrayView<float32>,
            x: ArrayView<float32>,
            mean: ArrayView<float32>,
            var: ArrayView<float32>,
            dgamma: ArrayView<float32>,
            dbeta: ArrayView<float32>
        ) =
        let sg = SharedMemory.Allocate<float>(256)
        let sgx = SharedMemory.Allocate<float>(256)
        let t = Group.IdxX
        let count = n * l
        let mutable ch = Grid.IdxX

        while ch < c do
            let mu = float mean.[ch]
            let inv = 1.0 / XMath.Sqrt(float var.[ch] + float eps)
            let mutable a = 0.0
            let mutable b = 0.0
            let mutable j = t

            while j < count do
                let i = ((j / l) * c + ch) * l + j % l
                let gi = float g.[i]
                a <- a + gi
                b <- b + gi * (float x.[i] - mu) * inv
                j <- j + Group.DimX

            sg.[t] <- a
            sgx.[t] <- b
            Group.Barrier()
            let mutable h = Group.DimX / 2

            while h > 0 do
                if t < h then
                    sg.[t] <- sg.[t] + sg.[t + h]
                    sgx.[t] <- sgx.[t] + sgx.[t + h]

                Group.Barrier()
                h <- h / 2

            if t = 0 then
                dbeta.[ch] <- float32 sg.[0]
                dgamma.[ch] <- float32 sgx.[0]

            Group.Barrier()
            ch <- ch + Grid.DimX

    /// dx = γ/√(σ² + eps)/m·(m·g − dbeta − x̂·dgamma).
    static member BatchNormGradApply
        (
            total: int,
            c: int,
            l: int,
            m: int,
            eps: float32,
            g: ArrayView<float32>,
            x: ArrayView<float32>,
            gamma: ArrayView<float32>,
            mean: ArrayView<float32>,
            var: ArrayView<float32>,
            dgamma: ArrayView<float32>,
            dbeta: ArrayView<float32>,
            dx: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let mutable i = Grid.GlobalIndex.X

        while i < total do
            let ch = (i / l) % c
            let inv = 1.0f / XMath.Sqrt(var.[ch] + eps)
            let xhat = (x.[i] - mean.[ch]) * inv
            let k = gamma.[ch] * inv / float32 m
            dx.[i] <- k * (float32 m * g.[i] - dbeta.[ch] - xhat * dgamma.[ch])
            i <- i + stride

    /// d[g, p, r] = Σ_c |x[g, p, c] − y[g, r, c]|, one thread per output.
    static member PairwiseL1
        (total: int, pp: int, rr: int, cc: int, x: ArrayView<float32>, y: ArrayView<float32>, d: ArrayView<float32>)
        =
        let stride = Grid.DimX * Group.DimX
        let mutable o = Grid.GlobalIndex.X

        while o < total do
            let r = o % rr
            let p = (o / rr) % pp
            let g = o / (rr * pp)
            let xb = (g * pp + p) * cc
            let yb = (g * rr + r) * cc
            let mutable acc = 0.0f
            let mutable k = 0

            while k < cc do
                acc <- acc + XMath.Abs(x.[xb + k] - y.[yb + k])
                k <- k + 1

            d.[o] <- acc
            o <- o + stride

    /// dx[g, p, c] = Σ_r gr[g, p, r]·sign(x[g, p, c] − y[g, r, c]), one thread per element of x.
    static member PairwiseL1Backward
        (
            total: int,
            pp: int,
            rr: int,
            cc: int,
            gr: ArrayView<float32>,
            x: ArrayView<float32>,
            y: ArrayView<float32>,
            dx: ArrayView<float32>
        ) =
        let stride = Grid.DimX * Group.DimX
        let mutable o = Grid.GlobalIndex.X

        while o < total do
            let k = o % cc
            let p = (o / cc) % pp
            let g = o / (cc * pp)
            let xv = x.[o]
            let mutable acc = 0.0f
            let mutable r = 0

            while r < rr do
                let diff = xv - y.[(g * rr + r) * cc + k]

                let s =
                    if diff > 0.0f then 1.0f
                    elif diff < 0.0f then -1.0f
                    else 0.0f

                acc <- acc + gr.[(g * pp + p) * rr + r] * s
                r <- r + 1

            dx.[o] <- acc
            o <- o + stride

    // ------------------------------------------------------------------ random numbers

    /// Random.uniform at float32: element j = (w[j] >> 8)·2⁻²⁴ of the key's sampling stream w.
    static member PhiloxUniform(n: int, k0: uint32, k1: uint32, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable j = Grid.GlobalIndex.X

        while j < n do
            let w = DeviceRandom.philoxWord k0 k1 (int64 (j / 4)) (j % 4)
            y.[j] <- float32 (w >>> 8) * 5.9604644775390625e-08f
            j <- j + stride

    /// Random.bernoulli at float32: element j = 1 when w[j] < p·2³² (`threshold`), else 0.
    static member PhiloxBernoulli(n: int, k0: uint32, k1: uint32, threshold: float, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let mutable j = Grid.GlobalIndex.X

        while j < n do
            let w = DeviceRandom.philoxWord k0 k1 (int64 (j / 4)) (j % 4)
            y.[j] <- if float w < threshold then 1.0f else 0.0f
            j <- j + stride

    /// Random.normal at float32: pair p = √(−2 log u)·(cos 2πv, sin 2πv) with u = (w[2p] + 1)·2⁻³²
    /// and v from w[2p+1] (Box–Muller in float64, rounded), one pair per thread.
    static member PhiloxNormal(n: int, k0: uint32, k1: uint32, y: ArrayView<float32>) =
        let stride = Grid.DimX * Group.DimX
        let pairs = (n + 1) / 2
        let mutable p = Grid.GlobalIndex.X

        while p < pairs do
            let block = int64 (p / 2)
            let first = 2 * (p % 2)
            let w0 = DeviceRandom.philoxWord k0 k1 block first
            let w1 = DeviceRandom.philoxWord k0 k1 block (first + 1)
            let u = float (uint64 w0 + 1UL) * 2.3283064365386962890625e-10
            let angle = uint64 w1 <<< 21
            let r = System.Math.Sqrt(-2.0 * DeviceRandom.log u)
            let e = 2 * p
            y.[e] <- float32 (r * DeviceRandom.sinCos2Pi angle false)

            if e + 1 < n then
                y.[e + 1] <- float32 (r * DeviceRandom.sinCos2Pi angle true)

            p <- p + stride
