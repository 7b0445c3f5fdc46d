namespace Gan.Functional.CSharp

open System
open System.Collections.Generic
open Gan.Functional
open Gan.Functional.Eval
open Gan.Functional.Gan

/// How the classifier backbone is trained (see <c>Classifier.recipe</c>): settable, so a caller
/// can shorten it for a quick test; start from <see cref="ClassifierRecipeOptions.For"/>.
[<Sealed>]
type ClassifierRecipeOptions() =
    /// The seed of the initialisation and shuffling key.
    member val Seed = 0UL with get, set
    /// Passes over the training set.
    member val Epochs = 4 with get, set
    /// Examples per step (at least 2 and at most the training-set size).
    member val BatchSize = 128 with get, set
    /// Adam's learning rate in the first epoch.
    member val LearningRate = 2e-3 with get, set
    /// The learning rate is multiplied by this after every epoch.
    member val LrDecay = 0.5 with get, set
    /// Training images are shifted by up to this many pixels (0: no augmentation).
    member val MaxShift = 2 with get, set

    /// The fixed recipe of "mnist" or "fashion-mnist"; throws ArgumentException for others.
    static member For(dataset: string) =
        let r = Classifier.recipeFor dataset

        ClassifierRecipeOptions(
            Seed = r.Seed,
            Epochs = r.Epochs,
            BatchSize = r.BatchSize,
            LearningRate = r.Lr,
            LrDecay = r.LrDecay,
            MaxShift = r.MaxShift
        )

    member internal this.ToRecipe() : ClassifierRecipe = {
        Seed = this.Seed
        Epochs = this.Epochs
        BatchSize = this.BatchSize
        Lr = this.LearningRate
        LrDecay = this.LrDecay
        MaxShift = this.MaxShift
    }

/// The sample-quality metrics of a set of generated images.
[<Sealed>]
type ImageScoreResult internal (s: ImageScores) =
    /// Classifier Inception Score, mean over 10 splits: exp E[KL(p(y|x) ‖ p(y))].
    member _.InceptionScore = s.InceptionScore.Mean
    /// Its standard deviation over the splits.
    member _.InceptionScoreStd = s.InceptionScore.Std
    /// Fréchet Classifier Distance to the real test set's penultimate features.
    member _.Fcd = s.Fcd
    /// Kernel Classifier Distance (unbiased MMD², cubic kernel), mean over random subsets.
    member _.Kid = s.Kid.Mean
    /// Its standard deviation over the subsets.
    member _.KidStd = s.Kid.Std
    /// KL(class histogram ‖ uniform) of the predicted classes.
    member _.ClassKl = s.Classes.KlToUniform
    /// Samples per predicted class.
    member _.ClassCounts = Array.copy s.Classes.Counts
    /// Classes predicted for at least one sample.
    member _.ClassesCovered = s.Classes.Covered

/// A trained classifier backbone (a small CNN for 28×28 grey images, pixels in [0, 1]; see
/// <c>Gan.Functional.Eval.Classifier</c>): predictions, features and the metrics built on them.
/// Images are float32 [count, 1, 28, 28], flat, row-major.
[<Sealed>]
type Backbone internal (vars: Nn.Variables) =
    static let tensor (images: float32[]) (count: int) =
        if count < 1 || images.Length <> count * 784 then
            invalidArg
                "images"
                (sprintf "expected %d images of 1×28×28 (%d values), got %d values" count (count * 784) images.Length)

        Tensor.ofArray [| count; 1; 28; 28 |] images

    /// The backbone from named tensors (as written by <see cref="Backbone.ExportWeights"/>);
    /// throws <c>Checkpoint.CheckpointMismatchException</c> naming a missing or misshapen one.
    static member Load(tensors: IEnumerable<NamedTensor>) =
        Backbone(Classifier.ofNamed (tensors |> Seq.map (fun t -> t.Name, t.ToTensor()) |> Seq.toList))

    /// The weights as named tensors ("features.0.weight", …, "classifier.1.bias").
    member _.ExportWeights() : NamedTensor[] =
        Classifier.toNamed vars
        |> List.map (fun (n, t) -> NamedTensor.OfTensor(n, t))
        |> List.toArray

    /// The predicted class (0–9) of each image.
    member _.PredictClasses(images: float32[], count: int) : int[] =
        Classifier.predictClasses vars (tensor images count)

    /// The 128 penultimate features of each image (one row per image).
    member _.Features(images: float32[], count: int) : float[][] =
        Classifier.featuresOf vars (tensor images count)

    /// The share of images whose predicted class equals the label.
    member _.Accuracy(images: float32[], count: int, labels: int[]) : float =
        Classifier.accuracy vars (tensor images count) labels

    /// Scores generated images against the real test set's features (<see cref="Backbone.Features"/>
    /// of the test images): IS over 10 splits, FCD, KID over 100 subsets of up to 1,000 drawn from
    /// `seed`, and the class coverage. Needs at least 10 images.
    member _.Score(images: float32[], count: int, realFeatures: float[][], seed: uint64) =
        ImageScoreResult(Classifier.score vars (Random.key seed) realFeatures (tensor images count))

    /// The Stacked MNIST mode (100·d1 + 10·d2 + d3) of each 3-channel image [count, 3, 28, 28],
    /// each channel labelled by this classifier.
    member _.StackedModes(images: float32[], count: int) : int[] =
        if count < 1 || images.Length <> count * 3 * 784 then
            invalidArg "images" (sprintf "expected %d images of 3×28×28, got %d values" count images.Length)

        Classifier.stackedModes vars (Tensor.ofArray [| count; 3; 28; 28 |] images)

