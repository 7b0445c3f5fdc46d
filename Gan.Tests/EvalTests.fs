/// Sample-quality metrics (Gan.Functional.Eval): the classifier Inception Score, the Fréchet
/// distance and its PSD matrix square root, the kernel distance (unbiased MMD², cubic kernel),
/// class coverage and KL to uniform; 2-D mixtures and their VEEGAN/PacGAN mode metrics, the 2-D
/// MLP GAN, the Stacked MNIST helpers; and the CNN classifier's training step.
module EvalTests

open System
open System.Collections.Generic
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan
open Gan.Functional.Eval

// ------------------------------------------------------------------------------ helpers

let private near (tol: float) (what: string) (expected: float) (got: float) =
    if not (abs (expected - got) <= tol * (1.0 + abs expected)) then
        failwithf "%s: expected %.15g, got %.15g" what expected got

/// n rows of d standard normals (float64) from a seed.
let private gaussianRows (seed: uint64) (n: int) (d: int) =
    let data =
        Tensor.toArray64 (Tensor.ofRaw (Random.normal (Random.key seed) Float64 [| n; d |]))

    Array.init n (fun i -> Array.sub data (i * d) d)

let private oneHot (k: int) (c: int) =
    Array.init k (fun j -> if j = c then 1.0 else 0.0)

/// A random symmetric positive definite n×n matrix BᵀB/n + 0.1·I from a seed.
let private spd (seed: int) (n: int) =
    let rng = Random(seed)
    let b = Array2D.init (n + 2) n (fun _ _ -> rng.NextDouble() * 2.0 - 1.0)

    Array2D.init n n (fun i j ->
        let mutable acc = 0.0

        for r in 0 .. n + 1 do
            acc <- acc + b.[r, i] * b.[r, j]

        acc / float n + (if i = j then 0.1 else 0.0))

let private mul (a: float[,]) (b: float[,]) =
    let n, k, p = Array2D.length1 a, Array2D.length2 a, Array2D.length2 b

    Array2D.init n p (fun i j ->
        let mutable acc = 0.0

        for l in 0 .. k - 1 do
            acc <- acc + a.[i, l] * b.[l, j]

        acc)

let private maxAbsDiff (a: float[,]) (b: float[,]) =
    let mutable m = 0.0

    for i in 0 .. Array2D.length1 a - 1 do
        for j in 0 .. Array2D.length2 a - 1 do
            m <- max m (abs (a.[i, j] - b.[i, j]))

    m

let private seeds = Arb.fromGen (Gen.choose (0, Int32.MaxValue))

// ------------------------------------------------------------------------------ Inception Score

[<Fact>]
let ``the Inception Score of a perfect class-balanced one-hot output is the number of classes`` () =
    // 1,000 rows cycling through 10 classes: every split of 100 is balanced
    let probs = Array.init 1000 (fun i -> oneHot 10 (i % 10))
    let s = Metrics.inceptionScore probs
    near 1e-12 "IS" 10.0 s.Mean
    near 1e-12 "IS std" 0.0 s.Std

[<Fact>]
let ``the Inception Score of a constant output is 1, confident or not`` () =
    let soft = [| 0.05; 0.1; 0.2; 0.3; 0.35 |]
    near 1e-12 "IS of a constant soft row" 1.0 (Metrics.inceptionScore (Array.create 50 soft)).Mean
    near 1e-12 "IS of a constant one-hot row" 1.0 (Metrics.inceptionScore (Array.create 50 (oneHot 10 3))).Mean

[<Fact>]
let ``the Inception Score lies between 1 and the number of classes`` () =
    Prop.forAll seeds (fun seed ->
        let rng = Random(seed)
        let k = 2 + rng.Next 9
        let n = 10 + rng.Next 50

        let probs =
            Array.init n (fun _ ->
                let r = Array.init k (fun _ -> rng.NextDouble() ** 3.0)
                let s = Array.sum r
                r |> Array.map (fun v -> v / s))

        let s = Metrics.inceptionScoreWith (1 + rng.Next 5) probs
        s.Mean >= 1.0 - 1e-12 && s.Mean <= float k + 1e-12)
    |> Prop.check "IS in [1, K]"

