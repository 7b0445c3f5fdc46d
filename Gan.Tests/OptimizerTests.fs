/// The optimizers, schedules and EMA of Gan.Functional.Nn.Optim against hand-computed steps in
/// float64 with PyTorch's documented update rules (torch.optim.SGD, Adam, AdamW, RMSprop,
/// MultiStepLR), plus convergence on a convex least-squares problem.
module OptimizerTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Nn

// ------------------------------------------------------------------------------ helpers

let private vec (xs: float[]) = Tensor.ofArray64 [| xs.Length |] xs

let private near (tol: float) (what: string) (expected: float[]) (got: float[]) =
    if expected.Length <> got.Length then
        failwithf "%s: %d expected vs %d values" what expected.Length got.Length

    for i in 0 .. expected.Length - 1 do
        if not (abs (expected.[i] - got.[i]) <= tol * (1.0 + abs expected.[i])) then
            failwithf "%s: element %d expected %.15g, got %.15g" what i expected.[i] got.[i]

/// The quadratic f(x) = Σ aᵢ(xᵢ − cᵢ)² and its gradient 2a(x − c).
let private quadA = [| 1.0; 3.0; 0.5 |]
let private quadC = [| 0.5; -1.0; 2.0 |]

let private quadGrad (x: float[]) =
    Array.init x.Length (fun i -> 2.0 * quadA.[i] * (x.[i] - quadC.[i]))

/// `steps` library updates of parameter "x" from x0, the gradient taken by Autodiff each time.
let private runLibraryWith donate (kind: OptimizerKind) (lr: float) (steps: int) (x0: float[]) =
    let loss (ps: Map<string, Tensor>) =
        let d = ps.["x"] - vec quadC
        Tensor.sum (vec quadA * d * d)

    let mutable ps = Map.ofList [ "x", vec x0 ]
    let mutable st = Optimizer.init kind ps
    let trace = ResizeArray()

    for _ in 1..steps do
        let g = Autodiff.grads loss ps

        let p2, s2 =
            if donate then
                Optimizer.updateDonated kind lr g st ps
            else
                Optimizer.update kind lr g st ps

        ps <- p2
        st <- s2
        trace.Add(Tensor.toArray64 ps.["x"])

    trace.ToArray(), st

let private runLibrary kind lr steps x0 = runLibraryWith false kind lr steps x0

let private x0 = [| 2.0; 1.0; -1.0 |]

// ------------------------------------------------------------------------------ Adam

[<Fact>]
let ``Adam's first step moves every parameter by -lr·sign(g) up to eps`` () =
    // step 1: m̂ = g, v̂ = g², so Δ = −lr·g/(|g| + ε) = −lr·sign(g)·(1 − ε/(|g| + ε))
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! n = Gen.choose (1, 6)
                let! seed = Gen.choose (0, Int32.MaxValue)
                let! lr = Gen.elements [ 1e-4; 2e-4; 1e-3; 0.1 ]
                let! b1 = Gen.elements [ 0.0; 0.5; 0.9 ]
                return n, seed, lr, b1
            }
        ))
        (fun (n, seed, lr, b1) ->
            let rng = System.Random(seed)
            let p = Array.init n (fun _ -> rng.NextDouble() * 4.0 - 2.0)

            let g =
                Array.init n (fun _ -> (rng.NextDouble() * 2.0 - 1.0) * 10.0 ** float (rng.Next(-3, 3)))

            let kind = Adam(b1, 0.999, 1e-8, 0.0, false)
            let ps = Map.ofList [ "p", vec p ]

            let updated, st =
                Optimizer.update kind lr (Map.ofList [ "p", vec g ]) (Optimizer.init kind ps) ps

            let q = Tensor.toArray64 updated.["p"]

            for i in 0 .. n - 1 do
                let delta = q.[i] - p.[i]
                let bound = lr * 1e-8 / abs g.[i] + 1e-15

                if abs (delta + lr * float (sign g.[i])) > bound then
                    failwithf "element %d: Δ = %.17g, −lr·sign(g) = %g" i delta (-lr * float (sign g.[i]))

            st.Step = 1)
    |> Prop.check "adam first step"

