/// The losses of Gan.Functional.Nn.Losses against their formulas computed directly on arrays:
/// binary cross-entropy (PyTorch's BCELoss with its log clamp at −100, BCEWithLogitsLoss's
/// stable form), the six GAN objectives for D and G, and the gradient penalties (WGAN-GP,
/// Gulrajani et al. 2017; R1, Mescheder et al. 2018) on critics whose input gradient is known.
module LossTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Nn

// ------------------------------------------------------------------------------ helpers

let private f64 (t: Tensor) = Tensor.cast Float64 t

let private vec (xs: float[]) = Tensor.ofArray64 [| xs.Length |] xs

/// An [N, 1] column of logits, as discriminators return.
let private col (xs: float[]) = Tensor.ofArray64 [| xs.Length; 1 |] xs

let private near (tol: float) (what: string) (expected: float) (got: float) =
    if not (abs (expected - got) <= tol * (1.0 + abs expected)) then
        failwithf "%s: expected %.15g, got %.15g" what expected got

let private sigma (x: float) = 1.0 / (1.0 + exp (-x))

/// ln σ(x) and ln(1 − σ(x)) = ln σ(−x), written directly (|x| ≤ 10 here, no overflow).
let private logSigma (x: float) = log (sigma x)

let private mean (xs: float[]) = Array.average xs

/// A local finite-difference checker (central differences, step 1e-6·max(1, |p|), float64;
/// tolerance 1e-6 + 1e-5·|numeric| — rounding ~1e-10·|f|, truncation ~1e-12).
let private gradCheck (what: string) (f: Map<string, Tensor> -> Tensor) (ps: Map<string, Tensor>) =
    let _, analytic = Autodiff.valueAndGrads f ps

    for KeyValue(name, p) in ps do
        let shape = Tensor.shape p
        let data = Tensor.toArray64 p
        let a = Tensor.toArray64 analytic.[name]

        for i in 0 .. data.Length - 1 do
            let h = 1e-6 * max 1.0 (abs data.[i])

            let at (v: float) =
                let d = Array.copy data
                d.[i] <- v
                Tensor.item (f (Map.add name (Tensor.ofArray64 shape d) ps))

            let numeric = (at (data.[i] + h) - at (data.[i] - h)) / (2.0 * h)

            if not (abs (a.[i] - numeric) <= 1e-6 + 1e-5 * abs numeric) then
                failwithf "%s: d/d%s[%d] analytic %.10g, numeric %.10g" what name i a.[i] numeric

/// Arrays of 1..8 values uniform in [lo, hi] (from a seed, so failures replay).
let private valuesGen (lo: float) (hi: float) =
    gen {
        let! n = Gen.choose (1, 8)
        let! seed = Gen.choose (0, Int32.MaxValue)
        let rng = System.Random(seed)
        return Array.init n (fun _ -> lo + (hi - lo) * rng.NextDouble())
    }

// ------------------------------------------------------------------------------ cross-entropy