[<Fact>]
let ``the Inception Score rejects logits passed for probabilities`` () =
    Assert.Throws<ArgumentException>(fun () -> Metrics.inceptionScore (Array.create 20 [| 2.0; -1.0 |]) |> ignore)
    |> ignore

// ------------------------------------------------------------------------------ matrix square root

[<Fact>]
let ``the Jacobi eigendecomposition reconstructs a symmetric matrix with orthonormal eigenvectors`` () =
    Prop.forAll seeds (fun seed ->
        let n = 1 + seed % 12
        let rng = Random(seed)
        let s = Array2D.init n n (fun _ _ -> rng.NextDouble() * 2.0 - 1.0)
        let a = Array2D.init n n (fun i j -> s.[i, j] + s.[j, i]) // symmetric, indefinite
        let lambda, v = Metrics.symmetricEigen a
        let vt = Array2D.init n n (fun i j -> v.[j, i])
        let d = Array2D.init n n (fun i j -> if i = j then lambda.[i] else 0.0)

        maxAbsDiff (mul (mul v d) vt) a < 1e-10
        && maxAbsDiff (mul vt v) (Array2D.init n n (fun i j -> if i = j then 1.0 else 0.0)) < 1e-10
        && Array.pairwise lambda |> Array.forall (fun (x, y) -> x <= y))
    |> Prop.checkN "Jacobi eigen" 50

[<Fact>]
let ``sqrtPsd of a random SPD matrix squares back to it and is symmetric`` () =
    Prop.forAll seeds (fun seed ->
        let n = 1 + seed % 16
        let a = spd seed n
        let r = Metrics.sqrtPsd a
        let rt = Array2D.init n n (fun i j -> r.[j, i])
        maxAbsDiff (mul r r) a < 1e-10 && maxAbsDiff r rt = 0.0)
    |> Prop.checkN "sqrtm squared" 50

[<Fact>]
let ``sqrtPsd of a diagonal matrix takes the roots of the diagonal, zero rank included`` () =
    let r =
        Metrics.sqrtPsd (array2D [ [ 4.0; 0.0; 0.0 ]; [ 0.0; 0.0; 0.0 ]; [ 0.0; 0.0; 9.0 ] ])

    Assert.True(maxAbsDiff r (array2D [ [ 2.0; 0.0; 0.0 ]; [ 0.0; 0.0; 0.0 ]; [ 0.0; 0.0; 3.0 ] ]) < 1e-15)

[<Fact>]
let ``sqrtPsd handles a 128-dimensional rank-deficient covariance`` () =
    // 64 samples in 128 dimensions: half the spectrum is zero
    let stats = Metrics.featureStats (gaussianRows 5UL 64 128)
    let r = Metrics.sqrtPsd stats.Covariance
    Assert.True(maxAbsDiff (mul r r) stats.Covariance < 1e-10)

// ------------------------------------------------------------------------------ Fréchet distance

[<Fact>]
let ``the Fréchet distance of a feature set to itself is 0`` () =
    let x = gaussianRows 1UL 500 16
    near 1e-9 "FCD(x, x)" 0.0 (Metrics.frechetDistance x x)

[<Fact>]
let ``shifting a feature set by m adds |m|^2 to its Fréchet distance`` () =
    let x = gaussianRows 2UL 400 8

    for scale in [ 0.1; 1.0; 3.0 ] do
        let m = Array.init 8 (fun j -> scale * float (j - 3))
        let shifted = x |> Array.map (Array.map2 (+) m)
        let expected = m |> Array.sumBy (fun v -> v * v)
        near 1e-8 (sprintf "FCD with shift %g" scale) expected (Metrics.frechetDistance x shifted)

