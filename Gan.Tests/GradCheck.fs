/// A float64 gradient checker: reverse-mode gradients (Autodiff) against central finite
/// differences, elementwise with a combined tolerance, plus FsCheck generators of shapes
/// (random ranks, broadcast-compatible tuples) and of data kept away from the points where the
/// op under test is not differentiable.
module GradCheck

open System
open FsCheck
open FsCheck.FSharp
open Gan.Functional

// ------------------------------------------------------------------------------ tolerance

/// Elementwise acceptance: |analytic − numeric| ≤ Atol + Rtol·|numeric|.
type Tolerance = { Atol: float; Rtol: float }

/// The default tolerance. Central differences with step 1e-6 (relative to |x| when |x| > 1) in
/// float64 have a truncation error of ~h²·f''' ≈ 1e-12 and a rounding error of ~ε·|f|/h ≈ 1e-10·|f|,
/// so for the small, O(1) problems generated here the numeric gradient is good to ~1e-8; 1e-6 +
/// 1e-5·|n| leaves room for that while any wrong rule (a missing factor, a flipped sign, a
/// broadcast summed the wrong way) misses by orders of magnitude more.
let tolerance = { Atol = 1e-6; Rtol = 1e-5 }

/// A looser tolerance for functions whose numeric derivative is itself computed through a nested
/// gradient (second-order checks): the inner gradient is exact, but the outer finite difference
/// sees a longer chain of roundings.
let looseTolerance = { Atol = 1e-5; Rtol = 1e-4 }

/// The finite-difference step, relative to max(1, |xᵢ|).
let step = 1e-6

/// Raised when an analytic gradient disagrees with finite differences.
exception GradCheckFailed of string with
    override this.Message = this.Data0

/// None when every element agrees within `tol`; otherwise a message listing the worst (up to 6)
/// disagreeing elements with their analytic and numeric values.
let compareArrays (tol: Tolerance) (what: string) (analytic: float[]) (numeric: float[]) : string option =
    if analytic.Length <> numeric.Length then
        Some(sprintf "%s: %d analytic vs %d numeric elements" what analytic.Length numeric.Length)
    else
        let bad =
            Array.init analytic.Length (fun i ->
                let a, n = analytic.[i], numeric.[i]
                let excess = abs (a - n) - (tol.Atol + tol.Rtol * abs n)

                i,
                a,
                n,
                (if Double.IsNaN a || Double.IsNaN n then
                     infinity
                 else
                     excess))
            |> Array.filter (fun (_, _, _, e) -> e > 0.0)
            |> Array.sortByDescending (fun (_, _, _, e) -> e)

        if bad.Length = 0 then
            None
        else
            let lines =
                bad
                |> Array.truncate 6
                |> Array.map (fun (i, a, n, _) -> sprintf "  [%d] analytic %.10g numeric %.10g" i a n)

            Some(
                sprintf
                    "%s: %d of %d elements disagree (atol %g, rtol %g):\n%s"
                    what
                    bad.Length
                    analytic.Length
                    tol.Atol
                    tol.Rtol
                    (String.Join("\n", lines))
            )

// ------------------------------------------------------------------------------ finite differences

/// ∂f/∂xᵢ for every element by central differences: (f(x + hᵢeᵢ) − f(x − hᵢeᵢ)) / (2hᵢ), with f
/// evaluated on constant float64 tensors (no differentiation involved).
let numericGrad (f: Tensor -> Tensor) (x: Tensor) : float[] =
    if Tensor.dtype x <> Float64 then
        invalidArg "x" "numericGrad needs a float64 input"

    let shape = Tensor.shape x
    let data = Tensor.toArray64 x

    let at (i: int) (v: float) =
        let d = Array.copy data
        d.[i] <- v
        Tensor.item (f (Tensor.ofArray64 shape d))

    Array.init data.Length (fun i ->
        let h = step * max 1.0 (abs data.[i])
        let xp, xm = data.[i] + h, data.[i] - h
        (at i xp - at i xm) / (xp - xm))