[<Fact>]
let ``bce is the mean of -(t ln p + (1 - t) ln(1 - p))`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! p = valuesGen 0.01 0.99

                let! t =
                    Gen.arrayOfLength p.Length (Gen.map (fun (k: int) -> float k / 4.0) (Gen.choose (0, 4)))

                return p, t
            }
        ))
        (fun (p, t) ->
            let expected =
                Array.map2 (fun p t -> -(t * log p + (1.0 - t) * log (1.0 - p))) p t |> mean

            near 1e-12 "bce" expected (Tensor.item (Losses.bce (vec p) (vec t))))
    |> Prop.check "bce formula"

[<Fact>]
let ``bce clamps each log at -100 as PyTorch's BCELoss does, so p = 0 or 1 gives at most 100`` () =
    // PyTorch documents: "BCELoss clamps its log function outputs to be greater than or equal to −100"
    let b p t =
        Tensor.item (Losses.bce (Tensor.ofArray [| 1 |] [| p |]) (Tensor.ofArray [| 1 |] [| t |]))

    near 1e-6 "bce(0, 1)" 100.0 (b 0.0f 1.0f)
    near 1e-6 "bce(1, 0)" 100.0 (b 1.0f 0.0f)
    near 1e-6 "bce(1, 1)" 0.0 (b 1.0f 1.0f)
    near 1e-6 "bce(0, 0)" 0.0 (b 0.0f 0.0f)

[<Fact>]
let ``bce has a finite gradient where its log is clamped (p = 0 or 1), as PyTorch's BCELoss does`` () =
    // PyTorch's BCELoss backward is (p − t)/max(p(1 − p), 1e-12): finite at p = 0 and p = 1.
    // The case that matters in practice: σ(20) rounds to 1.0f in float32, and the gradient of
    // bce(σ(x), 1) is σ(x) − 1 ≈ −2e-9, i.e. 0 to float32 precision — it must not be NaN.
    let failures = ResizeArray<string>()

    for dt in [ Float32; Float64 ] do
        for p, t in [ 0.0, 0.0; 0.0, 1.0; 1.0, 0.0; 1.0, 1.0 ] do
            let g =
                Tensor.item (
                    Autodiff.grad (fun p -> Losses.bce p (Tensor.fullAs dt [| 1 |] t)) (Tensor.fullAs dt [| 1 |] p)
                )

            if not (Double.IsFinite g) then
                failures.Add(sprintf "%A: d bce/dp at p = %g, t = %g is %g" dt p t g)

    let x = Tensor.full [| 1 |] 20.0

    let g =
        Tensor.item (Autodiff.grad (fun x -> Losses.bce (Tensor.sigmoid x) (Tensor.ones [| 1 |])) x)

    if not (abs g < 1e-6) then
        failures.Add(sprintf "d bce(σ(x), 1)/dx at x = 20 (float32) is %g, expected σ(20) − 1 ≈ −2e-9" g)

    Assert.True(failures.Count = 0, String.Join("\n", failures))

[<Fact>]
let ``bceWithLogits is the mean of max(x, 0) - x·t + ln(1 + exp(-|x|)) and equals bce of the sigmoid`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! x = valuesGen -10.0 10.0

                let! t =
                    Gen.arrayOfLength x.Length (Gen.map (fun (k: int) -> float k / 4.0) (Gen.choose (0, 4)))

                return x, t
            }
        ))
        (fun (x, t) ->
            // PyTorch's documented stable form of BCEWithLogitsLoss
            let expected =
                Array.map2 (fun x t -> max x 0.0 - x * t + log (1.0 + exp (-(abs x)))) x t
                |> mean

            let got = Tensor.item (Losses.bceWithLogits (vec x) (vec t))
            near 1e-12 "bceWithLogits" expected got
            near 1e-9 "bce(σ(x))" (Tensor.item (Losses.bce (Tensor.sigmoid (vec x)) (vec t))) got
            // its gradient is (σ(x) − t)/N
            let g = Autodiff.grad (fun x -> Losses.bceWithLogits x (vec t)) (vec x)
            let n = float x.Length

            Array.iteri2
                (fun i e a -> near 1e-12 (sprintf "gradient %d" i) e a)
                (Array.map2 (fun x t -> (sigma x - t) / n) x t)
                (Tensor.toArray64 g))
    |> Prop.check "bce with logits formula"