[<Fact>]
let ``the Fréchet distance of two diagonal Gaussians is the sum of (sqrt a - sqrt b)^2 plus the mean gap`` () =
    let stats (mean: float[]) (var: float[]) = {
        Count = 100
        Mean = mean
        Covariance = Array2D.init var.Length var.Length (fun i j -> if i = j then var.[i] else 0.0)
    }

    let a = stats [| 0.0; 1.0; 2.0 |] [| 1.0; 4.0; 0.25 |]
    let b = stats [| 1.0; 1.0; 0.0 |] [| 9.0; 1.0; 0.0 |]
    // |Δμ|² = 1 + 0 + 4; Σ (√a − √b)² = 4 + 1 + 0.25
    near 1e-12 "FD" 10.25 (Metrics.frechetDistanceOfStats a b)

[<Fact>]
let ``the Fréchet distance grows as two Gaussians move apart and is symmetric`` () =
    let x = gaussianRows 3UL 300 4

    let fd s =
        Metrics.frechetDistance x (gaussianRows 4UL 300 4 |> Array.map (Array.map (fun v -> v * 1.5 + s)))

    let ds = [ 0.0; 0.5; 1.0; 2.0 ] |> List.map fd
    Assert.True(ds |> List.pairwise |> List.forall (fun (a, b) -> a < b), sprintf "%A" ds)
    let y = gaussianRows 6UL 200 4 |> Array.map (Array.map (fun v -> 2.0 * v + 1.0))
    near 1e-9 "symmetry" (Metrics.frechetDistance x y) (Metrics.frechetDistance y x)

// ------------------------------------------------------------------------------ kernel distance

/// The unbiased MMD² with k(x, y) = (xᵀy/d + 1)³ written out term by term.
let private mmdDirect (x: float[][]) (y: float[][]) =
    let d = float x.[0].Length

    let k (u: float[]) (v: float[]) =
        (Array.fold2 (fun acc a b -> acc + a * b) 0.0 u v / d + 1.0) ** 3.0

    let m, n = float x.Length, float y.Length

    let within (z: float[][]) =
        seq {
            for i in 0 .. z.Length - 1 do
                for j in 0 .. z.Length - 1 do
                    if i <> j then
                        k z.[i] z.[j]
        }
        |> Seq.sum

    within x / (m * (m - 1.0)) + within y / (n * (n - 1.0))
    - 2.0
      * (seq {
          for u in x do
              for v in y -> k u v
         }
         |> Seq.sum)
      / (m * n)

[<Fact>]
let ``the kernel distance is the unbiased MMD^2 with the cubic polynomial kernel`` () =
    Prop.forAll seeds (fun seed ->
        let rng = Random(seed)
        let x = gaussianRows (uint64 seed) (2 + rng.Next 10) 3

        let y =
            gaussianRows (uint64 seed + 1UL) (2 + rng.Next 10) 3
            |> Array.map (Array.map ((+) 0.5))

        abs (Metrics.kernelDistance x y - mmdDirect x y)
        <= 1e-10 * (1.0 + abs (mmdDirect x y)))
    |> Prop.checkN "KID formula" 50

[<Fact>]
let ``the kernel distance is about 0 for two samples of one distribution and clearly positive for different ones`` () =
    let a = gaussianRows 10UL 500 16
    let b = gaussianRows 11UL 500 16
    let c = gaussianRows 12UL 500 16 |> Array.map (Array.map (fun v -> 1.3 * v + 0.3))
    let same = Metrics.kernelDistance a b
    let different = Metrics.kernelDistance a c
    Assert.True(abs same < 0.01, sprintf "same: %g" same)
    Assert.True(different > 0.1 && different > 20.0 * abs same, sprintf "different: %g, same: %g" different same)

[<Fact>]
let ``the kernel distance over subsets averages per-subset MMDs and equals the full one when subsets hold everything``
    ()
    =
    let a = gaussianRows 20UL 60 5
    let b = gaussianRows 21UL 40 5 |> Array.map (Array.map ((+) 1.0))
    // subsets larger than the sets are cut to them: every subset is a permutation of all rows
    let s = Metrics.kernelDistanceSubsets (Random.key 1UL) 3 1000 a b
    near 1e-10 "mean" (Metrics.kernelDistance a b) s.Mean
    Assert.True(s.Std < 1e-10)
    let small = Metrics.kernelDistanceSubsets (Random.key 1UL) 20 10 a b
    Assert.True(small.Std > 0.0)
    Assert.Equal(small, Metrics.kernelDistanceSubsets (Random.key 1UL) 20 10 a b)

