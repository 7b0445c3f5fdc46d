namespace Gan.Functional

/// <summary>
/// A key of the counter-based Philox-4x32-10 generator (Salmon et al., "Parallel Random Numbers:
/// As Easy as 1, 2, 3", SC 2011): two 32-bit words. A key is an immutable value, not a stateful
/// generator; every draw is a pure function of the key (and of the requested size), so the same
/// key gives the same numbers on every machine and with any thread count. Derive independent
/// keys with <c>Random.split</c>, <c>Random.splitN</c> or <c>Random.foldIn</c>, in the style of JAX.
/// </summary>
[<Struct>]
type Key = {
    /// First key word (k0 of Philox).
    K0: uint32
    /// Second key word (k1 of Philox).
    K1: uint32
}

open System
open System.Numerics
open System.Threading.Tasks

/// Elementary functions written with IEEE-754 basic operations only (+, -, *, /, sqrt), so
/// that their results are bit-identical on every platform (System.Math delegates to the C
/// runtime, whose last bits differ between Windows, glibc and macOS). The polynomial
/// coefficients are fdlibm's (e_log.c, k_sin.c, k_cos.c).
module internal PortableMath =

    let inline private bits (hex: int64) =
        System.BitConverter.Int64BitsToDouble hex

    let private ln2Hi = bits 0x3FE62E42FEE00000L
    let private ln2Lo = bits 0x3DEA39EF35793C76L
    let private lg1 = bits 0x3FE5555555555593L
    let private lg2 = bits 0x3FD999999997FA04L
    let private lg3 = bits 0x3FD2492494229359L
    let private lg4 = bits 0x3FCC71C51D8E78AFL
    let private lg5 = bits 0x3FC7466496CB03DEL
    let private lg6 = bits 0x3FC39A09D078C69FL
    let private lg7 = bits 0x3FC2F112DF3E5244L

    let private s1 = bits 0xBFC5555555555549L
    let private s2 = bits 0x3F8111111110F8A6L
    let private s3 = bits 0xBF2A01A019C161D5L
    let private s4 = bits 0x3EC71DE357B1FE7DL
    let private s5 = bits 0xBE5AE5E68A2B9CEBL
    let private s6 = bits 0x3DE5D93A5ACFD57CL

    let private c1 = bits 0x3FA555555555554CL
    let private c2 = bits 0xBF56C16C16C15177L
    let private c3 = bits 0x3EFA01A019CB1590L
    let private c4 = bits 0xBE927E4F809C52ADL
    let private c5 = bits 0x3E21EE9EBDB4B1C4L
    let private c6 = bits 0xBDA8FAE9BE8838D4L

    /// pi * 2^-52: turns a fraction of a quarter turn held in units of 2^-51 into radians.
    let private piOver2Pow52 = System.Math.PI / 4503599627370496.0

    /// Natural logarithm of a positive, normal, finite x (error below 1 ulp). Writes
    /// x = 2^e * m with m in [sqrt(2)/2, sqrt(2)), f = m - 1, s = f / (2 + f) and evaluates
    /// log(1 + f) = 2 atanh(s) with fdlibm's minimax polynomial.
    let log (x: float) =
        let b = System.BitConverter.DoubleToInt64Bits x
        let frac = b &&& 0x000FFFFFFFFFFFFFL
        let mutable e = int (b >>> 52) - 1023
        let mutable m = System.BitConverter.Int64BitsToDouble(frac ||| 0x3FF0000000000000L)

        if frac > 0x6A09E667F3BCDL then
            // m > sqrt 2: use m / 2 (exact) and one more power of two.
            m <- System.BitConverter.Int64BitsToDouble(frac ||| 0x3FE0000000000000L)
            e <- e + 1

        let f = m - 1.0
        let hfsq = 0.5 * f * f
        let s = f / (2.0 + f)
        let z = s * s
        let w = z * z
        let t1 = w * (lg2 + w * (lg4 + w * lg6))
        let t2 = z * (lg1 + w * (lg3 + w * (lg5 + w * lg7)))
        let r = t2 + t1
        let dk = float e
        dk * ln2Hi - ((hfsq - (s * (hfsq + r) + dk * ln2Lo)) - f)

    /// sin and cos of a in [-pi/4, pi/4].
    let inline private kernel (a: float) =
        let z = a * a
        let sr = s2 + z * (s3 + z * (s4 + z * (s5 + z * s6)))
        let sinA = a + (z * a) * (s1 + z * sr)
        let cr = z * (c1 + z * (c2 + z * (c3 + z * (c4 + z * (c5 + z * c6)))))
        let hz = 0.5 * z
        let w = 1.0 - hz
        let cosA = w + (((1.0 - w) - hz) + z * cr)
        struct (sinA, cosA)

    /// struct (sin t, cos t) for t = 2 pi x / 2^53 with x in [0, 2^53): the turn is split exactly
    /// (integer arithmetic) into the nearest quarter turn q and a remainder in [-1/8, 1/8] turn.
    let sinCos2Pi (x: uint64) =
        let k = (x + (1UL <<< 50)) >>> 51
        let rem = int64 x - int64 (k <<< 51)
        let struct (s, c) = kernel (float rem * piOver2Pow52)

        match int (k &&& 3UL) with
        | 0 -> struct (s, c)
        | 1 -> struct (c, -s)
        | 2 -> struct (-s, -c)
        | _ -> struct (-c, s)