[<Fact>]
let ``bceWithLogits is finite at logits of ±100 and equals the limit formulas`` () =
    // softplus(x) − x·t: at x = 100, t = 0 → 100; t = 1 → ln(1 + e⁻¹⁰⁰) ≈ 3.7e-44; symmetric at −100
    for dt in [ Float32; Float64 ] do
        let l (x: float) (t: float) =
            Tensor.item (Losses.bceWithLogits (Tensor.fullAs dt [| 1 |] x) (Tensor.fullAs dt [| 1 |] t))

        near 1e-7 "(100, 0)" 100.0 (l 100.0 0.0)
        near 1e-7 "(-100, 1)" 100.0 (l -100.0 1.0)
        near 1e-7 "(100, 1)" 0.0 (l 100.0 1.0)
        near 1e-7 "(-100, 0)" 0.0 (l -100.0 0.0)
        near 1e-7 "(100, 0.5)" 50.0 (l 100.0 0.5)
        // and a finite gradient: σ(100) − 0 = 1, σ(−100) − 1 = −1
        let g (x: float) (t: float) =
            Tensor.item (
                Autodiff.grad
                    (fun x -> Losses.bceWithLogits x (Tensor.fullAs dt [| 1 |] t))
                    (Tensor.fullAs dt [| 1 |] x)
            )

        near 1e-7 "d(100, 0)" 1.0 (g 100.0 0.0)
        near 1e-7 "d(-100, 1)" -1.0 (g -100.0 1.0)
        near 1e-7 "d(100, 1)" 0.0 (g 100.0 1.0)
        Assert.True(Double.IsFinite(g -100.0 0.0))

    let big = Tensor.ofArray [| 4; 1 |] [| 1000.0f; -1000.0f; 80.0f; -80.0f |]
    Assert.True(Double.IsFinite(Tensor.item (Losses.bceWithLogitsLabel big 1.0)))
    near 1e-6 "label 1" ((0.0 + 1000.0 + 0.0 + 80.0) / 4.0) (Tensor.item (Losses.bceWithLogitsLabel big 1.0))

// ------------------------------------------------------------------------------ GAN objectives

/// The discriminator's loss of each objective, from its paper, on arrays of logits.
let private expectedD (kind: GanLoss) (r: float[]) (f: float[]) =
    match kind with
    // Goodfellow et al.: D maximises E ln D(x) + E ln(1 − D(G(z))), i.e. minimises the negation
    | Minimax
    | NonSaturating -> -(mean (Array.map logSigma r)) - mean (Array.map (fun f -> logSigma -f) f)
    // WGAN: the critic maximises E D(x) − E D(G(z))
    | Wasserstein -> mean f - mean r
    // LSGAN (Mao et al.) with a = 0, b = 1: ½E(D(x) − 1)² + ½E D(G(z))²
    | LeastSquares ->
        0.5 * mean (Array.map (fun r -> (r - 1.0) ** 2.0) r)
        + 0.5 * mean (Array.map (fun f -> f * f) f)
    // hinge: E max(0, 1 − D(x)) + E max(0, 1 + D(G(z)))
    | Hinge ->
        mean (Array.map (fun r -> max 0.0 (1.0 - r)) r)
        + mean (Array.map (fun f -> max 0.0 (1.0 + f)) f)
    // RaGAN (Jolicoeur-Martineau): −E ln σ(C(x) − E C(x̃)) − E ln(1 − σ(C(x̃) − E C(x)))
    | RelativisticAverage ->
        let mr, mf = mean r, mean f

        -(mean (Array.map (fun r -> logSigma (r - mf)) r))
        - mean (Array.map (fun f -> logSigma (-(f - mr))) f)

/// The generator's loss of each objective.
let private expectedG (kind: GanLoss) (r: float[]) (f: float[]) =
    match kind with
    // saturating: G minimises E ln(1 − D(G(z)))
    | Minimax -> mean (Array.map (fun f -> logSigma -f) f)
    // non-saturating: G maximises E ln D(G(z))
    | NonSaturating -> -(mean (Array.map logSigma f))
    | Wasserstein
    | Hinge -> -(mean f)
    // LSGAN with c = 1: ½E(D(G(z)) − 1)²
    | LeastSquares -> 0.5 * mean (Array.map (fun f -> (f - 1.0) ** 2.0) f)
    // RaGAN: the roles of real and fake swapped
    | RelativisticAverage ->
        let mr, mf = mean r, mean f

        -(mean (Array.map (fun f -> logSigma (f - mr)) f))
        - mean (Array.map (fun r -> logSigma (-(r - mf))) r)

let private allLosses = [
    Minimax
    NonSaturating
    Wasserstein
    LeastSquares
    Hinge
    RelativisticAverage
]