/// Checks Autodiff.grad f x (f scalar-valued) against finite differences; throws GradCheckFailed.
let checkGradWith (tol: Tolerance) (f: Tensor -> Tensor) (x: Tensor) =
    let g = Autodiff.grad f x

    if Tensor.shape g <> Tensor.shape x then
        raise (
            GradCheckFailed(sprintf "gradient shape %A differs from input shape %A" (Tensor.shape g) (Tensor.shape x))
        )

    if Tensor.dtype g <> Tensor.dtype x then
        raise (GradCheckFailed(sprintf "gradient dtype %A differs from input dtype %A" g.DType x.DType))

    match compareArrays tol "d/dx" (Tensor.toArray64 g) (numericGrad f x) with
    | Some msg -> raise (GradCheckFailed msg)
    | None -> ()

/// <see cref="checkGradWith"/> at the default tolerance.
let checkGrad f x = checkGradWith tolerance f x

/// Checks every gradient of Autodiff.valueAndGrads f ps against finite differences in that
/// parameter (the others held fixed); throws GradCheckFailed naming each failing parameter.
let checkGradsWith (tol: Tolerance) (f: Map<string, Tensor> -> Tensor) (ps: Map<string, Tensor>) =
    let _, grads = Autodiff.valueAndGrads f ps

    let failures =
        ps
        |> Map.toList
        |> List.choose (fun (name, p) ->
            let g = grads.[name]

            if Tensor.shape g <> Tensor.shape p then
                Some(sprintf "d/d%s: gradient shape %A differs from %A" name (Tensor.shape g) (Tensor.shape p))
            else
                let numeric = numericGrad (fun v -> f (Map.add name v ps)) p
                compareArrays tol ("d/d" + name) (Tensor.toArray64 g) numeric)

    if not failures.IsEmpty then
        raise (GradCheckFailed(String.Join("\n", failures)))

/// <see cref="checkGradsWith"/> at the default tolerance.
let checkGrads f ps = checkGradsWith tolerance f ps

// ------------------------------------------------------------------------------ random weighting

/// Fixed pseudo-random weights for `count` outputs from `seed`: ±[0.5, 1.5], so no output's
/// gradient is scaled away and no two outputs can cancel systematically.
let weightValues (seed: int) (count: int) =
    let r = Random(seed)

    Array.init count (fun _ ->
        let m = 0.5 + r.NextDouble()
        if r.Next 2 = 0 then -m else m)

/// The constant weight tensor for an output `y` (same shape and dtype).
let weightsFor (seed: int) (y: Tensor) =
    Tensor.ofArray64 (Tensor.shape y) (weightValues seed (Tensor.numel y))
    |> Tensor.cast (Tensor.dtype y)

