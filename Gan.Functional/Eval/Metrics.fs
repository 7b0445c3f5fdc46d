namespace Gan.Functional.Eval

open System
open System.Numerics.Tensors
open Gan.Functional

/// The mean and the (population) standard deviation of repeated estimates: the Inception Score
/// over its splits, the kernel distance over its subsets.
type MeanStd = { Mean: float; Std: float }

/// The first two moments of a feature set, all a Fréchet distance needs (so the real test set's
/// can be computed once and kept): the mean and the unbiased covariance (NumPy's `np.cov`).
type FeatureStats = {
    /// The number of feature vectors.
    Count: int
    /// The mean feature vector [D].
    Mean: float[]
    /// The D×D covariance, divided by Count − 1.
    Covariance: float[,]
}

/// A histogram of predicted (or assigned) classes and how far it is from uniform.
type Coverage = {
    /// Samples per class (or mode).
    Counts: int[]
    /// Classes with at least one sample.
    Covered: int
    /// KL(p ‖ uniform) = Σ p ln(p·K) of the normalised histogram (0 ln 0 = 0); 0 when every class
    /// has the same count, ln K when all samples fall in one class; NaN for an empty histogram.
    KlToUniform: float
}

/// Sample-quality metrics as pure functions of classifier outputs and features, in float64.
/// Feature sets and probability rows are `float[][]` (one row per sample); <c>Metrics.rows</c>
/// converts an [N, D] tensor.
module Metrics =

    let private fail name (message: string) : 'a = invalidArg name message

    let private checkRows (name: string) (minRows: int) (rows: float[][]) =
        if rows.Length < minRows then
            fail name (sprintf "%s: needs at least %d rows" name minRows)

        let d = rows.[0].Length

        if d = 0 then
            fail name (sprintf "%s: rows must not be empty" name)

        for i in 0 .. rows.Length - 1 do
            if rows.[i].Length <> d then
                fail name (sprintf "%s: row %d has %d values, row 0 has %d" name i rows.[i].Length d)

        d

    let private meanStd (xs: float[]) =
        let m = Array.average xs
        let v = xs |> Array.averageBy (fun x -> (x - m) * (x - m))
        { Mean = m; Std = sqrt v }

    /// The rows of an [N, D] tensor as float64 arrays (a [N] tensor gives N rows of one value).
    let rows (t: Tensor) : float[][] =
        let s = Tensor.shape t

        let n, d =
            match s.Length with
            | 1 -> s.[0], 1
            | 2 -> s.[0], s.[1]
            | _ -> Shape.fail "Metrics.rows" (sprintf "expected [N, D], got %s" (Shape.show s))

        let data = Tensor.toArray64 t
        Array.init n (fun i -> Array.sub data (i * d) d)

    // ------------------------------------------------------------------ Inception Score

    /// The Inception Score of class-probability rows p(y|x) (Salimans et al. 2016):
    /// exp(E_x KL(p(y|x) ‖ p(y))) with p(y) the mean row, computed on `splits` consecutive,
    /// near-equal parts of the rows (sizes differ by at most one); the mean and population std
    /// over the parts, as the original code. A perfect, class-balanced one-hot output over K
    /// classes scores K; a constant output scores 1. Rows must be non-negative and sum to 1
    /// (within 1e-3).
    let inceptionScoreWith (splits: int) (probs: float[][]) : MeanStd =
        let k = checkRows "probs" 1 probs

        if splits < 1 || splits > probs.Length then
            fail "splits" (sprintf "inceptionScore: splits must be in [1, %d], got %d" probs.Length splits)

        for i in 0 .. probs.Length - 1 do
            let r = probs.[i]

            if r |> Array.exists (fun p -> not (p >= 0.0) || Double.IsInfinity p) then
                fail "probs" (sprintf "inceptionScore: row %d has a negative or non-finite value" i)

            if abs (Array.sum r - 1.0) > 1e-3 then
                fail
                    "probs"
                    (sprintf "inceptionScore: row %d sums to %g, not 1 (logits, not probabilities?)" i (Array.sum r))

        let n = probs.Length

        let scores =
            Array.init splits (fun s ->
                let lo = int (int64 s * int64 n / int64 splits)
                let hi = int (int64 (s + 1) * int64 n / int64 splits)
                let part = probs.[lo .. hi - 1]
                let py = Array.init k (fun j -> part |> Array.averageBy (fun r -> r.[j]))

                let kl (r: float[]) =
                    let mutable acc = 0.0

                    for j in 0 .. k - 1 do
                        if r.[j] > 0.0 then
                            acc <- acc + r.[j] * (log r.[j] - log py.[j])

                    acc

                exp (part |> Array.averageBy kl))

        meanStd scores

    /// The Inception Score over 10 splits (see <see cref="inceptionScoreWith"/>).
    let inceptionScore (probs: float[][]) = inceptionScoreWith 10 probs

    // ------------------------------------------------------------------ linear algebra

    /// The eigen-decomposition A = V·diag(λ)·Vᵀ of a symmetric matrix by the cyclic Jacobi
    /// method (only the symmetric part (A + Aᵀ)/2 is used): the eigenvalues, ascending, and the
    /// orthonormal eigenvectors as the columns of V in the same order. Accurate to rounding for
    /// any conditioning; O(n³) per sweep, about ten sweeps (fine up to a few hundred dimensions).
    let symmetricEigen (a: float[,]) : float[] * float[,] =
        let n = Array2D.length1 a

        if Array2D.length2 a <> n then
            fail "a" (sprintf "symmetricEigen: the matrix must be square, got %dx%d" n (Array2D.length2 a))

        let m = Array2D.init n n (fun i j -> 0.5 * (a.[i, j] + a.[j, i]))

        if
            m
            |> Seq.cast<float>
            |> Seq.exists (fun v -> Double.IsNaN v || Double.IsInfinity v)
        then
            fail "a" "symmetricEigen: the matrix has a non-finite entry"

        let v = Array2D.init n n (fun i j -> if i = j then 1.0 else 0.0)
        let mutable total = 0.0

        for i in 0 .. n - 1 do
            for j in 0 .. n - 1 do
                total <- total + m.[i, j] * m.[i, j]

        let offNorm () =
            let mutable off = 0.0

            for p in 0 .. n - 2 do
                for q in p + 1 .. n - 1 do
                    off <- off + m.[p, q] * m.[p, q]

            off

        let mutable sweep = 0

        while sweep < 100 && offNorm () > 1e-30 * total do
            sweep <- sweep + 1

            for p in 0 .. n - 2 do
                for q in p + 1 .. n - 1 do
                    let apq = m.[p, q]

                    if apq <> 0.0 then
                        // the rotation J (c at pp and qq, s at pq, −s at qp) with (JᵀAJ)_pq = 0
                        let theta = (m.[q, q] - m.[p, p]) / (2.0 * apq)

                        let t =
                            if abs theta > 1e150 then
                                0.5 / theta
                            else
                                (if theta >= 0.0 then 1.0 else -1.0) / (abs theta + sqrt (theta * theta + 1.0))

                        let c = 1.0 / sqrt (t * t + 1.0)
                        let s = t * c

                        for k in 0 .. n - 1 do
                            let akp = m.[k, p]
                            let akq = m.[k, q]
                            m.[k, p] <- c * akp - s * akq
                            m.[k, q] <- s * akp + c * akq

                        for k in 0 .. n - 1 do
                            let apk = m.[p, k]
                            let aqk = m.[q, k]
                            m.[p, k] <- c * apk - s * aqk
                            m.[q, k] <- s * apk + c * aqk

                        m.[p, q] <- 0.0
                        m.[q, p] <- 0.0

                        for k in 0 .. n - 1 do
                            let vkp = v.[k, p]
                            let vkq = v.[k, q]
                            v.[k, p] <- c * vkp - s * vkq
                            v.[k, q] <- s * vkp + c * vkq

        let order = Array.init n id |> Array.sortBy (fun i -> m.[i, i])
        order |> Array.map (fun i -> m.[i, i]), Array2D.init n n (fun r c -> v.[r, order.[c]])

    let private matmul (a: float[,]) (b: float[,]) =
        let n, k, p = Array2D.length1 a, Array2D.length2 a, Array2D.length2 b
        let c = Array2D.zeroCreate n p

        for i in 0 .. n - 1 do
            for l in 0 .. k - 1 do
                let ail = a.[i, l]

                if ail <> 0.0 then
                    for j in 0 .. p - 1 do
                        c.[i, j] <- c.[i, j] + ail * b.[l, j]

        c

    /// The principal square root of a symmetric positive semi-definite matrix:
    /// V·diag(√max(λ, 0))·Vᵀ from <see cref="symmetricEigen"/> (eigenvalues that rounding made
    /// slightly negative count as 0). The result is symmetric PSD and squares back to A.
    let sqrtPsd (a: float[,]) : float[,] =
        let lambda, v = symmetricEigen a
        let n = lambda.Length
        let vs = Array2D.init n n (fun i j -> v.[i, j] * sqrt (max lambda.[j] 0.0))
        let vt = Array2D.init n n (fun i j -> v.[j, i])
        let r = matmul vs vt
        Array2D.init n n (fun i j -> 0.5 * (r.[i, j] + r.[j, i]))

    // ------------------------------------------------------------------ Fréchet distance

    /// The mean and unbiased covariance of a feature set (at least two rows).
    let featureStats (features: float[][]) : FeatureStats =
        let d = checkRows "features" 2 features
        let n = features.Length
        let mean = Array.zeroCreate d

        for r in features do
            for j in 0 .. d - 1 do
                mean.[j] <- mean.[j] + r.[j]

        for j in 0 .. d - 1 do
            mean.[j] <- mean.[j] / float n

        let cov = Array2D.zeroCreate d d
        let c = Array.zeroCreate d

        for r in features do
            for j in 0 .. d - 1 do
                c.[j] <- r.[j] - mean.[j]

            for i in 0 .. d - 1 do
                let ci = c.[i]

                if ci <> 0.0 then
                    for j in i .. d - 1 do
                        cov.[i, j] <- cov.[i, j] + ci * c.[j]

        for i in 0 .. d - 1 do
            for j in i .. d - 1 do
                let v = cov.[i, j] / float (n - 1)
                cov.[i, j] <- v
                cov.[j, i] <- v

        {
            Count = n
            Mean = mean
            Covariance = cov
        }

    /// The Fréchet distance between Gaussians fitted to two feature sets (FID's formula, here on
    /// a classifier's features: FCD): ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁^½ Σ₂ Σ₁^½)^½). Both roots are
    /// of symmetric PSD matrices (<see cref="sqrtPsd"/>), so it is stable even for singular
    /// covariances (fewer samples than dimensions); rounding below 0 is clamped to 0.
    let frechetDistanceOfStats (a: FeatureStats) (b: FeatureStats) : float =
        let d = a.Mean.Length

        if b.Mean.Length <> d then
            fail "b" (sprintf "frechetDistance: feature dimensions differ (%d and %d)" d b.Mean.Length)

        let mutable diff2 = 0.0

        for j in 0 .. d - 1 do
            let e = a.Mean.[j] - b.Mean.[j]
            diff2 <- diff2 + e * e

        let mutable traces = 0.0

        for j in 0 .. d - 1 do
            traces <- traces + a.Covariance.[j, j] + b.Covariance.[j, j]

        let s1 = sqrtPsd a.Covariance
        let inner = matmul (matmul s1 b.Covariance) s1
        let lambda, _ = symmetricEigen inner
        let trSqrt = lambda |> Array.sumBy (fun l -> sqrt (max l 0.0))
        max 0.0 (diff2 + traces - 2.0 * trSqrt)

    /// The Fréchet distance between two feature sets of one dimension (at least two rows each).
    let frechetDistance (a: float[][]) (b: float[][]) : float =
        frechetDistanceOfStats (featureStats a) (featureStats b)

    // ------------------------------------------------------------------ kernel distance

    let private mmd2 (x: float[][]) (y: float[][]) =
        let d = float x.[0].Length

        let inline k (u: float[]) (v: float[]) =
            let t = TensorPrimitives.Dot(ReadOnlySpan u, ReadOnlySpan v) / d + 1.0
            t * t * t

        let within (z: float[][]) =
            let mutable acc = 0.0

            for i in 0 .. z.Length - 1 do
                for j in i + 1 .. z.Length - 1 do
                    acc <- acc + k z.[i] z.[j]

            2.0 * acc / float (z.Length * (z.Length - 1))

        let mutable cross = 0.0

        for u in x do
            for v in y do
                cross <- cross + k u v

        within x + within y - 2.0 * cross / (float x.Length * float y.Length)

    /// The kernel distance (KID on a classifier's features: KCD) of Bińkowski et al. 2018: the
    /// unbiased estimate of MMD² with the cubic polynomial kernel k(x, y) = (xᵀy/D + 1)³ over
    /// all rows (at least two per set; the sets may differ in size). About 0 (either sign) for
    /// two samples of one distribution. Cost O((m + n)²·D).
    let kernelDistance (a: float[][]) (b: float[][]) : float =
        let d = checkRows "a" 2 a

        if checkRows "b" 2 b <> d then
            fail "b" "kernelDistance: feature dimensions differ"

        mmd2 a b

    /// The kernel distance averaged over `subsets` random subsets of `subsetSize` rows of each
    /// set (drawn without replacement, subset i from <c>Random.foldIn key i</c>; sizes above a
    /// set's count are cut to it), as Bińkowski et al.'s code and torch-fidelity (100 subsets of
    /// 1000) do: the mean and population std over the subsets. Subsets run in parallel; the
    /// result does not depend on the thread count.
    let kernelDistanceSubsets (key: Key) (subsets: int) (subsetSize: int) (a: float[][]) (b: float[][]) : MeanStd =
        let d = checkRows "a" 2 a

        if checkRows "b" 2 b <> d then
            fail "b" "kernelDistance: feature dimensions differ"

        if subsets < 1 then
            fail "subsets" (sprintf "kernelDistance: needs at least one subset, got %d" subsets)

        if subsetSize < 2 then
            fail "subsetSize" (sprintf "kernelDistance: subsets need at least 2 rows, got %d" subsetSize)

        let pick (k: Key) (rows: float[][]) =
            let m = min subsetSize rows.Length
            (Random.permutation k rows.Length).[.. m - 1] |> Array.map (fun i -> rows.[i])

        Array.Parallel.init subsets (fun s ->
            let ka, kb = Random.split (Random.foldIn key s)
            mmd2 (pick ka a) (pick kb b))
        |> meanStd

    // ------------------------------------------------------------------ coverage

    /// The index of each row's largest value (the first on ties): predicted classes from
    /// probability rows.
    let argmaxRows (probs: float[][]) : int[] =
        probs
        |> Array.map (fun r ->
            let mutable best = 0

            for j in 1 .. r.Length - 1 do
                if r.[j] > r.[best] then
                    best <- j

            best)

    /// KL(p ‖ uniform) = Σ p ln(p·K) of a histogram of K bins, normalised (0 ln 0 = 0): 0 for a
    /// uniform histogram; NaN when it is empty.
    let klToUniform (counts: int[]) : float =
        if counts.Length = 0 then
            fail "counts" "klToUniform: needs at least one bin"

        if counts |> Array.exists (fun c -> c < 0) then
            fail "counts" "klToUniform: counts must be non-negative"

        let total = counts |> Array.sumBy float

        if total = 0.0 then
            nan
        else
            let k = float counts.Length

            counts
            |> Array.sumBy (fun c ->
                if c = 0 then
                    0.0
                else
                    let p = float c / total
                    p * log (p * k))

    /// The histogram of `labels` over `classes` bins, the bins with at least one label and the
    /// KL to uniform. Labels outside [0, classes) raise ArgumentException.
    let coverage (classes: int) (labels: int[]) : Coverage =
        if classes < 1 then
            fail "classes" (sprintf "coverage: needs at least one class, got %d" classes)

        let counts = Array.zeroCreate classes

        for l in labels do
            if l < 0 || l >= classes then
                fail "labels" (sprintf "coverage: label %d is outside [0, %d)" l classes)

            counts.[l] <- counts.[l] + 1

        {
            Counts = counts
            Covered = counts |> Array.filter (fun c -> c > 0) |> Array.length
            KlToUniform = klToUniform counts
        }

    /// The class coverage of probability rows: the histogram of their argmax classes (see
    /// <see cref="coverage"/>).
    let classCoverage (probs: float[][]) : Coverage =
        let k = checkRows "probs" 1 probs
        coverage k (argmaxRows probs)

    // ------------------------------------------------------------------ neighbourhood metrics

    /// The Euclidean distance of every row of `a` to every row of `b`: [a.Length][b.Length].
    let pairwiseDistances (a: float[][]) (b: float[][]) : float[][] =
        Array.Parallel.init a.Length (fun i ->
            let u = a.[i]
            Array.init b.Length (fun j -> TensorPrimitives.Distance(ReadOnlySpan u, ReadOnlySpan b.[j])))

    /// Each row's distance to its `k`-th nearest other row of the same set (itself excluded):
    /// the radius of the ball around it that estimates the set's manifold (Kynkäänniemi et al.).
    let kthNeighbourRadii (k: int) (rows: float[][]) : float[] =
        if k < 1 || k >= rows.Length then
            fail "k" (sprintf "kthNeighbourRadii: k must be in [1, %d) for %d rows, got %d" rows.Length rows.Length k)

        let d = pairwiseDistances rows rows

        d
        |> Array.mapi (fun i row ->
            let others =
                Array.init (row.Length - 1) (fun j -> if j < i then row.[j] else row.[j + 1])

            Array.sortInPlace others
            others.[k - 1])

    let private checkPair (k: int) (real: float[][]) (fake: float[][]) =
        let d = checkRows "real" (k + 1) real

        if checkRows "fake" 1 fake <> d then
            fail "fake" "feature dimensions differ"

    /// Improved precision and recall (Kynkäänniemi et al. 2019) with `k` nearest neighbours:
    /// precision is the share of `fake` rows inside the real manifold (closer than some real
    /// row's k-NN radius to that row), recall the share of `real` rows inside the fake manifold.
    /// Comparisons are strict (`<`), as the reference code (`prdc`). Both in [0, 1].
    let precisionRecall (k: int) (real: float[][]) (fake: float[][]) : float * float =
        checkPair k real fake

        if fake.Length <= k then
            fail "fake" (sprintf "precisionRecall: needs more than k = %d fake rows" k)

        let realRadii = kthNeighbourRadii k real
        let fakeRadii = kthNeighbourRadii k fake
        let d = pairwiseDistances real fake // [real][fake]

        let precision =
            Array.init fake.Length (fun j ->
                Seq.exists (fun i -> d.[i].[j] < realRadii.[i]) (seq { 0 .. real.Length - 1 }))
            |> Array.averageBy (fun b -> if b then 1.0 else 0.0)

        let recall =
            Array.init real.Length (fun i ->
                Seq.exists (fun j -> d.[i].[j] < fakeRadii.[j]) (seq { 0 .. fake.Length - 1 }))
            |> Array.averageBy (fun b -> if b then 1.0 else 0.0)

        precision, recall

    /// Density and coverage (Naeem et al. 2020) with `k` nearest neighbours of the real rows:
    /// density = (1 / (k·M)) Σ_fake #{real balls containing it} (1 on average for samples of the
    /// real distribution, unbounded above); coverage = the share of real rows whose ball contains
    /// at least one fake row, in [0, 1]. Strict comparisons, as the reference code (`prdc`).
    let densityCoverage (k: int) (real: float[][]) (fake: float[][]) : float * float =
        checkPair k real fake
        let radii = kthNeighbourRadii k real
        let d = pairwiseDistances real fake

        let inside =
            Array.init fake.Length (fun j ->
                let mutable n = 0

                for i in 0 .. real.Length - 1 do
                    if d.[i].[j] < radii.[i] then
                        n <- n + 1

                n)

        let density = float (Array.sum inside) / (float k * float fake.Length)

        let coverage =
            real
            |> Array.mapi (fun i _ -> if Array.min d.[i] < radii.[i] then 1.0 else 0.0)
            |> Array.average

        density, coverage
