/// Tests of the counter-based Philox PRNG (Gan.Functional.Random): known-answer vectors of the
/// block function, determinism and stream layout, independence of split/foldIn children, and the
/// moments of every sampler in both dtypes. All keys are fixed, so every test is deterministic;
/// statistical tolerances are ~5 standard errors of the sample size used.
module RandomTests

open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

let private dtypes = [ Float32; Float64 ]

let private values (t: RawTensor) = RawTensor.toFloat64Array t

let private mean (a: float[]) = Array.average a

/// Central moment of order k about the sample mean.
let private centralMoment k (a: float[]) =
    let m = mean a
    let mutable s = 0.0

    for x in a do
        s <- s + pown (x - m) k

    s / float a.Length

let private variance (a: float[]) = centralMoment 2 a

let private skewness (a: float[]) = centralMoment 3 a / (variance a ** 1.5)

let private excessKurtosis (a: float[]) =
    centralMoment 4 a / (variance a * variance a) - 3.0

/// Pearson sample correlation of two equally long samples.
let private correlation (a: float[]) (b: float[]) =
    let ma = mean a
    let mb = mean b
    let mutable sab = 0.0
    let mutable saa = 0.0
    let mutable sbb = 0.0

    for i in 0 .. a.Length - 1 do
        let da = a.[i] - ma
        let db = b.[i] - mb
        sab <- sab + da * db
        saa <- saa + da * da
        sbb <- sbb + db * db

    sab / sqrt (saa * sbb)

/// Fraction of the sample satisfying `pred`.
let private fraction pred (a: float[]) =
    float (a |> Array.filter pred |> Array.length) / float a.Length

let private near (what: string) (expected: float) (tol: float) (actual: float) =
    Assert.True(
        abs (actual - expected) <= tol,
        sprintf "%s: expected %g +- %g, got %g (off by %g)" what expected tol actual (actual - expected)
    )

let private hex (words: uint32[]) =
    words |> Array.map (sprintf "%08x") |> String.concat " "

/// The standard-normal CDF at 1 and 2 (Abramowitz & Stegun table 26.1).
let private phi1 = 0.8413447460685429

let private phi2 = 0.9772498680518208

/// Variance of N(0, 1) truncated to [-2, 2]: 1 - 2 * 2 phi(2) / (Phi(2) - Phi(-2)).
let private truncVariance =
    let pdf2 = exp (-2.0) / sqrt (2.0 * System.Math.PI)
    1.0 - 4.0 * pdf2 / (2.0 * phi2 - 1.0)

/// Any 64-bit seed, with small seeds (0, 1, 2, ...) as likely as large ones.
let private seedGen =
    Gen.oneof [
        Gen.choose (0, 1000) |> Gen.map uint64
        gen {
            let! hi = Gen.choose64 (0L, 0xFFFFFFFFL)
            let! lo = Gen.choose64 (0L, 0xFFFFFFFFL)
            return (uint64 hi <<< 32) ||| uint64 lo
        }
    ]

// ---------------------------------------------------------------------------------------------
// Philox-4x32-10 known answers and stream layout
// ---------------------------------------------------------------------------------------------