/// <summary>
/// A counter-based, splittable pseudo-random number generator in the style of JAX's
/// <c>jax.random</c>, built on Philox-4x32-10 (Random123). There is no global state: every
/// function is a pure function of its <see cref="T:Gan.Functional.Key"/> and arguments, and the
/// numbers are bit-identical on every machine and thread count (integer arithmetic plus
/// IEEE-754 basic operations; no platform math library). As in JAX, a key that has been split
/// should not itself be used for sampling, and two samplers called with the same key see the
/// same underlying bits.
/// </summary>
/// <remarks>
/// Stream layout. <c>bits key n</c> is Philox with key (k0, k1) applied to the 128-bit counters
/// (c0, c1, c2, c3) = (i mod 2^32, i / 2^32, 0, 0) for blocks i = 0, 1, 2, ..., each block giving
/// four words. The samplers read this stream in order, so element j of a draw depends only on
/// the key and j (a shorter draw is a prefix of a longer one). <c>split</c>/<c>foldIn</c> and
/// <c>truncatedNormal</c> use counters whose last word is a distinct non-zero tag, so they never
/// overlap the sampling stream.
/// </remarks>
module Random =

    [<Literal>]
    let private M0 = 0xD2511F53u

    [<Literal>]
    let private M1 = 0xCD9E8D57u

    [<Literal>]
    let private W0 = 0x9E3779B9u

    [<Literal>]
    let private W1 = 0xBB67AE85u

    /// Counter tag (c3) of key splitting: "splt".
    [<Literal>]
    let private SplitTag = 0x73706C74u

    /// Counter tag (c3) of foldIn: "fold".
    [<Literal>]
    let private FoldTag = 0x666F6C64u

    /// Counter tag (c3) of truncatedNormal's per-element candidates: "trnc".
    [<Literal>]
    let private TruncTag = 0x74726E63u

    /// Words generated per chunk by the samplers (a multiple of 4; 16 KiB stays in L1).
    [<Literal>]
    let private Chunk = 4096

    /// 2^-24, exact.
    [<Literal>]
    let private Inv24 = 5.9604644775390625e-08f

    /// 2^-32, exact.
    [<Literal>]
    let private Inv32 = 2.3283064365386962890625e-10

    /// 2^-53, exact.
    [<Literal>]
    let private Inv53 = 1.1102230246251565404236316680908203125e-16

    /// 2^32.
    [<Literal>]
    let private Two32 = 4294967296.0

    /// Philox-4x32-10: ten rounds of the Philox S-box, bumping the key by the Weyl constants
    /// between rounds.
    let inline private philoxCore (k0: uint32) (k1: uint32) (c0: uint32) (c1: uint32) (c2: uint32) (c3: uint32) =
        let mutable x0 = c0
        let mutable x1 = c1
        let mutable x2 = c2
        let mutable x3 = c3
        let mutable ka = k0
        let mutable kb = k1

        for round in 0..9 do
            if round > 0 then
                ka <- ka + W0
                kb <- kb + W1

            let p0 = uint64 M0 * uint64 x0
            let p1 = uint64 M1 * uint64 x2
            let y0 = uint32 (p1 >>> 32) ^^^ x1 ^^^ ka
            let y2 = uint32 (p0 >>> 32) ^^^ x3 ^^^ kb
            x0 <- y0
            x1 <- uint32 p1
            x2 <- y2
            x3 <- uint32 p0

        struct (x0, x1, x2, x3)

    /// Writes `len` words of the sampling stream, starting at block `firstBlock`, into dst.[0..len-1].
    let private fillWords (key: Key) (firstBlock: int64) (dst: uint32[]) (len: int) =
        let k0 = key.K0
        let k1 = key.K1
        let mutable j = 0
        let mutable blk = firstBlock

        while j < len do
            let struct (a, b, c, d) = philoxCore k0 k1 (uint32 blk) (uint32 (blk >>> 32)) 0u 0u

            if j + 4 <= len then
                dst.[j] <- a
                dst.[j + 1] <- b
                dst.[j + 2] <- c
                dst.[j + 3] <- d
            else
                dst.[j] <- a

                if j + 1 < len then
                    dst.[j + 1] <- b

                if j + 2 < len then
                    dst.[j + 2] <- c

            j <- j + 4
            blk <- blk + 1L

    /// Streams the first `totalWords` words of the sampling stream through `body buf start len`,
    /// `Chunk` words at a time (chunks start at multiples of `Chunk`, so groups of 2 or 4 words
    /// never straddle two chunks).
    let private forChunksWith
        (acrossCores: bool)
        (key: Key)
        (totalWords: int64)
        (body: uint32[] -> int64 -> int -> unit)
        =
        let chunks = int ((totalWords + int64 Chunk - 1L) / int64 Chunk)

        let run (buf: uint32[]) (c: int) =
            let start = int64 c * int64 Chunk
            let len = int (min (int64 Chunk) (totalWords - start))
            fillWords key (start / 4L) buf len
            body buf start len

        // chunks are independent (the generator is counter-based): long streams run on every
        // core, one buffer per worker, and give the same numbers as on one
        if acrossCores && chunks >= 16 && Environment.ProcessorCount > 1 then
            Parallel.For(
                0,
                chunks,
                (fun () -> Array.zeroCreate<uint32> Chunk),
                (fun c _ buf ->
                    run buf c
                    buf),
                ignore
            )
            |> ignore
        elif chunks > 0 then
            let buf = Array.zeroCreate<uint32>(int (min totalWords (int64 Chunk)))

            for c in 0 .. chunks - 1 do
                run buf c

    /// Streams the words through `body`, which may only write what its chunk owns.
    let private forChunks key totalWords body = forChunksWith true key totalWords body

    /// The same, chunk after chunk on the calling thread, for bodies that depend on the order.
    let private forChunksInOrder key totalWords body = forChunksWith false key totalWords body

    /// 53 random bits from two words: the high 27 bits of `hi` and the high 26 bits of `lo`.
    let inline private bits53 (hi: uint32) (lo: uint32) =
        (uint64 (hi >>> 5) <<< 26) ||| uint64 (lo >>> 6)

    /// floor(x * range / 2^64) for a 64-bit x and range < 2^32 (Lemire's multiply-shift, bias below 2^-32).
    let inline private bounded (hi: uint32) (lo: uint32) (range: uint64) =
        (uint64 hi * range + ((uint64 lo * range) >>> 32)) >>> 32

    /// Box–Muller: sqrt(-2 log u1) (cos t, sin t) with u1 in (0, 1] and t = 2 pi x / 2^53.
    let inline private boxMuller (u1: float) (angle53: uint64) =
        let r = sqrt (-2.0 * PortableMath.log u1)
        let struct (s, c) = PortableMath.sinCos2Pi angle53
        struct (r * c, r * s)

    /// A standard-normal pair from one Philox block: u1 = (53 bits of words 0,1 + 1) 2^-53 in (0, 1],
    /// angle from 53 bits of words 2,3.
    let inline private normalPair53 (w0: uint32) (w1: uint32) (w2: uint32) (w3: uint32) =
        boxMuller (float (bits53 w0 w1 + 1UL) * Inv53) (bits53 w2 w3)

    let private checkShape op (shape: int[]) =
        Shape.check op shape
        Shape.numel shape

    /// <summary>
    /// The key for an integer seed: k0 = the low 32 bits of <paramref name="seed"/>, k1 = the high
    /// 32 bits. Distinct seeds give distinct keys and hence independent streams.
    /// </summary>
    let key (seed: uint64) : Key = {
        K0 = uint32 seed
        K1 = uint32 (seed >>> 32)
    }

    /// <summary>
    /// The raw Philox-4x32-10 bijection: the four output words for a 4-word counter
    /// <paramref name="counter"/> = [| c0; c1; c2; c3 |] under <paramref name="key"/>, exactly as
    /// Random123's <c>philox4x32_R(10, ctr, key)</c> (multipliers 0xD2511F53, 0xCD9E8D57; Weyl
    /// constants 0x9E3779B9, 0xBB67AE85).
    /// </summary>
    /// <exception cref="T:System.ArgumentException">When the counter does not have 4 words.</exception>
    let philox4x32 (key: Key) (counter: uint32[]) : uint32[] =
        if counter.Length <> 4 then
            invalidArg "counter" "philox4x32: the counter must have exactly 4 words"

        let struct (a, b, c, d) =
            philoxCore key.K0 key.K1 counter.[0] counter.[1] counter.[2] counter.[3]

        [| a; b; c; d |]

    /// <summary>
    /// <paramref name="n"/> child keys: child i is the first two words of Philox(key, counter
    /// (i, 0, 0, "splt")), in the manner of JAX's threefry split (the parent key applied to distinct
    /// counters). Children are independent of each other and of the parent's sampling stream.
    /// </summary>
    /// <exception cref="T:System.ArgumentException">When n is negative.</exception>
    let splitN (n: int) (key: Key) : Key[] =
        if n < 0 then
            invalidArg "n" (sprintf "splitN: the number of keys must be non-negative, got %d" n)

        let out = Array.zeroCreate<Key> n

        for i in 0 .. n - 1 do
            let struct (a, b, _, _) = philoxCore key.K0 key.K1 (uint32 i) 0u 0u SplitTag
            out.[i] <- { K0 = a; K1 = b }

        out

    /// <summary>
    /// Two independent child keys, the same as the two keys of <c>splitN 2 key</c>. Use one to
    /// sample now and keep the other to split again.
    /// </summary>
    let split (key: Key) : Key * Key =
        let k = splitN 2 key
        k.[0], k.[1]

    /// <summary>
    /// JAX's <c>fold_in</c>: a new key from <paramref name="key"/> and an integer (e.g. a step or
    /// epoch number), the first two words of Philox(key, counter (data, 0, 0, "fold")). Distinct
    /// data give distinct, independent keys; the result never coincides with a <c>split</c> child's
    /// derivation.
    /// </summary>
    let foldIn (key: Key) (data: int) : Key =
        let struct (a, b, _, _) = philoxCore key.K0 key.K1 (uint32 data) 0u 0u FoldTag
        { K0 = a; K1 = b }

    /// <summary>
    /// <paramref name="count"/> uniformly distributed 32-bit words: Philox-4x32-10 under
    /// <paramref name="key"/> over the counters (i, 0, 0, 0) for i = 0, 1, 2, ...; block i gives
    /// words 4i .. 4i+3 (the last block is truncated). <c>bits key m</c> is a prefix of
    /// <c>bits key n</c> when m &lt;= n.
    /// </summary>
    /// <exception cref="T:System.ArgumentException">When count is negative.</exception>
    let bits (key: Key) (count: int) : uint32[] =
        if count < 0 then
            invalidArg "count" (sprintf "bits: the count must be non-negative, got %d" count)

        let out = Array.zeroCreate<uint32> count
        fillWords key 0L out count
        out

    /// <summary>
    /// A tensor of the given dtype and <paramref name="shape"/> of independent U[0, 1) values, in
    /// row-major order from the sampling stream w = <c>bits key</c>. Float32: element j =
    /// (w[j] &gt;&gt;&gt; 8) 2^-24 (24 bits, every float32 multiple of 2^-24 in [0, 1)). Float64:
    /// element j = (53 high bits of w[2j], w[2j+1]) 2^-53.
    /// </summary>
    /// <exception cref="T:Gan.Functional.ShapeMismatchException">When a dimension is negative.</exception>
    let uniform (key: Key) (dtype: DType) (shape: int[]) : RawTensor =
        let n = checkShape "uniform" shape

        match dtype with
        | Float32 ->
            let out = Array.zeroCreate<float32> n

            forChunks key (int64 n) (fun buf start len ->
                let o = int start

                for j in 0 .. len - 1 do
                    out.[o + j] <- float32 (buf.[j] >>> 8) * Inv24)

            RawTensor.ofFloat32 (Array.copy shape) out
        | Float64 ->
            let out = Array.zeroCreate<float> n

            forChunks key (2L * int64 n) (fun buf start len ->
                let o = int (start / 2L)

                for j in 0 .. len / 2 - 1 do
                    out.[o + j] <- float (bits53 buf.[2 * j] buf.[2 * j + 1]) * Inv53)

            RawTensor.ofFloat64 (Array.copy shape) out

    /// <summary>
    /// A tensor of independent standard normal N(0, 1) values (Box–Muller), in row-major order
    /// from the sampling stream w = <c>bits key</c>. Elements come in pairs (2p, 2p+1) =
    /// sqrt(-2 log u) (cos 2 pi v, sin 2 pi v) with u in (0, 1] (log 0 never occurs). Float32:
    /// u = (w[2p] + 1) 2^-32 and v = w[2p+1] 2^-32, computed in float64 and rounded (|x| &lt;= 6.67).
    /// Float64: u and v from 53 bits of w[4p], w[4p+1] and of w[4p+2], w[4p+3] (|x| &lt;= 8.58).
    /// </summary>
    /// <exception cref="T:Gan.Functional.ShapeMismatchException">When a dimension is negative.</exception>
    let normal (key: Key) (dtype: DType) (shape: int[]) : RawTensor =
        let n = checkShape "normal" shape
        let pairs = (int64 n + 1L) / 2L

        match dtype with
        | Float32 ->
            let out = Array.zeroCreate<float32> n

            forChunks key (2L * pairs) (fun buf start len ->
                let o = int start

                for p in 0 .. len / 2 - 1 do
                    let u = float (uint64 buf.[2 * p] + 1UL) * Inv32
                    let struct (z0, z1) = boxMuller u (uint64 buf.[2 * p + 1] <<< 21)
                    let e = o + 2 * p
                    out.[e] <- float32 z0

                    if e + 1 < n then
                        out.[e + 1] <- float32 z1)

            RawTensor.ofFloat32 (Array.copy shape) out
        | Float64 ->
            let out = Array.zeroCreate<float> n

            forChunks key (4L * pairs) (fun buf start len ->
                let o = int (start / 2L)

                for p in 0 .. len / 4 - 1 do
                    let q = 4 * p
                    let struct (z0, z1) = normalPair53 buf.[q] buf.[q + 1] buf.[q + 2] buf.[q + 3]
                    let e = o + 2 * p
                    out.[e] <- z0

                    if e + 1 < n then
                        out.[e + 1] <- z1)

            RawTensor.ofFloat64 (Array.copy shape) out

    /// <summary>
    /// A tensor of independent standard normals truncated to [-2, 2] (the density of N(0, 1)
    /// restricted to [-2, 2] and renormalised: mean 0, variance 0.77374), the initialiser of Keras'
    /// <c>TruncatedNormal</c> and PyTorch's <c>trunc_normal_</c> (multiply by a standard deviation
    /// afterwards). Exact rejection with a fixed derivation: elements come in pairs (2p, 2p+1);
    /// attempt a = 0, 1, ... of pair p yields the two Box–Muller candidates (53-bit uniforms) of
    /// Philox(key, counter (p, a, 0, "trnc")), and the pair takes the first two candidates that lie
    /// in [-2, 2], in order. Each pair depends only on the key and its index; Float32 is the
    /// Float64 value rounded.
    /// </summary>
    /// <exception cref="T:Gan.Functional.ShapeMismatchException">When a dimension is negative.</exception>
    let truncatedNormal (key: Key) (dtype: DType) (shape: int[]) : RawTensor =
        let n = checkShape "truncatedNormal" shape
        let out = Array.zeroCreate<float> n
        let k0 = key.K0
        let k1 = key.K1

        for p in 0 .. (n + 1) / 2 - 1 do
            let e = 2 * p
            let need = min 2 (n - e)
            let mutable filled = 0
            let mutable attempt = 0u

            while filled < need do
                let struct (w0, w1, w2, w3) = philoxCore k0 k1 (uint32 p) attempt 0u TruncTag
                let struct (z0, z1) = normalPair53 w0 w1 w2 w3

                if z0 >= -2.0 && z0 <= 2.0 then
                    out.[e + filled] <- z0
                    filled <- filled + 1

                if filled < need && z1 >= -2.0 && z1 <= 2.0 then
                    out.[e + filled] <- z1
                    filled <- filled + 1

                attempt <- attempt + 1u

        match dtype with
        | Float64 -> RawTensor.ofFloat64 (Array.copy shape) out
        | Float32 -> RawTensor.ofFloat32 (Array.copy shape) (Array.map float32 out)

    /// <summary>
    /// A tensor of independent Bernoulli(p) values: element j is 1 when w[j] &lt; p 2^32 and 0
    /// otherwise, for the sampling stream w = <c>bits key</c>, so P(1) = p to within 2^-32
    /// (exactly 0 for p = 0 and 1 for p = 1).
    /// </summary>
    /// <exception cref="T:System.ArgumentException">When p is not in [0, 1] (or is NaN).</exception>
    /// <exception cref="T:Gan.Functional.ShapeMismatchException">When a dimension is negative.</exception>
    let bernoulli (key: Key) (p: float) (dtype: DType) (shape: int[]) : RawTensor =
        if not (p >= 0.0 && p <= 1.0) then
            invalidArg "p" (sprintf "bernoulli: the probability p must lie in [0, 1], got %g" p)

        let n = checkShape "bernoulli" shape
        let threshold = p * Two32

        match dtype with
        | Float32 when p > 0.0 && ceil threshold < Two32 ->
            // w < p·2³² ⟺ w < ⌈p·2³²⌉ for integer w: a branch-free vector compare (the
            // data-dependent branch mispredicted a quarter of the time at p = 0.75)
            let t = Vector<uint32>(uint32 (ceil threshold))
            let out = Array.zeroCreate<float32> n

            forChunks key (int64 n) (fun buf start len ->
                let o = int start
                let w = Vector<uint32>.Count
                let mutable j = 0

                while j + w <= len do
                    let ones = Vector.LessThan(Vector<uint32>(buf, j), t)

                    Vector
                        .ConditionalSelect(Vector.AsVectorInt32 ones, Vector<float32>.One, Vector<float32>.Zero)
                        .CopyTo(out, o + j)

                    j <- j + w

                while j < len do
                    out.[o + j] <- if float buf.[j] < threshold then 1.0f else 0.0f
                    j <- j + 1)

            RawTensor.ofFloat32 (Array.copy shape) out
        | Float32 ->
            // p = 0 or p·2³² rounds up to 2³²: every element is decided by the same test
            let out = Array.zeroCreate<float32> n

            forChunks key (int64 n) (fun buf start len ->
                let o = int start

                for j in 0 .. len - 1 do
                    out.[o + j] <- if float buf.[j] < threshold then 1.0f else 0.0f)

            RawTensor.ofFloat32 (Array.copy shape) out
        | Float64 ->
            let out = Array.zeroCreate<float> n

            forChunks key (int64 n) (fun buf start len ->
                let o = int start

                for j in 0 .. len - 1 do
                    out.[o + j] <- if float buf.[j] < threshold then 1.0 else 0.0)

            RawTensor.ofFloat64 (Array.copy shape) out

    /// <summary>
    /// <paramref name="count"/> independent integers uniform on [low, high): element j =
    /// low + floor(x (high - low) / 2^64) with x the 64-bit number w[2j] 2^32 + w[2j+1] of the
    /// sampling stream w = <c>bits key</c> (bias below 2^-32 for any range).
    /// </summary>
    /// <exception cref="T:System.ArgumentException">When high &lt;= low or count is negative.</exception>
    let randInt (key: Key) (low: int) (high: int) (count: int) : int[] =
        if high <= low then
            invalidArg "high" (sprintf "randInt: the range [low, high) = [%d, %d) is empty" low high)

        if count < 0 then
            invalidArg "count" (sprintf "randInt: the count must be non-negative, got %d" count)

        let range = uint64 (int64 high - int64 low)
        let lo = int64 low
        let out = Array.zeroCreate<int> count

        forChunks key (2L * int64 count) (fun buf start len ->
            let o = int (start / 2L)

            for j in 0 .. len / 2 - 1 do
                out.[o + j] <- int (lo + int64 (bounded buf.[2 * j] buf.[2 * j + 1] range)))

        out

    /// <summary>
    /// A uniformly random permutation of 0 .. n-1 (Fisher–Yates): starting from the identity, for
    /// step s = 0 .. n-2 with i = n-1-s, swap positions i and j = floor(x (i + 1) / 2^64), x the
    /// 64-bit number w[2s] 2^32 + w[2s+1] of the sampling stream w = <c>bits key</c>. Used to
    /// shuffle a dataset each epoch, e.g. with <c>foldIn key epoch</c>.
    /// </summary>
    /// <exception cref="T:System.ArgumentException">When n is negative.</exception>
    let permutation (key: Key) (n: int) : int[] =
        if n < 0 then
            invalidArg "n" (sprintf "permutation: n must be non-negative, got %d" n)

        let perm = Array.init n id

        if n > 1 then
            // Fisher–Yates swaps depend on the ones before them
            forChunksInOrder key (2L * int64 (n - 1)) (fun buf start len ->
                let s0 = int (start / 2L)

                for t in 0 .. len / 2 - 1 do
                    let i = n - 1 - (s0 + t)
                    let j = int (bounded buf.[2 * t] buf.[2 * t + 1] (uint64 (i + 1)))
                    let tmp = perm.[i]
                    perm.[i] <- perm.[j]
                    perm.[j] <- tmp)

        perm