// ------------------------------------------------------------------------------ coverage

[<Fact>]
let ``the KL divergence to uniform is 0 for a uniform histogram and ln K for a single class`` () =
    near 1e-15 "uniform" 0.0 (Metrics.klToUniform [| 7; 7; 7; 7 |])
    near 1e-15 "one class" (log 4.0) (Metrics.klToUniform [| 0; 12; 0; 0 |])
    // two of four classes, equally: ln 2
    near 1e-15 "half" (log 2.0) (Metrics.klToUniform [| 5; 0; 5; 0 |])
    Assert.True(Double.IsNaN(Metrics.klToUniform [| 0; 0 |]))

[<Fact>]
let ``class coverage counts argmax classes`` () =
    let probs = [| [| 0.7; 0.2; 0.1 |]; [| 0.1; 0.1; 0.8 |]; [| 0.6; 0.3; 0.1 |] |]
    let c = Metrics.classCoverage probs
    Assert.Equal<int[]>([| 2; 0; 1 |], c.Counts)
    Assert.Equal(2, c.Covered)
    near 1e-15 "KL" ((2.0 / 3.0) * log 2.0 + (1.0 / 3.0) * log 1.0) c.KlToUniform

// ------------------------------------------------------------------------------ mixtures

[<Fact>]
let ``mode counting on hand-placed points: coverage, the 20-sample threshold and a low-quality point`` () =
    let ring = Mixtures.ring8
    let at (m: int) (dx: float) = [| ring.Means.[m].[0] + dx; ring.Means.[m].[1] |]
    // 25 points on mode 0, 20 on mode 1, 5 on mode 2 (all within 3σ = 0.03), one point at the
    // centre (distance 1 from every mode: low quality), one just outside 3σ of mode 3
    let points = [|
        yield! Array.init 25 (fun i -> at 0 (0.001 * float i))
        yield! Array.init 20 (fun _ -> at 1 -0.02)
        yield! Array.init 5 (fun _ -> at 2 0.0299)
        [| 0.0; 0.0 |]
        at 3 0.0301
    |]

    let m = Mixtures.modeMetrics ring points
    Assert.Equal(52, m.Samples)
    Assert.Equal(50, m.HighQuality)
    near 1e-15 "share" (50.0 / 52.0) m.HighQualityShare
    Assert.Equal(3, m.ModesCovered)
    Assert.Equal(2, m.ModesCoveredAtThreshold)
    Assert.Equal<int[]>([| 25; 20; 5; 0; 0; 0; 0; 0 |], m.ModeCounts)
    let p = [| 25.0; 20.0; 5.0 |] |> Array.map (fun c -> c / 50.0)
    near 1e-12 "KL" (p |> Array.sumBy (fun q -> q * log (q * 8.0))) m.KlToUniform

[<Fact>]
let ``grid25 modes are at {-4, -2, 0, 2, 4}^2 and a point is assigned to its nearest one`` () =
    let g = Mixtures.grid25
    Assert.Equal(25, g.Means.Length)
    Assert.Equal(0.05, g.Std)
    let coords = g.Means |> Array.collect id |> Array.distinct |> Array.sort
    Assert.Equal<float[]>([| -4.0; -2.0; 0.0; 2.0; 4.0 |], coords)
    let mode, dist = (Mixtures.nearestModes g [| [| 1.9; -3.95 |] |]).[0]
    Assert.Equal<float[]>([| 2.0; -4.0 |], g.Means.[mode])
    near 1e-12 "distance" (sqrt (0.01 + 0.0025)) dist