// Known-answer vectors from Random123 (D. E. Shaw Research), file tests/kat_vectors, the three
// "philox4x32 10" lines. Columns: counter (4 words), key (2 words), expected output (4 words):
//   philox4x32 10 00000000 00000000 00000000 00000000 00000000 00000000   6627e8d5 e169c58d bc57ac4c 9b00dbd8
//   philox4x32 10 ffffffff ffffffff ffffffff ffffffff ffffffff ffffffff   408f276d 41c83b0e a20bc7c6 6d5451fd
//   philox4x32 10 243f6a88 85a308d3 13198a2e 03707344 a4093822 299f31d0   d16cfe09 94fdcceb 5001e420 24126ea1
[<Fact>]
let ``Philox-4x32-10 matches the Random123 known-answer vectors`` () =
    let cases = [
        [| 0u; 0u; 0u; 0u |], (0u, 0u), [| 0x6627e8d5u; 0xe169c58du; 0xbc57ac4cu; 0x9b00dbd8u |]
        [| 0xffffffffu; 0xffffffffu; 0xffffffffu; 0xffffffffu |],
        (0xffffffffu, 0xffffffffu),
        [| 0x408f276du; 0x41c83b0eu; 0xa20bc7c6u; 0x6d5451fdu |]
        [| 0x243f6a88u; 0x85a308d3u; 0x13198a2eu; 0x03707344u |],
        (0xa4093822u, 0x299f31d0u),
        [| 0xd16cfe09u; 0x94fdccebu; 0x5001e420u; 0x24126ea1u |]
    ]

    for counter, (k0, k1), expected in cases do
        let actual = Random.philox4x32 { K0 = k0; K1 = k1 } counter
        Assert.Equal(hex expected, hex actual)

[<Fact>]
let ``bits of a key are Philox over the counters 0, 1, 2 and so on`` () =
    // Seed 0 is the all-zero key, so the first block is the first Random123 vector above.
    let k = Random.key 0UL
    Assert.Equal({ K0 = 0u; K1 = 0u }, k)
    let words = Random.bits k 10
    Assert.Equal("6627e8d5 e169c58d bc57ac4c 9b00dbd8", hex words.[0..3])
    Assert.Equal(hex (Random.philox4x32 k [| 1u; 0u; 0u; 0u |]), hex words.[4..7])
    let block2 = Random.philox4x32 k [| 2u; 0u; 0u; 0u |]
    Assert.Equal(hex block2.[0..1], hex words.[8..9])
    let big = Random.key 0x0123456789ABCDEFUL
    Assert.Equal({ K0 = 0x89ABCDEFu; K1 = 0x01234567u }, big)

[<Fact>]
let ``the same key gives the same numbers`` () =
    let a = Random.key 1234UL
    let b = Random.key 1234UL
    Assert.Equal<uint32[]>(Random.bits a 1001, Random.bits b 1001)
    Assert.Equal<int[]>(Random.permutation a 500, Random.permutation b 500)
    Assert.Equal<int[]>(Random.randInt a -3 9 500, Random.randInt b -3 9 500)

    for dtype in dtypes do
        let shape = [| 7; 11; 13 |]
        Assert.Equal<float[]>(values (Random.uniform a dtype shape), values (Random.uniform b dtype shape))
        Assert.Equal<float[]>(values (Random.normal a dtype shape), values (Random.normal b dtype shape))

        Assert.Equal<float[]>(
            values (Random.truncatedNormal a dtype shape),
            values (Random.truncatedNormal b dtype shape)
        )

        Assert.Equal<float[]>(values (Random.bernoulli a 0.3 dtype shape), values (Random.bernoulli b 0.3 dtype shape))

    Assert.Equal(Random.split a, Random.split b)
    Assert.Equal(Random.foldIn a 17, Random.foldIn b 17)

// These pins were produced by this implementation. They guard two things: that the streams do not
// change silently (saved experiments must replay), and that the Box–Muller path, which uses only
// IEEE basic operations (no platform libm), gives the same bits on every machine.
[<Fact>]
let ``the streams of a fixed key are pinned bit for bit`` () =
    let k = Random.key 42UL
    Assert.Equal("9ceaf053 77f5493b 12bf50ad 5742b3d7", hex (Random.bits k 4))

    let n64 =
        match (Random.normal k Float64 [| 4 |]).Storage with
        | Storage.F64 a -> a |> Array.map System.BitConverter.DoubleToInt64Bits
        | _ -> failwith "expected float64 storage"

    Assert.Equal<int64[]>(
        [|
            0x3FEC5E30062517F2L
            0x3FDC1E68E8D077C7L
            0xBFC40BC8B2401BD4L
            0xBF8C1889D9E86A0FL
        |],
        n64
    )

    let n32 =
        match (Random.normal k Float32 [| 4 |]).Storage with
        | Storage.F32 a -> a |> Array.map System.BitConverter.SingleToUInt32Bits
        | _ -> failwith "expected float32 storage"

    Assert.Equal<uint32[]>([| 0xBF785E5Cu; 0x3E46ACE8u; 0xBF9E28D2u; 0x3FF6433Bu |], n32)

    let t64 =
        values (Random.truncatedNormal k Float64 [| 4 |])
        |> Array.map System.BitConverter.DoubleToInt64Bits

    Assert.Equal<int64[]>(
        [|
            0xBFF4E921363E0BA2L
            0x3FFA95E5F3509B9AL
            0xBFA1CFC3C3FBDD4EL
            0x3FC1874954AD450EL
        |],
        t64
    )

    Assert.Equal<int[]>([| 5; 8; 1; 2; 9; 4; 3; 7; 0; 6 |], Random.permutation k 10)