/// Trains the classifier backbone epoch by epoch with a fixed recipe, for the host to show
/// progress and cache the result. Images as in <see cref="Backbone"/>.
[<Sealed>]
type ClassifierTrainer private (recipe: ClassifierRecipe, initial: ClassifierState) =
    let mutable state = initial

    /// A fresh classifier drawn from the recipe's seed.
    static member Create(recipe: ClassifierRecipeOptions) =
        let r = recipe.ToRecipe()
        ClassifierTrainer(r, Classifier.init (Random.key r.Seed))

    /// One epoch (0-based `epoch` sets the learning rate) over `count` labelled training images;
    /// the mean loss. Run epochs 0 .. Epochs − 1 in order.
    member _.TrainEpoch(images: float32[], count: int, labels: int[], epoch: int) : float =
        if images.Length <> count * 784 then
            invalidArg "images" (sprintf "expected %d images of 1×28×28, got %d values" count images.Length)

        let next, loss =
            Classifier.trainEpoch recipe epoch (Tensor.ofArray [| count; 1; 28; 28 |] images) labels state

        state <- next
        loss

    /// The classifier as it is now.
    member _.Backbone = Backbone(state.Vars)

/// The mode metrics of 2-D samples against a Gaussian mixture (VEEGAN/PacGAN).
[<Sealed>]
type ModeScoreResult internal (m: ModeMetrics, modes: int) =
    /// Samples scored.
    member _.Samples = m.Samples
    /// The number of modes of the mixture.
    member _.Modes = modes
    /// Modes nearest to at least one high-quality sample.
    member _.ModesCovered = m.ModesCovered
    /// Modes nearest to at least `Threshold` high-quality samples.
    member _.ModesCoveredAtThreshold = m.ModesCoveredAtThreshold
    /// The threshold of ModesCoveredAtThreshold (20).
    member _.Threshold = m.Threshold
    /// Samples within 3σ of their nearest mode.
    member _.HighQuality = m.HighQuality
    /// HighQuality / Samples.
    member _.HighQualityShare = m.HighQualityShare
    /// KL(mode histogram ‖ uniform) of the high-quality samples (NaN when there are none).
    member _.KlToUniform = m.KlToUniform
    /// High-quality samples per mode.
    member _.ModeCounts = Array.copy m.ModeCounts

/// Coverage of the 1,000 Stacked MNIST modes.
[<Sealed>]
type StackedScoreResult internal (c: Eval.Coverage, samples: int) =
    /// Samples scored.
    member _.Samples = samples
    /// Modes (of 1,000) with at least one sample.
    member _.ModesCovered = c.Covered
    /// KL(mode histogram ‖ uniform).
    member _.KlToUniform = c.KlToUniform

/// The 2-D Gaussian mixtures ring8 and grid25 (PacGAN's settings) and Stacked MNIST helpers.
[<AbstractClass; Sealed>]
type Mixture =
    /// "ring8", "grid25".
    static member Names = List.toArray Mixtures.names

    /// True for a mixture name.
    static member IsMixture(name: string) = List.contains name Mixtures.names

    /// The mode centres of a mixture ([x, y] each); ArgumentException for an unknown name.
    static member Means(name: string) : float[][] =
        (Mixtures.byName name).Means |> Array.map Array.copy

    /// The standard deviation of each mode.
    static member Std(name: string) = (Mixtures.byName name).Std

    /// `count` points from the mixture, drawn from `seed`: float32 [count, 2], flat.
    static member Sample(name: string, seed: uint64, count: int) : float32[] =
        Tensor.toArray (Mixtures.sample (Mixtures.byName name) (Random.key seed) count)

    /// The default number of samples of the mode metrics (2,500).
    static member DefaultSamples = Mixtures.defaultSamples

    /// Mode metrics of `count` points (float32 [count, 2], flat): high quality within 3σ,
    /// the 20-sample threshold.
    static member Score(name: string, points: float32[], count: int) =
        if points.Length <> 2 * count then
            invalidArg "points" (sprintf "expected %d points of 2 values, got %d values" count points.Length)

        let m = Mixtures.byName name

        let rows =
            Array.init count (fun i -> [| float points.[2 * i]; float points.[2 * i + 1] |])

        ModeScoreResult(Mixtures.modeMetrics m rows, m.Means.Length)

    /// The number of samples of the Stacked MNIST metrics (26,000).
    static member StackedSamples = Mixtures.stackedSamples

    /// `count` triples of indices into a pool of `poolSize` digit images, drawn from `seed`.
    static member StackedTriples(seed: uint64, count: int, poolSize: int) : int[][] =
        Mixtures.stackedTriples (Random.key seed) count poolSize

    /// Modes covered of 1,000 and KL to uniform of Stacked MNIST modes (100·d1 + 10·d2 + d3).
    static member StackedCoverage(modes: int[]) =
        StackedScoreResult(Mixtures.stackedCoverage modes, modes.Length)