/// PyTorch's Adam (torch.optim.Adam docs), with L2 weight decay or AdamW's decoupled decay:
/// g ← g + λp (Adam) or p ← p(1 − lr·λ) (AdamW); m ← β₁m + (1 − β₁)g; v ← β₂v + (1 − β₂)g²;
/// p ← p − (lr/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε).
let private adamByHand (b1: float) (b2: float) (eps: float) (wd: float) (decoupled: bool) (lr: float) (steps: int) =
    let mutable x = Array.copy x0
    let mutable m = Array.zeroCreate x.Length
    let mutable v = Array.zeroCreate x.Length

    [|
        for t in 1..steps do
            let g0 = quadGrad x

            let xd =
                if decoupled then
                    Array.map (fun p -> p * (1.0 - lr * wd)) x
                else
                    x

            let g =
                if decoupled then
                    g0
                else
                    Array.map2 (fun g p -> g + wd * p) g0 x

            m <- Array.map2 (fun m g -> b1 * m + (1.0 - b1) * g) m g
            v <- Array.map2 (fun v g -> b2 * v + (1.0 - b2) * g * g) v g
            let bc1 = 1.0 - b1 ** float t
            let bc2 = 1.0 - b2 ** float t
            x <- Array.init x.Length (fun i -> xd.[i] - lr / bc1 * m.[i] / (sqrt v.[i] / sqrt bc2 + eps))
            yield x
    |]

[<Fact>]
let ``Adam's first three steps on a quadratic match PyTorch's formulas computed by hand`` () =
    let expected = adamByHand 0.9 0.999 1e-8 0.0 false 0.1 3
    let got, st = runLibrary Optimizer.adam 0.1 3 x0

    for t in 0..2 do
        near 1e-13 (sprintf "step %d" (t + 1)) expected.[t] got.[t]

    Assert.Equal(3, st.Step)
    // step 1 by hand: each coordinate moves by −0.1·sign(g) (g = 2a(x − c) = [3, 12, −3])
    near 1e-8 "step 1 value" [| 1.9; 0.9; -0.9 |] got.[0]
    // the DCGAN variant β₁ = 0.5
    let expectedGan = adamByHand 0.5 0.999 1e-8 0.0 false 2e-4 3
    let gotGan, _ = runLibrary Optimizer.adamGan 2e-4 3 x0

    for t in 0..2 do
        near 1e-13 (sprintf "adamGan step %d" (t + 1)) expectedGan.[t] gotGan.[t]

[<Fact>]
let ``Adam's L2 weight decay and AdamW's decoupled decay match PyTorch's formulas`` () =
    for decoupled in [ false; true ] do
        let expected = adamByHand 0.9 0.99 1e-6 0.05 decoupled 0.05 3
        let got, _ = runLibrary (Adam(0.9, 0.99, 1e-6, 0.05, decoupled)) 0.05 3 x0

        for t in 0..2 do
            near 1e-13 (sprintf "decoupled=%b step %d" decoupled (t + 1)) expected.[t] got.[t]

    // the two differ
    let a, _ = runLibrary (Adam(0.9, 0.99, 1e-6, 0.05, false)) 0.05 3 x0
    let w, _ = runLibrary (Adam(0.9, 0.99, 1e-6, 0.05, true)) 0.05 3 x0
    Assert.NotEqual<float[]>(a.[2], w.[2])