[<Fact>]
let ``a shorter draw is a prefix of a longer one`` () =
    let k = Random.key 99UL
    let long = Random.bits k 10_001
    Assert.Equal<uint32[]>(long.[0..4096], Random.bits k 4097)
    Assert.Equal<uint32[]>(long.[0..2], Random.bits k 3)

    for dtype in dtypes do
        for sampler in
            [
                Random.uniform k dtype
                Random.normal k dtype
                Random.truncatedNormal k dtype
            ] do
            let all = values (sampler [| 5001 |])
            Assert.Equal<float[]>(all.[0..4094], values (sampler [| 4095 |]))
            Assert.Equal<float[]>(all.[0..0], values (sampler [||]))
            // The shape does not matter, only the element count.
            Assert.Equal<float[]>(all.[0..59], values (sampler [| 3; 4; 5 |]))

[<Fact>]
let ``samplers return the requested shape and dtype`` () =
    let k = Random.key 5UL

    for dtype in dtypes do
        for shape in [ [||]; [| 0 |]; [| 3; 0; 2 |]; [| 1 |]; [| 2; 3; 4; 5 |] ] do
            for t in
                [
                    Random.uniform k dtype shape
                    Random.normal k dtype shape
                    Random.truncatedNormal k dtype shape
                    Random.bernoulli k 0.5 dtype shape
                ] do
                Assert.Equal<int[]>(shape, t.Shape)
                Assert.Equal(dtype, t.DType)
                Assert.Equal(Shape.numel shape, t.Numel)

        Assert.Throws<ShapeMismatchException>(fun () -> Random.uniform k dtype [| 2; -1 |] |> ignore)
        |> ignore

    Assert.Empty(Random.bits k 0)
    Assert.Empty(Random.randInt k 0 5 0)

    Assert.Throws<System.ArgumentException>(fun () -> Random.bits k -1 |> ignore)
    |> ignore

    Assert.Throws<System.ArgumentException>(fun () -> Random.philox4x32 k [| 1u; 2u; 3u |] |> ignore)
    |> ignore

// ---------------------------------------------------------------------------------------------
// Key derivation
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``split keys give different and uncorrelated streams`` () =
    let parent = Random.key 2024UL
    let a, b = Random.split parent
    Assert.NotEqual(a, b)
    Assert.NotEqual(parent, a)
    Assert.NotEqual(parent, b)
    let n = 100_000

    for dtype in dtypes do
        for sampler in [ Random.uniform; Random.normal ] do
            let xs = [ parent; a; b ] |> List.map (fun k -> values (sampler k dtype [| n |]))

            for i in 0..2 do
                for j in i + 1 .. 2 do
                    let r = correlation xs.[i] xs.[j]
                    Assert.True(abs r < 0.02, sprintf "streams %d and %d (%A): correlation %g" i j dtype r)

            // Neighbouring elements of one stream are uncorrelated too.
            let x = xs.[1]
            let r1 = correlation x.[0 .. n - 2] x.[1 .. n - 1]
            Assert.True(abs r1 < 0.02, sprintf "lag-1 correlation %g (%A)" r1 dtype)