/// Reduces a tensor-valued f to the scalar sum(f(x) ⊙ R) with R fixed by `seed` and the output's
/// shape, so the gradient of the result checks every output element's gradient at once.
let weighted (seed: int) (f: 'a -> Tensor) : 'a -> Tensor =
    fun x ->
        let y = f x
        Tensor.sum (y * weightsFor seed y)

/// Checks a tensor-valued f of one input through <see cref="weighted"/>.
let checkOutput (seed: int) (f: Tensor -> Tensor) (x: Tensor) = checkGrad (weighted seed f) x

/// Checks a tensor-valued f of named inputs through <see cref="weighted"/>.
let checkOutputs (seed: int) (f: Map<string, Tensor> -> Tensor) (ps: Map<string, Tensor>) =
    checkGrads (weighted seed f) ps

// ------------------------------------------------------------------------------ data

/// How to draw test values.
type Values =
    /// Uniform in [−2, 2].
    | Smooth
    /// Uniform in [0.5, 2] (log, sqrt, divisors, the base of pow).
    | Positive
    /// ±[0.2, 2]: away from the kinks of abs, relu, sign, leakyRelu at 0.
    | NonZero
    /// Pairwise distinct values in [−2, 2] at least ~1/n apart (no ties for max / maxPool).
    | Distinct
    /// Values near multiples of 0.2 (k·0.2 ± 0.02), in [−2, 2].
    | GridA
    /// Values near odd multiples of 0.1 (k·0.2 + 0.1 ± 0.02): always ≥ 0.06 away from any GridA
    /// value, so maximum/minimum of a GridA and a GridB tensor never tie.
    | GridB

/// `n` values of the given kind from `seed` (System.Random: deterministic for a seed).
let values (kind: Values) (seed: int) (n: int) : float[] =
    let r = Random(seed)
    let u lo hi = lo + (hi - lo) * r.NextDouble()

    match kind with
    | Smooth -> Array.init n (fun _ -> u -2.0 2.0)
    | Positive -> Array.init n (fun _ -> u 0.5 2.0)
    | NonZero ->
        Array.init n (fun _ ->
            let m = u 0.2 2.0
            if r.Next 2 = 0 then -m else m)
    | Distinct ->
        let perm = Array.init n id |> Array.sortBy (fun _ -> r.Next())
        let spacing = 4.0 / float (max n 1)

        perm
        |> Array.map (fun p -> -2.0 + spacing * (float p + 0.25 + 0.5 * r.NextDouble()))
    | GridA -> Array.init n (fun _ -> 0.2 * float (r.Next(-10, 10)) + u -0.02 0.02)
    | GridB -> Array.init n (fun _ -> 0.2 * float (r.Next(-10, 10)) + 0.1 + u -0.02 0.02)

/// Moves every value closer than `gap` to one of `points` to `point ± 2·gap`.
let awayFrom (points: float[]) (gap: float) (xs: float[]) =
    xs
    |> Array.map (fun v ->
        match points |> Array.tryFind (fun p -> abs (v - p) < gap) with
        | Some p -> if v >= p then p + 2.0 * gap else p - 2.0 * gap
        | None -> v)

/// A float64 tensor of `shape` with values of `kind` from `seed`.
let tensor (kind: Values) (seed: int) (shape: int[]) =
    Tensor.ofArray64 shape (values kind seed (Shape.numel shape))

// ------------------------------------------------------------------------------ shape generators

/// The largest tensor the generators produce: finite differences cost two evaluations per element.
let maxNumel = 48

/// A dimension: 1 a quarter of the time (to exercise size-1 axes), else 2..4.
let dimGen = Gen.frequency [ 1, Gen.constant 1; 3, Gen.choose (2, 4) ]

/// A shape of rank minRank..maxRank with at most maxNumel elements.
let shapeGenR (minRank: int) (maxRank: int) =
    gen {
        let! rank = Gen.choose (minRank, maxRank)
        let! dims = Gen.arrayOfLength rank dimGen
        return dims
    }
    |> Gen.filter (fun s -> Shape.numel s <= maxNumel)

/// A shape of rank 0..4.
let shapeGen = shapeGenR 0 4

/// `count` shapes that broadcast together: a common shape, from which each operand drops a random
/// number of leading axes and sets random remaining axes to 1 (so [3,1] with [1,4], [4] with
/// [2,3,4], [] with anything all occur).
let broadcastShapesGen (count: int) =
    gen {
        let! full = shapeGenR 1 4

        let derive =
            gen {
                let! drop = Gen.frequency [ 1, Gen.constant 0; 1, Gen.choose (0, full.Length) ]
                let kept = full.[drop..]
                let! ones = Gen.arrayOfLength kept.Length (Gen.elements [ false; true ])
                return Array.map2 (fun d one -> if one then 1 else d) kept ones
            }

        let! shapes = Gen.arrayOfLength count derive
        return shapes
    }

/// A pair of broadcast-compatible shapes.
let broadcastPairGen = broadcastShapesGen 2 |> Gen.map (fun s -> s.[0], s.[1])

/// A seed for `values`.
let seedGen = Gen.choose (0, Int32.MaxValue - 1)

/// A random subset of the axes 0..rank−1, each written as a positive or a negative axis.
let axesGen (rank: int) =
    gen {
        let! keep = Gen.arrayOfLength rank (Gen.elements [ true; false ])
        let chosen = Array.init rank id |> Array.filter (fun a -> keep.[a])
        let! negative = Gen.arrayOfLength chosen.Length (Gen.elements [ true; false ])
        return Array.map2 (fun a neg -> if neg then a - rank else a) chosen negative
    }

/// Fails with the first disagreeing gradient of `got` against `expected` (same names), labelled.
let assertGradsClose (tol: Tolerance) (label: string) (got: Map<string, Tensor>) (expected: Map<string, Tensor>) =
    for KeyValue(name, g) in got do
        match
            compareArrays tol (sprintf "%s, d/d%s" label name) (Tensor.toArray64 g) (Tensor.toArray64 expected.[name])
        with
        | Some msg -> failwith msg
        | None -> ()