[<Fact>]
let ``donated Adam steps give the same trajectory and write the moments into the donated buffers`` () =
    for kind in [ Optimizer.adam; Adam(0.9, 0.99, 1e-6, 0.05, true) ] do
        let plain, plainState = runLibrary kind 0.05 4 x0
        let donated, donatedState = runLibraryWith true kind 0.05 4 x0

        for t in 0..3 do
            near 0.0 (sprintf "%A step %d" kind (t + 1)) plain.[t] donated.[t]

        near 0.0 "m" (Tensor.toArray64 plainState.Moment1.["x"]) (Tensor.toArray64 donatedState.Moment1.["x"])
        near 0.0 "v" (Tensor.toArray64 plainState.Moment2.["x"]) (Tensor.toArray64 donatedState.Moment2.["x"])

    // the donated state's buffers now hold the new moments; the pure update leaves them alone
    let ps = Map.ofList [ "x", vec x0 ]
    let g = Map.ofList [ "x", vec [| 1.0; -2.0; 3.0 |] ]
    let s0 = Optimizer.init Optimizer.adam ps
    let _, s1 = Optimizer.update Optimizer.adam 0.1 g s0 ps
    near 0.0 "pure update leaves m" [| 0.0; 0.0; 0.0 |] (Tensor.toArray64 s0.Moment1.["x"])
    let _, s2 = Optimizer.updateDonated Optimizer.adam 0.1 g s0 ps
    near 0.0 "donated m" (Tensor.toArray64 s1.Moment1.["x"]) (Tensor.toArray64 s0.Moment1.["x"])
    near 0.0 "donated v" (Tensor.toArray64 s1.Moment2.["x"]) (Tensor.toArray64 s0.Moment2.["x"])
    Assert.True(RawTensor.sameBuffer (Tensor.toRaw s0.Moment2.["x"]) (Tensor.toRaw s2.Moment2.["x"]))

[<Fact>]
let ``a donated state whose two moments share one buffer is updated as by the pure step`` () =
    let ps = Map.ofList [ "x", vec x0 ]
    let g = Map.ofList [ "x", vec [| 1.0; -2.0; 3.0 |] ]
    let shared = Map.ofList [ "x", vec [| 0.5; 0.5; 0.5 |] ]

    let st = {
        Step = 3
        Moment1 = shared
        Moment2 = shared
    }

    let p1, s1 = Optimizer.update Optimizer.adam 0.1 g st ps
    let p2, s2 = Optimizer.updateDonated Optimizer.adam 0.1 g st ps
    near 0.0 "p" (Tensor.toArray64 p1.["x"]) (Tensor.toArray64 p2.["x"])
    near 0.0 "m" (Tensor.toArray64 s1.Moment1.["x"]) (Tensor.toArray64 s2.Moment1.["x"])
    near 0.0 "v" (Tensor.toArray64 s1.Moment2.["x"]) (Tensor.toArray64 s2.Moment2.["x"])
    near 0.0 "the shared buffer is untouched" [| 0.5; 0.5; 0.5 |] (Tensor.toArray64 shared.["x"])

// ------------------------------------------------------------------------------ SGD

/// PyTorch's SGD (dampening 0): g ← g + λp; buf ← g at step 1, then μ·buf + g; the step uses
/// g + μ·buf with Nesterov, else buf; p ← p − lr·step.
let private sgdByHand (mu: float) (nesterov: bool) (wd: float) (lr: float) (steps: int) =
    let mutable x = Array.copy x0
    let mutable buf = Array.zeroCreate x.Length

    [|
        for t in 1..steps do
            let g = Array.map2 (fun g p -> g + wd * p) (quadGrad x) x

            let d =
                if mu = 0.0 then
                    g
                else
                    buf <-
                        (if t = 1 then
                             g
                         else
                             Array.map2 (fun b g -> mu * b + g) buf g)

                    if nesterov then
                        Array.map2 (fun g b -> g + mu * b) g buf
                    else
                        buf

            x <- Array.map2 (fun p d -> p - lr * d) x d
            yield x
    |]