[<Fact>]
let ``split gives the first two keys of splitN`` () =
    let k = Random.key 3UL
    let a, b = Random.split k
    Assert.Equal<Key[]>([| a; b |], Random.splitN 2 k)
    Assert.Equal<Key[]>((Random.splitN 10 k).[0..4], Random.splitN 5 k)
    Assert.Empty(Random.splitN 0 k)

    Assert.Throws<System.ArgumentException>(fun () -> Random.splitN -1 k |> ignore)
    |> ignore

[<Fact>]
let ``splitN children are distinct from each other and from foldIn keys`` () =
    let k = Random.key 77UL
    let children = Random.splitN 10_000 k
    Assert.Equal(children.Length, (Array.distinct children).Length)
    Assert.DoesNotContain(k, children)
    let folded = Array.init 10_000 (Random.foldIn k)
    Assert.Empty(Set.intersect (Set.ofArray children) (Set.ofArray folded))

    // Children's streams differ in their first words as well.
    let firstWords =
        children |> Array.map (fun c -> (Random.bits c 2).[0], (Random.bits c 2).[1])

    Assert.Equal(children.Length, (Array.distinct firstWords).Length)

[<Fact>]
let ``foldIn with different data gives different keys`` () =
    let k = Random.key 11UL
    let folded = Array.init 10_000 (fun i -> Random.foldIn k (i - 5000))
    Assert.Equal(folded.Length, (Array.distinct folded).Length)
    Assert.DoesNotContain(k, folded)
    Assert.Equal(Random.foldIn k 3, Random.foldIn k 3)
    Assert.NotEqual(Random.foldIn (Random.key 1UL) 3, Random.foldIn (Random.key 2UL) 3)
    // Consecutive steps give uncorrelated noise.
    let x0 = values (Random.normal (Random.foldIn k 0) Float64 [| 100_000 |])
    let x1 = values (Random.normal (Random.foldIn k 1) Float64 [| 100_000 |])
    let r = correlation x0 x1
    Assert.True(abs r < 0.02, sprintf "correlation %g" r)

[<Fact>]
let ``for any seed split children differ from each other and from the parent stream`` () =
    Prop.forAll (Arb.fromGen seedGen) (fun seed ->
        let parent = Random.key seed
        let a, b = Random.split parent

        let streams =
            [ parent; a; b; Random.foldIn parent 0 ]
            |> List.map (fun k -> hex (Random.bits k 8))

        List.distinct streams = streams)
    |> Prop.check "split children differ from each other and from the parent"

[<Fact>]
let ``for any seed and size a draw is a prefix of a longer draw`` () =
    let caseGen =
        gen {
            let! seed = seedGen
            let! m = Gen.choose (0, 300)
            let! extra = Gen.choose (0, 300)
            return seed, m, m + extra
        }

    Prop.forAll (Arb.fromGen caseGen) (fun (seed, m, n) ->
        let k = Random.key seed

        let prefixOf (f: int -> float[]) =
            let a = f n
            a.[0 .. m - 1] = f m

        prefixOf (fun c -> Random.bits k c |> Array.map float)
        && prefixOf (fun c -> values (Random.normal k Float64 [| c |]))
        && prefixOf (fun c -> values (Random.normal k Float32 [| c |]))
        && prefixOf (fun c -> values (Random.truncatedNormal k Float32 [| c |]))
        && prefixOf (fun c -> values (Random.uniform k Float64 [| c |]))
        && prefixOf (fun c -> Random.randInt k -7 1000 c |> Array.map float))
    |> Prop.check "draws are prefixes of longer draws"

// ---------------------------------------------------------------------------------------------
// Distributions
// ---------------------------------------------------------------------------------------------

let private n = 1_000_000

