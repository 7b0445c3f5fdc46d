namespace Gan.Functional.Kernels

open Gan.Functional

/// Hand-vectorised loops (Vector<float32>) for what TensorPrimitives lacks or does slowly.
module internal SimdLoops =
    open System.Numerics

    // Eigen's rational approximation of tanh on [−9, 9] (generic_fast_tanh_float): a degree-13
    // odd numerator over a degree-6 even denominator, within a few ulp in float32, and much
    // faster than TensorPrimitives.Tanh (docs/performance.md, "Measurements behind the code").
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