[<Theory>]
[<InlineData("ring8")>]
[<InlineData("grid25")>]
let ``mixture samples lie near their modes and cover all of them evenly`` (name: string) =
    let mix = Mixtures.byName name
    let x = Mixtures.sample mix (Random.key 42UL) Mixtures.defaultSamples
    Assert.Equal<int[]>([| Mixtures.defaultSamples; 2 |], Tensor.shape x)
    let m = Mixtures.modeMetrics mix (Metrics.rows x)
    // within 3σ of a 2-D Gaussian's centre: 1 − e^−4.5 = 98.9%
    Assert.True(m.HighQualityShare > 0.97, sprintf "high-quality share %g" m.HighQualityShare)
    Assert.Equal(mix.Means.Length, m.ModesCovered)
    Assert.Equal(mix.Means.Length, m.ModesCoveredAtThreshold)
    Assert.True(m.KlToUniform < 0.02, sprintf "KL %g" m.KlToUniform)
    // every point is within 6σ of its mode (the float64 normals stay within 8.6σ; 6σ in 2-D: e^-18)
    Assert.True(
        Mixtures.nearestModes mix (Metrics.rows x)
        |> Array.forall (fun (_, d) -> d < 6.0 * mix.Std)
    )

[<Fact>]
let ``a mixture sample is a pure function of its key`` () =
    let a = Tensor.toArray (Mixtures.sample Mixtures.ring8 (Random.key 3UL) 10)
    let b = Tensor.toArray (Mixtures.sample Mixtures.ring8 (Random.key 3UL) 10)
    let c = Tensor.toArray (Mixtures.sample Mixtures.ring8 (Random.key 4UL) 10)
    Assert.Equal<float32[]>(a, b)
    Assert.NotEqual<float32[]>(a, c)

[<Theory>]
[<InlineData(false)>]
[<InlineData(true)>]
let ``the 2-D MLP GAN trains with Training.step on mixture batches`` (mbd: bool) =
    let model = Mixtures.mlpGan mbd
    Assert.Equal<int[]>([| 2 |], model.ImageShape)
    let config = Training.defaultConfig model.Defaults.Beta1
    let mutable state = Training.init model config (Random.key 1UL)

    for i in 0..4 do
        let real = Mixtures.sample Mixtures.grid25 (Random.key (uint64 i)) 32
        let s, m = Training.step model config 1e-3 1e-3 real state
        Assert.True(Double.IsFinite m.DLoss && Double.IsFinite m.GLoss)
        state <- s

    let z = Training.noise model (Random.key 9UL) 7
    Assert.Equal<int[]>([| 7; 2 |], Tensor.shape (Sampling.generate model state.G z))

    Assert.Equal(
        mbd,
        state.D.Params
        |> Map.exists (fun name _ -> name.EndsWith("lin.weight", StringComparison.Ordinal))
    )

// ------------------------------------------------------------------------------ Stacked MNIST

[<Fact>]
let ``stacked digits take channel c of image i from image triples[i][c]`` () =
    // five 2×2 "digits", image k filled with the value k
    let images =
        Tensor.ofArray [| 5; 1; 2; 2 |] (Array.init 20 (fun e -> float32 (e / 4)))

    let triples = StackedMnist.triples (Random.key 8UL) 6 5
    let stacked = StackedMnist.stack images triples
    Assert.Equal<int[]>([| 6; 3; 2; 2 |], Tensor.shape stacked)
    let data = Tensor.toArray stacked

    for i in 0..5 do
        for c in 0..2 do
            for p in 0..3 do
                Assert.Equal(float32 triples.[i].[c], data.[(i * 3 + c) * 4 + p])