[<Fact>]
let ``SGD, SGD with momentum, Nesterov and weight decay match PyTorch's steps computed by hand`` () =
    for mu, nesterov, wd in
        [
            0.0, false, 0.0
            0.9, false, 0.0
            0.9, true, 0.0
            0.5, false, 0.1
            0.8, true, 0.01
        ] do
        let expected = sgdByHand mu nesterov wd 0.05 4
        let got, st = runLibrary (Sgd(mu, nesterov, wd)) 0.05 4 x0

        for t in 0..3 do
            near 1e-14 (sprintf "μ=%g nesterov=%b wd=%g step %d" mu nesterov wd (t + 1)) expected.[t] got.[t]

        Assert.Equal(4, st.Step)
        Assert.Equal((if mu > 0.0 then 1 else 0), st.Moment1.Count)

    // by hand for one coordinate, x = 2, a = 1, c = 0.5 (g = 2(x − 0.5)), lr 0.1, μ 0.9:
    // step 1: g = 3, buf = 3, x = 1.7; step 2: g = 2.4, buf = 2.7 + 2.4 = 5.1, x = 1.19
    let got, _ = runLibrary (Sgd(0.9, false, 0.0)) 0.1 2 x0
    near 1e-14 "hand step 1" [| 1.7 |] [| got.[0].[0] |]
    near 1e-14 "hand step 2" [| 1.19 |] [| got.[1].[0] |]
    // Nesterov: step 1 uses g + μ·buf = 3 + 2.7 = 5.7 → x = 1.43
    let gotN, _ = runLibrary (Sgd(0.9, true, 0.0)) 0.1 1 x0
    near 1e-14 "nesterov step 1" [| 1.43 |] [| gotN.[0].[0] |]

// ------------------------------------------------------------------------------ RMSProp

/// PyTorch's RMSprop (centered = False): v ← αv + (1 − α)g²; with momentum μ:
/// buf ← μ·buf + g/(√v + ε), p ← p − lr·buf; else p ← p − lr·g/(√v + ε).
let private rmsByHand (alpha: float) (eps: float) (mu: float) (lr: float) (steps: int) =
    let mutable x = Array.copy x0
    let mutable v = Array.zeroCreate x.Length
    let mutable buf = Array.zeroCreate x.Length

    [|
        for _ in 1..steps do
            let g = quadGrad x
            v <- Array.map2 (fun v g -> alpha * v + (1.0 - alpha) * g * g) v g
            let d = Array.map2 (fun g v -> g / (sqrt v + eps)) g v

            let d =
                if mu > 0.0 then
                    buf <- Array.map2 (fun b d -> mu * b + d) buf d
                    buf
                else
                    d

            x <- Array.map2 (fun p d -> p - lr * d) x d
            yield x
    |]

[<Fact>]
let ``RMSProp with and without momentum matches PyTorch's steps computed by hand`` () =
    for alpha, eps, mu in [ 0.99, 1e-8, 0.0; 0.9, 1e-6, 0.5 ] do
        let expected = rmsByHand alpha eps mu 0.01 4
        let got, _ = runLibrary (RmsProp(alpha, eps, mu)) 0.01 4 x0

        for t in 0..3 do
            near 1e-14 (sprintf "α=%g μ=%g step %d" alpha mu (t + 1)) expected.[t] got.[t]

    // step 1 by hand (α = 0.99): v = 0.01·g², so Δ = −lr·g/(0.1|g|) = −10·lr·sign(g)
    let got, _ = runLibrary (RmsProp(0.99, 1e-8, 0.0)) 0.01 1 x0
    near 1e-7 "step 1 value" [| 1.9; 0.9; -0.9 |] got.[0]

// ------------------------------------------------------------------------------ behaviour