[<Fact>]
let ``uniform has mean one half and variance one twelfth in [0, 1)`` () =
    for dtype in dtypes do
        let x = values (Random.uniform (Random.key 1UL) dtype [| n |])
        Assert.True(Array.forall (fun v -> v >= 0.0 && v < 1.0) x, sprintf "%A value outside [0, 1)" dtype)
        // SE of the mean sqrt(1/12/n) = 2.9e-4; of the variance sqrt((1/80 - 1/144)/n) = 7.5e-5.
        near (sprintf "%A mean" dtype) 0.5 1.5e-3 (mean x)
        near (sprintf "%A variance" dtype) (1.0 / 12.0) 3.7e-4 (variance x)
        // Each tenth of [0, 1) gets a tenth of the draws: SE sqrt(0.09 / n) = 3e-4.
        for d in 0..9 do
            let lo = float d / 10.0

            near
                (sprintf "%A fraction in [%g, %g)" dtype lo (lo + 0.1))
                0.1
                1.5e-3
                (fraction (fun v -> v >= lo && v < lo + 0.1) x)

[<Fact>]
let ``normal has mean 0, variance 1 and no skew`` () =
    for dtype in dtypes do
        let x = values (Random.normal (Random.key 2UL) dtype [| n |])
        // SEs: mean 1e-3, variance sqrt(2/n) = 1.4e-3, skewness sqrt(6/n) = 2.4e-3,
        // excess kurtosis sqrt(24/n) = 4.9e-3.
        near (sprintf "%A mean" dtype) 0.0 5e-3 (mean x)
        near (sprintf "%A variance" dtype) 1.0 7e-3 (variance x)
        near (sprintf "%A skewness" dtype) 0.0 0.0125 (skewness x)
        near (sprintf "%A excess kurtosis" dtype) 0.0 0.025 (excessKurtosis x)
        // Shape of the distribution: P(|X| > 1) = 0.3173 and P(|X| > 2) = 0.0455.
        near (sprintf "%A P(|X| > 1)" dtype) (2.0 * (1.0 - phi1)) 2.5e-3 (fraction (fun v -> abs v > 1.0) x)
        near (sprintf "%A P(|X| > 2)" dtype) (2.0 * (1.0 - phi2)) 1.1e-3 (fraction (fun v -> abs v > 2.0) x)
        near (sprintf "%A P(X > 0)" dtype) 0.5 2.5e-3 (fraction (fun v -> v > 0.0) x)
        Assert.True(Array.forall System.Double.IsFinite x)

[<Fact>]
let ``truncated normal stays in [-2, 2] with variance 0.7737`` () =
    near "closed-form truncated variance" 0.7737 1e-4 truncVariance

    for dtype in dtypes do
        let x = values (Random.truncatedNormal (Random.key 3UL) dtype [| n |])
        Assert.True(Array.forall (fun v -> v >= -2.0 && v <= 2.0) x, sprintf "%A value outside [-2, 2]" dtype)
        // It reaches the bounds: the truncation is at 2, not tighter.
        Assert.True(Array.max x > 1.99 && Array.min x < -1.99, sprintf "%A does not reach +-2" dtype)
        // SEs: mean sqrt(0.774/n) = 8.8e-4; variance sqrt((E X^4 - var^2)/n) = 9e-4;
        // P(|X| > 1 given |X| <= 2) = 0.2848 with SE 4.5e-4.
        near (sprintf "%A mean" dtype) 0.0 4.5e-3 (mean x)
        near (sprintf "%A variance" dtype) truncVariance 4.5e-3 (variance x)
        near (sprintf "%A skewness" dtype) 0.0 0.0125 (skewness x)
        let pOut1 = 2.0 * (phi2 - phi1) / (2.0 * phi2 - 1.0)
        near (sprintf "%A P(|X| > 1)" dtype) pOut1 2.5e-3 (fraction (fun v -> abs v > 1.0) x)