[<Fact>]
let ``stacked modes combine the three channels' labels as 100 d1 + 10 d2 + d3`` () =
    let labels = [| 3; 1; 4; 1; 5; 9; 2; 6; 5; 3 |]
    // a stand-in classifier reading the digit off the first pixel
    let images =
        Tensor.ofArray [| 10; 1; 2; 2 |] (Array.init 40 (fun e -> float32 labels.[e / 4]))

    let classify (x: Tensor) =
        let s = Tensor.shape x
        Assert.Equal<int[]>([| s.[0]; 1; 2; 2 |], s)
        Tensor.toArray x |> Array.chunkBySize 4 |> Array.map (fun px -> int px.[0])

    let triples = [| [| 0; 1; 2 |]; [| 5; 5; 5 |]; [| 9; 7; 3 |] |]
    let modes = StackedMnist.modes classify (StackedMnist.stack images triples)
    Assert.Equal<int[]>([| 314; 999; 361 |], modes)
    Assert.Equal<int[]>(modes, StackedMnist.labels labels triples)
    let c = StackedMnist.coverage modes
    Assert.Equal(1000, c.Counts.Length)
    Assert.Equal(3, c.Covered)
    near 1e-12 "KL" (log (1000.0 / 3.0)) c.KlToUniform

// ------------------------------------------------------------------------------ classifier

/// 20 synthetic 28×28 images: class c is a bright horizontal bar on rows 2c + 4 .. 2c + 5.
let private bars () =
    let labels = Array.init 20 (fun i -> i % 10)

    let data =
        Array.init (20 * 784) (fun e ->
            let i, p = e / 784, e % 784
            let row = p / 28
            if row / 2 = labels.[i] + 2 then 1.0f else 0.05f)

    Tensor.ofArray [| 20; 1; 28; 28 |] data, labels

[<Fact>]
let ``a few classifier training steps reduce its loss on a small synthetic problem`` () =
    let images, labels = bars ()
    let mutable state = Classifier.init (Random.key 0UL)
    let losses = ResizeArray()

    for _ in 1..6 do
        let s, loss = Classifier.step 2e-3 images labels state
        losses.Add loss
        state <- s

    // the losses are train-mode ones (batch statistics, dropout), measured before each step;
    // eval mode needs more steps for BatchNorm's running statistics to catch up
    let trace = sprintf "losses %A" (List.ofSeq losses)
    Assert.True(losses.[0] > 1.5, trace)
    Assert.True(losses.[5] < 0.4 * losses.[0], trace)
    Assert.True(losses |> Seq.pairwise |> Seq.forall (fun (a, b) -> b < a), trace)
    Assert.Equal(6, state.Step)
    Assert.NotEqual(state.Key, (Classifier.init (Random.key 0UL)).Key)

[<Fact>]
let ``the classifier gives probability rows, 128 features, and survives a round trip through named tensors`` () =
    let images, _ = bars ()
    let vars = (Classifier.init (Random.key 1UL)).Vars
    let probs, feats = Classifier.predictAndFeatures vars images
    Assert.Equal(20, probs.Length)
    Assert.True(probs |> Array.forall (fun r -> r.Length = 10 && abs (Array.sum r - 1.0) < 1e-9))
    Assert.True(feats |> Array.forall (fun r -> r.Length = Classifier.featureDim))
    Assert.Equal<float[][]>(feats, Classifier.featuresOf vars images)
    Assert.Equal<float[][]>(probs, Classifier.predict vars images)
    let named = Classifier.toNamed vars
    Assert.Contains("features.1.running_var", named |> List.map fst)
    Assert.Contains("classifier.1.weight", named |> List.map fst)
    let back = Classifier.ofNamed named
    Assert.Equal<float[][]>(probs, Classifier.predict back images)

    Assert.Throws<Checkpoint.CheckpointMismatchException>(fun () ->
        Classifier.ofNamed (named |> List.filter (fun (n, _) -> n <> "classifier.1.bias"))
        |> ignore)
    |> ignore

[<Fact>]
let ``the classifier labels each channel of a stacked image and combines the digits into its mode`` () =
    let images, _ = bars ()
    let vars = (Classifier.init (Random.key 1UL)).Vars
    let digits = Classifier.predictClasses vars images
    let triples = [| [| 0; 1; 2 |]; [| 7; 3; 19 |]; [| 4; 4; 4 |]; [| 12; 0; 5 |] |]
    let stacked = StackedMnist.stack images triples

    let expected =
        triples
        |> Array.map (fun t -> 100 * digits.[t.[0]] + 10 * digits.[t.[1]] + digits.[t.[2]])

    Assert.Equal<int[]>(expected, Classifier.stackedModes vars stacked)
    let c = Classifier.stackedCoverage vars stacked
    Assert.Equal(Array.distinct(expected).Length, c.Covered)
    Assert.Equal(4, Array.sum c.Counts)