[<Fact>]
let ``parameters without a gradient are left unchanged and buffers start at zero`` () =
    let ps = Map.ofList [ "a", vec [| 1.0; 2.0 |]; "b", vec [| 3.0 |] ]

    for kind in [ Sgd(0.9, false, 0.0); Optimizer.adam; RmsProp(0.99, 1e-8, 0.9) ] do
        let st = Optimizer.init kind ps
        Assert.Equal(0, st.Step)

        for m in [ st.Moment1; st.Moment2 ] do
            for KeyValue(_, t) in m do
                Assert.True(Tensor.toArray64 t |> Array.forall ((=) 0.0))

        let updated, _ =
            Optimizer.update kind 0.1 (Map.ofList [ "a", vec [| 1.0; -1.0 |] ]) st ps

        Assert.Equal<float[]>([| 3.0 |], Tensor.toArray64 updated.["b"])
        Assert.NotEqual<float[]>([| 1.0; 2.0 |], Tensor.toArray64 updated.["a"])

/// A fixed least-squares problem ‖Ax − b‖² (A 6×3, b 6, from a fixed key) and its minimum.
let private lsA = Tensor.cast Float64 (Tensor.randn (Random.key 7UL) [| 6; 3 |])
let private lsB = Tensor.cast Float64 (Tensor.randn (Random.key 8UL) [| 6 |])

let private lsLoss (x: Tensor) =
    let r = Tensor.matmul lsA x - lsB
    Tensor.sum (r * r)

/// The minimum, from the normal equations AᵀA x = Aᵀb solved by Gaussian elimination.
let private lsMinimum =
    let a = Tensor.toArray64 lsA
    let b = Tensor.toArray64 lsB

    let m =
        Array2D.init 3 4 (fun i j ->
            if j < 3 then
                Array.sum (Array.init 6 (fun k -> a.[k * 3 + i] * a.[k * 3 + j]))
            else
                Array.sum (Array.init 6 (fun k -> a.[k * 3 + i] * b.[k])))

    for c in 0..2 do
        for r in c + 1 .. 2 do
            let f = m.[r, c] / m.[c, c]

            for j in c..3 do
                m.[r, j] <- m.[r, j] - f * m.[c, j]

    let x = Array.zeroCreate 3

    for r in 2..-1..0 do
        x.[r] <-
            (m.[r, 3]
             - Array.sum (Array.init (2 - r) (fun k -> m.[r, r + 1 + k] * x.[r + 1 + k])))
            / m.[r, r]

    Tensor.item (lsLoss (vec x))

[<Fact>]
let ``every optimizer reduces a convex least-squares loss over 200 steps`` () =
    let start = vec [| 3.0; -2.0; 1.0 |]
    let l0 = Tensor.item (lsLoss start)

    for name, kind, lr in
        [
            "SGD", Sgd(0.0, false, 0.0), 0.01
            "SGD momentum", Sgd(0.9, false, 0.0), 0.005
            "SGD Nesterov", Sgd(0.9, true, 0.0), 0.005
            "Adam", Optimizer.adam, 0.05
            "AdamW", Adam(0.9, 0.999, 1e-8, 1e-3, true), 0.05
            "RMSProp", RmsProp(0.99, 1e-8, 0.0), 0.01
        ] do
        let mutable ps = Map.ofList [ "x", start ]
        let mutable st = Optimizer.init kind ps

        for _ in 1..200 do
            let g = Autodiff.grads (fun p -> lsLoss p.["x"]) ps
            let p2, s2 = Optimizer.update kind lr g st ps
            ps <- p2
            st <- s2

        let l = Tensor.item (lsLoss ps.["x"])
        // the excess loss above the minimum falls by at least 95%
        Assert.True(
            l - lsMinimum < 0.05 * (l0 - lsMinimum),
            sprintf "%s: loss %g → %g (minimum %g)" name l0 l lsMinimum
        )

// ------------------------------------------------------------------------------ schedules