[<Fact>]
let ``bernoulli has mean p and only the values 0 and 1`` () =
    for dtype in dtypes do
        for p in [ 0.1; 0.5; 0.93 ] do
            let x = values (Random.bernoulli (Random.key 4UL) p dtype [| n |])
            Assert.True(Array.forall (fun v -> v = 0.0 || v = 1.0) x, sprintf "%A p=%g: value not 0 or 1" dtype p)
            near (sprintf "%A p=%g mean" dtype p) p (5.0 * sqrt (p * (1.0 - p) / float n)) (mean x)

        Assert.True(
            values (Random.bernoulli (Random.key 4UL) 0.0 dtype [| 10_000 |])
            |> Array.forall ((=) 0.0)
        )

        Assert.True(
            values (Random.bernoulli (Random.key 4UL) 1.0 dtype [| 10_000 |])
            |> Array.forall ((=) 1.0)
        )

[<Fact>]
let ``long bernoulli and uniform streams follow their formulas over bits, chunk by chunk`` () =
    // 100,003 elements: 25 chunks of the stream, generated on several threads, a vector body
    // and a scalar tail per chunk; every element must be the documented function of bits
    let n = 100_003
    let key = Random.key 17UL
    let w = Random.bits key n

    for p in [ 0.3; 0.75; 1.0 - 1e-12 ] do
        let expected =
            w |> Array.map (fun x -> if float x < p * 4294967296.0 then 1.0 else 0.0)

        for dtype in [ Float32; Float64 ] do
            Assert.Equal<float[]>(expected, values (Random.bernoulli key p dtype [| n |]))

    let u = values (Random.uniform key Float32 [| n |])
    Assert.Equal<float[]>(w |> Array.map (fun x -> float (float32 (x >>> 8) * 5.9604644775390625e-08f)), u)

[<Fact>]
let ``bernoulli rejects p outside [0, 1] naming p`` () =
    for p in [ -0.1; 1.5; nan; infinity ] do
        let ex =
            Assert.Throws<System.ArgumentException>(fun () ->
                Random.bernoulli (Random.key 4UL) p Float32 [| 3 |] |> ignore)

        Assert.Equal("p", ex.ParamName)
        Assert.Contains("[0, 1]", ex.Message)

[<Fact>]
let ``permutation is a permutation`` () =
    let k = Random.key 6UL

    for size in [ 0; 1; 2; 3; 10; 1000; 100_000 ] do
        let perm = Random.permutation k size
        Assert.Equal<int[]>(Array.init size id, Array.sort perm)

    Assert.NotEqual<int[]>(Random.permutation (Random.foldIn k 0) 1000, Random.permutation (Random.foldIn k 1) 1000)

    Assert.Throws<System.ArgumentException>(fun () -> Random.permutation k -1 |> ignore)
    |> ignore

[<Fact>]
let ``permutation is uniform over all orders`` () =
    // 60,000 shuffles of 4 items (one per epoch key). Every one of the 24 orders has probability
    // 1/24 (SE 8.2e-4) and every item lands in every position with probability 1/4 (SE 1.8e-3);
    // this catches Sattolo's variant (no fixed points) and the biased "swap with any" shuffle.
    let k = Random.key 8UL
    let trials = 60_000

    let perms =
        Array.init trials (fun epoch -> Random.permutation (Random.foldIn k epoch) 4)

    let counts = perms |> Array.countBy id
    Assert.Equal(24, counts.Length)

    for order, c in counts do
        near (sprintf "frequency of %A" order) (1.0 / 24.0) 4.1e-3 (float c / float trials)

    for pos in 0..3 do
        for item in 0..3 do
            let f =
                float (perms |> Array.filter (fun p -> p.[pos] = item) |> Array.length)
                / float trials

            near (sprintf "P(item %d at %d)" item pos) 0.25 9e-3 f