[<Fact>]
let ``every GAN loss for D and for G matches its formula on random logits`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! r = valuesGen -5.0 5.0
                let! f = valuesGen -5.0 5.0
                return r, f
            }
        ))
        (fun (r, f) ->
            for kind in allLosses do
                near
                    1e-12
                    (sprintf "%A D" kind)
                    (expectedD kind r f)
                    (Tensor.item (Losses.discriminator kind (col r) (col f)))

                near
                    1e-12
                    (sprintf "%A G" kind)
                    (expectedG kind r f)
                    (Tensor.item (Losses.generator kind (col r) (col f))))
    |> Prop.check "gan losses"

[<Fact>]
let ``GAN losses take known values at hand-picked logits`` () =
    // logits 0 mean D = ½: D loss = 2 ln 2 for BCE objectives; hinge 1 + 1; LSGAN ½·1 + 0
    let z = col [| 0.0; 0.0 |]
    near 1e-12 "NS D" (2.0 * log 2.0) (Tensor.item (Losses.discriminator NonSaturating z z))
    near 1e-12 "NS G" (log 2.0) (Tensor.item (Losses.generator NonSaturating z z))
    near 1e-12 "minimax G" (-(log 2.0)) (Tensor.item (Losses.generator Minimax z z))
    near 1e-12 "hinge D" 2.0 (Tensor.item (Losses.discriminator Hinge z z))
    near 1e-12 "LS D" 0.5 (Tensor.item (Losses.discriminator LeastSquares z z))
    near 1e-12 "RaGAN D" (2.0 * log 2.0) (Tensor.item (Losses.discriminator RelativisticAverage z z))
    // WGAN: real scores 3, 1 and fake −1, 1 → E f − E r = 0 − 2
    near 1e-12 "W D" -2.0 (Tensor.item (Losses.discriminator Wasserstein (col [| 3.0; 1.0 |]) (col [| -1.0; 1.0 |])))

// ------------------------------------------------------------------------------ penalties

/// The linear critic D(x) = Σ w·x over every non-batch axis: ∇ₓD = w for every example.
let private linearCritic (w: Tensor) (x: Tensor) =
    let s = Tensor.shape x
    Tensor.sumAxes (Array.init (s.Length - 1) (fun i -> i + 1)) false (x * Tensor.unsqueeze 0 w)

let private scaledTo (norm: float) (t: Tensor) =
    t * (norm / sqrt (Tensor.item (Tensor.sum (t * t))))

[<Fact>]
let ``the WGAN-GP penalty of a linear critic with norm 1 is 0 and with norm 2 is 1`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! shape = Gen.elements [ [| 3 |]; [| 2; 3 |]; [| 1; 4; 4 |] ]
                let! n = Gen.choose (1, 4)
                let! seed = Gen.choose (0, 100000)
                return shape, n, seed
            }
        ))
        (fun (shape, n, seed) ->
            let k = Random.splitN 4 (Random.key (uint64 seed))
            let w = f64 (Tensor.randn k.[0] shape)
            let real = f64 (Tensor.randn k.[1] (Array.append [| n |] shape))
            let fake = f64 (Tensor.randn k.[2] (Array.append [| n |] shape))
            // (‖w‖ − 1)² at every interpolate: 0 for ‖w‖ = 1, 1 for ‖w‖ = 2, 4 for ‖w‖ = 3
            for norm, expected in [ 1.0, 0.0; 2.0, 1.0; 3.0, 4.0 ] do
                let critic = linearCritic (scaledTo norm w)

                near
                    1e-9
                    (sprintf "GP at ‖w‖ = %g" norm)
                    expected
                    (Tensor.item (Losses.gradientPenalty critic k.[3] real fake))
                // R1 = E‖∇D(x)‖² = ‖w‖²
                near 1e-9 (sprintf "R1 at ‖w‖ = %g" norm) (norm * norm) (Tensor.item (Losses.r1Penalty critic real)))
    |> Prop.check "penalties of a linear critic"