[<Fact>]
let ``the cross-entropy is logsumexp minus the label's logit`` () =
    let logits = [|
        [| 1.0; 2.0; 0.5; 0.0; 0.0; 0.0; 0.0; 0.0; 0.0; -1.0 |]
        Array.init 10 float
    |]

    let t = Tensor.ofArray64 [| 2; 10 |] (Array.concat logits)
    let lse (r: float[]) = log (r |> Array.sumBy exp)
    let expected = ((lse logits.[0] - 2.0) + (lse logits.[1] - 7.0)) / 2.0
    near 1e-12 "CE" expected (Tensor.item (Classifier.crossEntropy t [| 1; 7 |]))

[<Fact>]
let ``images from a tanh generator are mapped to [0, 1] for the classifier`` () =
    let x = Tensor.ofArray [| 3 |] [| -1.0f; 0.0f; 1.0f |]
    Assert.Equal<float32[]>([| 0.0f; 0.5f; 1.0f |], Tensor.toArray (Classifier.toUnitRange MinusOneToOne x))
    Assert.Equal<float32[]>(Tensor.toArray x, Tensor.toArray (Classifier.toUnitRange ZeroToOne x))

[<Fact>]
let ``shifted training images move their content by at most maxShift pixels and fill the border with 0`` () =
    // 200 images with one lit pixel at (row 10, column 12)
    let n = 200

    let images =
        Tensor.ofArray
            [| n; 1; 28; 28 |]
            (Array.init (n * 784) (fun e -> if e % 784 = 10 * 28 + 12 then 1.0f else 0.0f))

    let shifted = Tensor.toArray (Classifier.shiftImages (Random.key 5UL) 2 images)
    let offsets = HashSet<int * int>()

    for i in 0 .. n - 1 do
        let lit = [|
            for p in 0..783 do
                if shifted.[i * 784 + p] <> 0.0f then
                    p
        |]

        Assert.Equal(1, lit.Length)
        Assert.Equal(1.0f, shifted.[i * 784 + lit.[0]])
        let dy, dx = 10 - lit.[0] / 28, 12 - lit.[0] % 28
        Assert.True(abs dy <= 2 && abs dx <= 2, sprintf "offset %d, %d" dy dx)
        offsets.Add((dy, dx)) |> ignore

    Assert.Equal(25, offsets.Count)
    // content shifted out of the frame is dropped, and the uncovered border is zero
    let full = Tensor.ones [| 30; 1; 28; 28 |]
    let s = Tensor.toArray (Classifier.shiftImages (Random.key 6UL) 2 full)

    Assert.True(
        s
        |> Array.chunkBySize 784
        |> Array.forall (fun img -> Array.sum img >= 26.0f * 26.0f)
    )

    Assert.True(s |> Array.chunkBySize 784 |> Array.exists (fun img -> Array.sum img < 784.0f))
    Assert.Equal<float32[]>(Tensor.toArray full, Tensor.toArray (Classifier.shiftImages (Random.key 6UL) 0 full))

// ------------------------------------------------------------------------------ neighbourhood metrics

let private points (xs: float list) =
    xs |> List.map (fun x -> [| x |]) |> List.toArray