[<Fact>]
let ``randInt stays in [low, high) and hits every value equally`` () =
    let k = Random.key 9UL
    let x = Random.randInt k -5 7 n
    Assert.True(Array.forall (fun v -> v >= -5 && v < 7) x)
    let counts = x |> Array.countBy id |> Map.ofArray
    Assert.Equal(12, counts.Count)
    // Each of the 12 values has probability 1/12: SE sqrt((1/12)(11/12)/n) = 2.8e-4.
    for v in -5 .. 6 do
        near (sprintf "frequency of %d" v) (1.0 / 12.0) 1.4e-3 (float counts.[v] / float n)

    Assert.True(Random.randInt k 3 4 100 |> Array.forall ((=) 3))
    let wide = Random.randInt k System.Int32.MinValue System.Int32.MaxValue 100_000
    Assert.True(Array.forall (fun v -> v < System.Int32.MaxValue) wide)
    // Over the full int range, both halves appear about equally often.
    near "fraction negative" 0.5 8e-3 (float (wide |> Array.filter (fun v -> v < 0) |> Array.length) / 100_000.0)

    let ex =
        Assert.Throws<System.ArgumentException>(fun () -> Random.randInt k 5 5 1 |> ignore)

    Assert.Equal("high", ex.ParamName)

    Assert.Throws<System.ArgumentException>(fun () -> Random.randInt k 0 5 -1 |> ignore)
    |> ignore

// ---------------------------------------------------------------------------------------------
// Portable math used by Box–Muller
// ---------------------------------------------------------------------------------------------

[<Fact>]
let ``the portable log agrees with System.Math.Log`` () =
    let words = Random.bits (Random.key 10UL) 200_000

    let inputs = [|
        for i in 0 .. words.Length / 2 - 1 do
            // Box–Muller's u in (0, 1] from 53 bits; also the same bits as (1, 2] and a wide range.
            let x53 = (uint64 (words.[2 * i] >>> 5) <<< 26) ||| uint64 (words.[2 * i + 1] >>> 6)
            let u = float (x53 + 1UL) / 9007199254740992.0
            yield u
            yield 1.0 + u
            yield u * 1e-290
            yield u * 1e300
        yield 1.0
        yield System.Math.Sqrt 2.0
        yield System.Math.Sqrt 0.5
        yield System.Math.E
        yield 1.0 / 9007199254740992.0
        yield System.Double.Epsilon * 4503599627370496.0
    |]

    for x in inputs do
        let expected = System.Math.Log x
        let actual = PortableMath.log x
        // Within 2 ulp of the platform's result.
        let ulp = System.Math.BitIncrement(abs expected) - abs expected

        Assert.True(
            abs (actual - expected) <= 2.0 * ulp,
            sprintf "log %.17g: %.17g vs %.17g (%g ulp)" x actual expected ((actual - expected) / ulp)
        )

[<Fact>]
let ``the portable sine and cosine of 2 pi t agree with System.Math`` () =
    let words = Random.bits (Random.key 12UL) 200_000
    let two53 = 9007199254740992.0

    let inputs = [|
        for i in 0 .. words.Length / 2 - 1 do
            yield (uint64 (words.[2 * i] >>> 5) <<< 26) ||| uint64 (words.[2 * i + 1] >>> 6)
        // Quadrant and octant boundaries, where the reduction switches branches.
        for q in 0UL .. 8UL do
            let b = q <<< 50

            for d in [ 0L; 1L; -1L; 2L; -2L ] do
                let x = int64 b + d

                if x >= 0L && x < (1L <<< 53) then
                    yield uint64 x
        yield (1UL <<< 53) - 1UL
    |]

    for x in inputs do
        let t = 2.0 * System.Math.PI * (float x / two53)
        let struct (s, c) = PortableMath.sinCos2Pi x
        // The reference itself rounds 2 pi t once (|t| < 2 pi, so ~4.4e-16); allow 1e-15.
        Assert.True(
            abs (s - System.Math.Sin t) <= 1e-15,
            sprintf "sin(2 pi %d / 2^53): %.17g vs %.17g" x s (System.Math.Sin t)
        )

        Assert.True(
            abs (c - System.Math.Cos t) <= 1e-15,
            sprintf "cos(2 pi %d / 2^53): %.17g vs %.17g" x c (System.Math.Cos t)
        )

        Assert.True(abs (s * s + c * c - 1.0) <= 4.5e-16)
