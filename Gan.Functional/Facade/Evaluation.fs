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