[<Fact>]
let ``kth neighbour radii leave the row itself out`` () =
    // 0 1 2 3 10: first neighbours at 1 1 1 1 7, second at 2 1 1 2 8
    Assert.Equal<float[]>(
        [| 1.0; 1.0; 1.0; 1.0; 7.0 |],
        Metrics.kthNeighbourRadii 1 (points [ 0.0; 1.0; 2.0; 3.0; 10.0 ])
    )

    Assert.Equal<float[]>(
        [| 2.0; 1.0; 1.0; 2.0; 8.0 |],
        Metrics.kthNeighbourRadii 2 (points [ 0.0; 1.0; 2.0; 3.0; 10.0 ])
    )

    Assert.Throws<ArgumentException>(fun () ->
        Metrics.kthNeighbourRadii 5 (points [ 0.0; 1.0; 2.0; 3.0; 10.0 ]) |> ignore)
    |> ignore

[<Fact>]
let ``precision recall density and coverage of a small 1-D example, worked by hand`` () =
    let real = points [ 0.0; 1.0; 2.0; 3.0; 10.0 ]
    let fake = points [ 0.5; 20.0; 2.5 ]
    // k = 1. Real radii 1 1 1 1 7; fake radii 2 (0.5→2.5) 17.5 (20→2.5) 2 (2.5→0.5).
    // Precision: 0.5 is 0.5 from real 0 (< 1), 2.5 is 0.5 from 2; 20 is 10 from 10 (not < 7): 2/3.
    // Recall: every real row is within a fake radius (10 is 10 from 20, < 17.5): 1.
    let p, r = Metrics.precisionRecall 1 real fake
    near 1e-12 "precision" (2.0 / 3.0) p
    near 1e-12 "recall" 1.0 r
    // Density: 0.5 lies in the balls of 0 and 1, 2.5 in those of 2 and 3, 20 in none: 4 / (1·3).
    // Coverage: 0, 1, 2, 3 have a fake row within 1; 10's nearest (2.5) is 7.5 away (not < 7): 4/5.
    let d, c = Metrics.densityCoverage 1 real fake
    near 1e-12 "density" (4.0 / 3.0) d
    near 1e-12 "coverage" 0.8 c

[<Fact>]
let ``a set scored against itself has full precision recall and coverage, and density 1`` () =
    let x = gaussianRows 21UL 200 16
    let p, r = Metrics.precisionRecall 3 x x
    let d, c = Metrics.densityCoverage 5 x x
    near 1e-12 "precision" 1.0 p
    near 1e-12 "recall" 1.0 r
    near 1e-12 "coverage" 1.0 c
    // each ball holds its centre and its 4 nearest neighbours strictly inside (the 5th is on the
    // boundary) when no distances tie: 5 per ball, 5·N / (5·N)
    near 1e-12 "density" 1.0 d

[<Fact>]
let ``a distant set has no precision recall density or coverage, and a shifted one less than a fresh sample`` () =
    let x = gaussianRows 22UL 300 8
    let far = x |> Array.map (Array.map (fun v -> v + 100.0))
    Assert.Equal((0.0, 0.0), Metrics.precisionRecall 3 x far)
    Assert.Equal((0.0, 0.0), Metrics.densityCoverage 5 x far)
    let fresh = gaussianRows 23UL 300 8
    let shifted = fresh |> Array.map (Array.map (fun v -> v + 1.5))
    let pf, rf = Metrics.precisionRecall 3 x fresh
    let ps, rs = Metrics.precisionRecall 3 x shifted
    Assert.True(pf > 0.6 && rf > 0.6 && ps < pf && rs < rf, sprintf "fresh %g %g, shifted %g %g" pf rf ps rs)
    let df, cf = Metrics.densityCoverage 5 x fresh
    let ds, cs = Metrics.densityCoverage 5 x shifted

    Assert.True(
        df > 0.7 && df < 1.3 && cf > 0.8 && ds < df && cs < cf,
        sprintf "fresh %g %g, shifted %g %g" df cf ds cs
    )

[<Fact>]
let ``pairwise distances are Euclidean`` () =
    let d =
        Metrics.pairwiseDistances [| [| 0.0; 0.0 |]; [| 1.0; 1.0 |] |] [| [| 3.0; 4.0 |] |]

    near 1e-12 "d00" 5.0 d.[0].[0]
    near 1e-12 "d10" (sqrt 13.0) d.[1].[0]