[<Fact>]
let ``the gradient penalty evaluates the critic at per-example interpolates between real and fake`` () =
    // D(x) = ½ Σ x²: ∇D(x̂) = x̂, so the penalty is mean((‖x̂ᵢ‖ − 1)²) with x̂ᵢ = αᵢxᵢ + (1 − αᵢ)x̃ᵢ.
    // With real = fake every interpolate is the same point whatever α: ‖x‖ = 3 gives (3 − 1)² = 4.
    let critic (x: Tensor) =
        Tensor.sumAxes [| 1 |] false (x * x) * 0.5

    let x = Tensor.ofArray64 [| 2; 2 |] [| 3.0; 0.0; 0.0; -3.0 |]
    near 1e-9 "GP" 4.0 (Tensor.item (Losses.gradientPenalty critic (Random.key 1UL) x x))
    // with real ≠ fake, α ∈ [0, 1) keeps ‖x̂‖ between the two norms: real 1·e₁, fake 3·e₁ →
    // ‖x̂‖ = 3 − 2α ∈ (1, 3] and the penalty (2 − 2α)² lies in (0, 4]
    let real = Tensor.ofArray64 [| 3; 2 |] [| 1.0; 0.0; 1.0; 0.0; 1.0; 0.0 |]
    let fake = real * 3.0
    let gp = Tensor.item (Losses.gradientPenalty critic (Random.key 2UL) real fake)
    Assert.True(gp > 0.0 && gp <= 4.0, sprintf "gp %g" gp)
    // the same key gives the same α
    Assert.Equal(gp, Tensor.item (Losses.gradientPenalty critic (Random.key 2UL) real fake))

[<Fact>]
let ``the gradient penalty draws one α per example, shared by all of its features`` () =
    // a critic that records where it is evaluated: x̂ᵢ = αᵢxᵢ + (1 − αᵢ)x̃ᵢ, so with xᵢ = 1 and
    // x̃ᵢ = 0 everywhere x̂ᵢ is αᵢ in every feature (Gulrajani et al.: ε ~ U[0, 1] per sample)
    let mutable seen: float[] = [||]

    let recording (x: Tensor) =
        seen <- Tensor.toArray64 x
        Tensor.sumAxes [| 1; 2 |] false x

    let n, f = 64, 6

    let real =
        Tensor.onesLike (Tensor.ofArray64 [| n; 2; 3 |] (Array.zeroCreate (n * f)))

    let fake = Tensor.zerosLike real
    Losses.gradientPenalty recording (Random.key 3UL) real fake |> ignore
    let alphas = Array.init n (fun i -> seen.[i * f])

    for i in 0 .. n - 1 do
        for j in 0 .. f - 1 do
            Assert.Equal(alphas.[i], seen.[i * f + j])

    Assert.True(alphas |> Array.forall (fun a -> a >= 0.0 && a < 1.0), "α in [0, 1)")
    Assert.True((Array.distinct alphas).Length > n / 2, sprintf "α should differ between examples: %A" alphas)

/// A small critic (Linear 3 → 4 → tanh → Linear 4 → 1) built from the library's layers.
let private critic =
    Layer.sequential [ Layers.linear 3 4; Layers.tanh; Layers.linear 4 1 ]

let private criticParams =
    (critic.Init(Random.key 5UL)).Params |> Map.map (fun _ t -> f64 t)

let private criticOf (ps: Map<string, Tensor>) (x: Tensor) =
    fst (
        critic.Apply
            { Params = ps; State = Map.empty }
            {
                Mode = Train
                Key = Random.key 0UL
                Shard = None
            }
            x
    )

[<Fact>]
let ``the gradient penalty is differentiable in the critic's weights (matches finite differences)`` () =
    let k = Random.splitN 3 (Random.key 6UL)
    let real = f64 (Tensor.randn k.[0] [| 4; 3 |])
    let fake = f64 (Tensor.randn k.[1] [| 4; 3 |])
    gradCheck "WGAN-GP" (fun ps -> Losses.gradientPenalty (criticOf ps) k.[2] real fake) criticParams
    gradCheck "R1" (fun ps -> Losses.r1Penalty (criticOf ps) real) criticParams
    // and the penalty does not differentiate into the data: real and fake are detached
    let g =
        Autodiff.grad (fun r -> Losses.gradientPenalty (criticOf criticParams) k.[2] r fake) real

    Assert.True(Tensor.toArray64 g |> Array.forall ((=) 0.0))