[<Fact>]
let ``schedules give the expected learning rates`` () =
    for e in [ 0; 1; 7; 100 ] do
        Assert.Equal(0.3, Schedule.rate ConstantRate 0.3 e)

    // PyTorch's MultiStepLR docs: milestones [30, 80], γ 0.1, lr 0.05 → 0.05 for epoch < 30,
    // 0.005 for 30 ≤ epoch < 80, 0.0005 from 80
    let multi = StepDecay([ 30; 80 ], 0.1)

    for e, expected in [ 0, 0.05; 29, 0.05; 30, 0.005; 79, 0.005; 80, 0.0005; 200, 0.0005 ] do
        near 1e-15 (sprintf "MultiStepLR epoch %d" e) [| expected |] [| Schedule.rate multi 0.05 e |]
    // S3's decay at epochs 10, 20 and 25 by halving
    let s3 = StepDecay([ 10; 20; 25 ], 0.5)

    for e, expected in
        [
            0, 2e-4
            9, 2e-4
            10, 1e-4
            19, 1e-4
            20, 5e-5
            24, 5e-5
            25, 2.5e-5
            29, 2.5e-5
        ] do
        near 1e-15 (sprintf "S3 epoch %d" e) [| expected |] [| Schedule.rate s3 2e-4 e |]

    for e in 0..5 do
        near 1e-15 (sprintf "exponential %d" e) [| 0.1 * 0.9 ** float e |] [|
            Schedule.rate (ExponentialDecay 0.9) 0.1 e
        |]
    // linear from epoch 10 down to 0 at epoch 20
    for e, expected in [ 0, 1.0; 10, 1.0; 11, 0.9; 15, 0.5; 19, 0.1; 20, 0.0; 30, 0.0 ] do
        near 1e-15 (sprintf "linear %d" e) [| expected |] [| Schedule.rate (LinearDecay(10, 20)) 1.0 e |]

// ------------------------------------------------------------------------------ EMA

[<Fact>]
let ``EMA updates as decay·ema + (1 - decay)·current and starts from the current weights`` () =
    let p1 = Map.ofList [ "w", vec [| 1.0; 2.0 |] ]
    let p2 = Map.ofList [ "w", vec [| 3.0; -2.0 |] ]
    let p3 = Map.ofList [ "w", vec [| 0.0; 0.0 |]; "new", vec [| 5.0 |] ]
    let e1 = Ema.update 0.9 Map.empty p1
    near 0.0 "first" [| 1.0; 2.0 |] (Tensor.toArray64 e1.["w"])
    let e2 = Ema.update 0.9 e1 p2
    // 0.9·[1, 2] + 0.1·[3, −2] = [1.2, 1.6]
    near 1e-15 "second" [| 1.2; 1.6 |] (Tensor.toArray64 e2.["w"])
    let e3 = Ema.update 0.9 e2 p3
    near 1e-15 "third" [| 1.08; 1.44 |] (Tensor.toArray64 e3.["w"])
    // a name new in `current` starts at its value; names only in the EMA are dropped
    near 0.0 "new" [| 5.0 |] (Tensor.toArray64 e3.["new"])
    let e4 = Ema.update 0.5 e3 (Map.ofList [ "w", vec [| 0.0; 0.0 |] ])
    Assert.Equal<string list>([ "w" ], e4 |> Map.keys |> List.ofSeq)

[<Fact>]
let ``Adam's initial moments are zeros shaped like each parameter, each in its own buffer`` () =
    let ps =
        Map.ofList [
            "w", Tensor.ofArray [| 2; 3 |] (Array.init 6 float32)
            "b", vec [| 1.0; 2.0 |]
        ]

    let st = Optimizer.init Optimizer.adam ps

    for KeyValue(name, p) in ps do
        for moments in [ st.Moment1; st.Moment2 ] do
            let m = moments.[name]
            Assert.Equal<int[]>(Tensor.shape p, Tensor.shape m)
            Assert.Equal(Tensor.dtype p, Tensor.dtype m)
            Assert.True(Tensor.toArray64 m |> Array.forall ((=) 0.0), name)

        Assert.False(RawTensor.sameBuffer (Tensor.toRaw st.Moment1.[name]) (Tensor.toRaw st.Moment2.[name]))
        Assert.False(RawTensor.sameBuffer (Tensor.toRaw st.Moment1.[name]) (Tensor.toRaw p))