/// Latent-space tools: interpolation and vector arithmetic (S3). Vectors are float32 arrays.
[<AbstractClass; Sealed>]
type Latent =
    static member private Walk (f: Tensor -> Tensor -> int -> Tensor) (z0: float32[]) (z1: float32[]) (steps: int) =
        if z0.Length <> z1.Length || z0.Length = 0 then
            invalidArg
                "z1"
                (sprintf "the end points have %d and %d values; they must be equal and non-zero" z0.Length z1.Length)

        if steps < 1 then
            invalidArg "steps" (sprintf "steps must be at least 1, got %d" steps)

        Tensor.toArray (f (Tensor.ofArray [| z0.Length |] z0) (Tensor.ofArray [| z1.Length |] z1) steps)

    /// `steps` points on the segment z0 → z1, ends included: flat [steps, D].
    static member Lerp(z0: float32[], z1: float32[], steps: int) = Latent.Walk Sampling.lerp z0 z1 steps

    /// `steps` points on the great circle z0 → z1 (slerp), ends included: flat [steps, D].
    static member Slerp(z0: float32[], z1: float32[], steps: int) = Latent.Walk Sampling.slerp z0 z1 steps

    /// mean(a) − mean(b) + mean(c) over groups of latent vectors of one length D: [D].
    static member Arithmetic(a: float32[][], b: float32[][], c: float32[][]) : float32[] =
        let stack (name: string) (g: float32[][]) =
            if g.Length = 0 then
                invalidArg name (sprintf "group %s is empty" name)

            let d = g.[0].Length

            if g |> Array.exists (fun v -> v.Length <> d) || d <> a.[0].Length then
                invalidArg name "all vectors must have the same length"

            Tensor.ofArray [| g.Length; d |] (Array.concat g)

        if a.Length = 0 then
            invalidArg "a" "group a is empty"

        Tensor.toArray (Sampling.arithmetic (stack "a" a) (stack "b" b) (stack "c" c))

/// Sample-quality metrics of generated images' features against real images' features (one
/// row per image, e.g. ImageNet ResNet-18 pool features): Fréchet distance, KID, precision and
/// recall (k = 3) and density and coverage (k = 5).
[<Sealed>]
type FeatureScoreResult internal (fd: float, kid: MeanStd, pr: float * float, dc: float * float) =
    /// Fréchet distance between Gaussians fitted to the two feature sets (FID's formula).
    member _.Fd = fd
    /// Kernel distance (unbiased MMD², cubic kernel), mean over random subsets.
    member _.Kid = kid.Mean
    /// Its standard deviation over the subsets.
    member _.KidStd = kid.Std
    /// Improved precision (Kynkäänniemi et al. 2019, k = 3): generated images inside the real manifold.
    member _.Precision = fst pr
    /// Improved recall (k = 3): real images inside the generated manifold.
    member _.Recall = snd pr
    /// Density (Naeem et al. 2020, k = 5): about 1 for samples of the real distribution.
    member _.Density = fst dc
    /// Coverage (k = 5): real images with a generated image in their neighbourhood.
    member _.Coverage = snd dc

/// Metrics on feature vectors, for any feature extractor.
[<AbstractClass; Sealed>]
type FeatureMetrics =
    /// The k of precision and recall.
    static member PrecisionRecallK = 3
    /// The k of density and coverage.
    static member DensityCoverageK = 5

    /// Scores `fake` against `real` (at least 6 rows each, one dimension): KID over 100 subsets of
    /// up to 1,000 rows drawn from `seed`.
    static member Score(real: float[][], fake: float[][], seed: uint64) =
        FeatureScoreResult(
            Metrics.frechetDistance fake real,
            Metrics.kernelDistanceSubsets (Random.key seed) 100 1000 fake real,
            Metrics.precisionRecall FeatureMetrics.PrecisionRecallK real fake,
            Metrics.densityCoverage FeatureMetrics.DensityCoverageK real fake
        )
