namespace Gan.Functional.Eval

open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan

/// A classifier being trained: its variables, Adam's state, the steps taken and the key the
/// next step (or epoch shuffle) draws from.
type ClassifierState = {
    Vars: Variables
    Opt: OptimizerState
    Step: int
    Key: Key
}

/// How the backbone is trained: a fixed key and schedule, so the same weights come out on any
/// machine (up to the backend's float32 rounding).
type ClassifierRecipe = {
    /// The seed of <c>Random.key</c> for initialisation and shuffling.
    Seed: uint64
    Epochs: int
    BatchSize: int
    /// Adam's learning rate in the first epoch.
    Lr: float
    /// The learning rate is multiplied by this after every epoch.
    LrDecay: float
    /// Training images are shifted by up to this many pixels in x and y (0: no augmentation).
    MaxShift: int
}

/// The metrics of a set of generated images, scored by the classifier against the real test set.
type ImageScores = {
    /// Classifier Inception Score over 10 splits.
    InceptionScore: MeanStd
    /// Fréchet Classifier Distance on the penultimate features.
    Fcd: float
    /// Kernel Classifier Distance (unbiased MMD², cubic kernel) over random subsets.
    Kid: MeanStd
    /// The histogram of predicted classes and its KL to uniform.
    Classes: Coverage
}

/// A small CNN classifier for 28×28 grey images (MNIST, Fashion-MNIST), the backbone of the
/// sample-quality metrics (it stands in for Inception, whose weights cannot be had here):
/// features = Conv(1→32, 3×3, pad 1) → BatchNorm → ReLU → MaxPool 2 → Conv(32→64, 3×3, pad 1)
/// → BatchNorm → ReLU → MaxPool 2 → Flatten → Linear(3136 → 128) → BatchNorm → ReLU (the 128
/// penultimate features of FCD and KID, of order 1 like Inception's); classifier =
/// Dropout(0.3) → Linear(128 → 10) (logits). Inputs are [N, 1, 28, 28] with pixels in [0, 1]
/// (see <see cref="toUnitRange"/>). Variables are named "features.…" and "classifier.…" as a
/// torch.nn module with those two children would be.
module Classifier =

    /// The number of classes.
    let classes = 10

    /// The length of a feature vector.
    let featureDim = 128

    /// [C, H, W] of one input image.
    let imageShape = [| 1; 28; 28 |]

    let private pool =
        Layer.ofFunction "MaxPool2d(2)" (Tensor.maxPool2d 2 2 (ConvSpec.create 2 0 1 1))

    /// The feature extractor: images [N, 1, 28, 28] → [N, 128] (variables under "features.").
    let features =
        Layer.named
            "features"
            (Layer.sequential [
                Layers.conv2d 1 32 3 1 (Pad 1)
                Normalization.batchNorm 32
                Layers.relu
                pool
                Layers.conv2d 32 64 3 1 (Pad 1)
                Normalization.batchNorm 64
                Layers.relu
                pool
                Layers.flatten
                Layers.linear (64 * 7 * 7) featureDim
                Normalization.batchNorm featureDim
                Layers.relu
            ])

    /// The head: features [N, 128] → logits [N, 10] (variables under "classifier.").
    let head =
        Layer.named "classifier" (Layer.sequential [ Layers.dropout 0.3; Layers.linear featureDim classes ])

    /// The whole network: images → logits.
    let network = {
        Describe = sprintf "Classifier(%s, %s)" features.Describe head.Describe
        Init =
            fun key ->
                let kf, kh = Random.split key
                let f = features.Init kf
                let h = head.Init kh

                {
                    Params = Layer.merge [ f.Params; h.Params ]
                    State = Layer.merge [ f.State; h.State ]
                }
        Apply =
            fun vars ctx x ->
                let keyed i = {
                    ctx with
                        Key = Random.foldIn ctx.Key i
                }

                let h, s1 = features.Apply vars (keyed 0) x
                let y, s2 = head.Apply vars (keyed 1) h
                y, Layer.merge [ s1; s2 ]
    }

    /// The optimizer: Adam with PyTorch's defaults.
    let optimizer = Optimizer.adam

    /// The MNIST backbone's training recipe: 4 epochs of batches of 128 from seed 0, Adam at
    /// 2e-3 decayed ×0.5 per epoch, images shifted by up to 2 pixels (measured: 99.33% test
    /// accuracy; `scripts/train-classifier.fsx mnist`, docs/quality.md).
    let recipe = {
        Seed = 0UL
        Epochs = 4
        BatchSize = 128
        Lr = 2e-3
        LrDecay = 0.5
        MaxShift = 2
    }

    /// The Fashion-MNIST backbone's recipe: MNIST's without the shifts, which slow it down here
    /// (measured: 92.47% test accuracy, `scripts/train-classifier.fsx fashion-mnist`; 91.09%
    /// with shifts).
    let fashionRecipe = { recipe with MaxShift = 0 }

    /// The recipe for "mnist" or "fashion-mnist"; other names raise an ArgumentException.
    let recipeFor (dataset: string) =
        match dataset with
        | "mnist" -> recipe
        | "fashion-mnist" -> fashionRecipe
        | other -> invalidArg "dataset" (sprintf "no classifier recipe for '%s'; known: mnist, fashion-mnist" other)

    /// The learning rate of a recipe at `epoch` (0-based).
    let learningRate (r: ClassifierRecipe) (epoch: int) = r.Lr * (r.LrDecay ** float epoch)

    /// Fresh variables and optimizer state from `key`.
    let init (key: Key) : ClassifierState =
        let ki, kn = Random.split key
        let vars = network.Init ki

        {
            Vars = vars
            Opt = Optimizer.init optimizer vars.Params
            Step = 0
            Key = kn
        }

    let private checkImages (op: string) (images: Tensor) =
        let s = Tensor.shape images

        if s.Length <> 4 || s.[1] <> 1 || s.[2] <> 28 || s.[3] <> 28 then
            Shape.fail op (sprintf "expected images [N, 1, 28, 28], got %s" (Shape.show s))

        s.[0]

    let private oneHot (dtype: DType) (labels: int[]) =
        let data = Array.zeroCreate (labels.Length * classes)

        labels
        |> Array.iteri (fun i l ->
            if l < 0 || l >= classes then
                invalidArg "labels" (sprintf "label %d is outside [0, %d)" l classes)

            data.[i * classes + l] <- 1.0)

        Tensor.cast dtype (Tensor.ofArray64 [| labels.Length; classes |] data)

    /// The mean cross-entropy of logits [N, K] against integer labels:
    /// mean(logsumexp(logits) − logits[label]) (differentiable in the logits).
    let crossEntropy (logits: Tensor) (labels: int[]) : Tensor =
        let s = Tensor.shape logits

        if s.Length <> 2 || s.[0] <> labels.Length || s.[1] <> classes then
            Shape.fail
                "crossEntropy"
                (sprintf "logits %s do not fit %d labels of %d classes" (Shape.show s) labels.Length classes)

        let picked =
            Tensor.sumAxes [| 1 |] false (logits * oneHot (Tensor.dtype logits) labels)

        Tensor.mean (Tensor.logsumexp [| 1 |] false logits - picked)

    /// One Adam step at learning rate `lr` on a batch of images [N, 1, 28, 28] (N ≥ 2, for
    /// BatchNorm) with their labels: the new state and the batch's loss before the step.
    let step (lr: float) (images: Tensor) (labels: int[]) (state: ClassifierState) : ClassifierState * float =
        let n = checkImages "Classifier.step" images

        if n <> labels.Length then
            invalidArg "labels" (sprintf "Classifier.step: %d images but %d labels" n labels.Length)

        let kStep, kNext = Random.split state.Key

        let ctx = {
            Mode = Train
            Key = kStep
            Shard = None
        }

        let result =
            Autodiff.valueAndGradsWithAux
                (fun p ->
                    let logits, s = network.Apply { state.Vars with Params = p } ctx images
                    crossEntropy logits labels, s |> Map.map (fun _ t -> Tensor.detach t))
                state.Vars.Params

        let ps, opt = Optimizer.update optimizer lr result.Grads state.Opt state.Vars.Params

        {
            Vars = {
                Params = ps
                State = Map.fold (fun acc k v -> Map.add k v acc) state.Vars.State result.Aux
            }
            Opt = opt
            Step = state.Step + 1
            Key = kNext
        },
        Tensor.item result.Loss

    /// Each image [N, 1, H, W] translated by its own random (dx, dy) in [−maxShift, maxShift]²
    /// drawn from `key`, the uncovered border filled with 0 (the background of MNIST-like data).
    /// Keeps the dtype; not differentiable.
    let shiftImages (key: Key) (maxShift: int) (images: Tensor) : Tensor =
        let s = Tensor.shape images

        if s.Length <> 4 || s.[1] <> 1 then
            Shape.fail "shiftImages" (sprintf "expected [N, 1, H, W], got %s" (Shape.show s))

        if maxShift < 0 then
            invalidArg "maxShift" (sprintf "shiftImages: maxShift must be non-negative, got %d" maxShift)

        let n, h, w = s.[0], s.[2], s.[3]
        let offsets = Random.randInt key -maxShift (maxShift + 1) (2 * n)

        let shift (src: 'T[]) =
            let out = Array.zeroCreate src.Length

            for i in 0 .. n - 1 do
                let dy, dx = offsets.[2 * i], offsets.[2 * i + 1]
                let b = i * h * w
                let x0, x1 = max 0 -dx, min w (w - dx)

                if x1 > x0 then
                    for y in max 0 -dy .. min h (h - dy) - 1 do
                        Array.blit src (b + (y + dy) * w + x0 + dx) out (b + y * w + x0) (x1 - x0)

            out

        if maxShift = 0 then
            images
        else
            match Tensor.dtype images with
            | Float32 -> Tensor.ofArray s (shift (Tensor.toArray images))
            | Float64 -> Tensor.ofArray64 s (shift (Tensor.toArray64 images))

    /// One epoch: the examples shuffled by a permutation from the state's key, then
    /// ⌊N / batchSize⌋ steps (a last, smaller batch is dropped), each batch shifted by up to
    /// `maxShift` pixels (<see cref="shiftImages"/>). The new state and the mean loss.
    let trainEpochWith
        (lr: float)
        (batchSize: int)
        (maxShift: int)
        (images: Tensor)
        (labels: int[])
        (state: ClassifierState)
        : ClassifierState * float =
        let n = checkImages "Classifier.trainEpoch" images

        if n <> labels.Length then
            invalidArg "labels" (sprintf "Classifier.trainEpoch: %d images but %d labels" n labels.Length)

        if batchSize < 2 || batchSize > n then
            invalidArg "batchSize" (sprintf "Classifier.trainEpoch: batch size must be in [2, %d], got %d" n batchSize)

        let ks = Random.splitN 3 state.Key
        let perm = Random.permutation ks.[0] n
        let mutable st = { state with Key = ks.[2] }
        let mutable total = 0.0
        let batches = n / batchSize

        for b in 0 .. batches - 1 do
            let idx = perm.[b * batchSize .. (b + 1) * batchSize - 1]

            let x =
                shiftImages (Random.foldIn ks.[1] b) maxShift (Tensor.indexSelect 0 idx images)

            let st', loss = step lr x (idx |> Array.map (fun i -> labels.[i])) st
            st <- st'
            total <- total + loss

        st, total / float batches

    /// Epoch `epoch` (0-based) of a recipe: <see cref="trainEpochWith"/> at the recipe's
    /// learning rate for that epoch, batch size and shift. Start from
    /// <c>init (Random.key recipe.Seed)</c> and run epochs 0 .. Epochs − 1.
    let trainEpoch (r: ClassifierRecipe) (epoch: int) (images: Tensor) (labels: int[]) (state: ClassifierState) =
        trainEpochWith (learningRate r epoch) r.BatchSize r.MaxShift images labels state

    let private evalCtx = {
        Mode = Eval
        Key = Random.key 0UL
        Shard = None
    }

    /// Runs `f` on consecutive batches of at most 500 images and concatenates the rows.
    let private batched (f: Tensor -> float[][]) (images: Tensor) =
        let n = checkImages "Classifier" images
        let size = 500

        [|
            for start in 0..size .. n - 1 do
                yield! f (Tensor.narrow 0 start (min size (n - start)) images)
        |]

    let private softmaxRows (logits: float[][]) =
        logits
        |> Array.map (fun r ->
            let m = Array.max r
            let e = r |> Array.map (fun v -> exp (v - m))
            let s = Array.sum e
            e |> Array.map (fun v -> v / s))

    /// Logits [N, 10] of images in eval mode (running BatchNorm statistics, no dropout).
    let logits (vars: Variables) (images: Tensor) : Tensor =
        checkImages "Classifier.logits" images |> ignore
        Tensor.detach (fst (network.Apply vars evalCtx images))

    /// Class probabilities (softmax of the logits, in float64), one row per image, in eval mode.
    let predict (vars: Variables) (images: Tensor) : float[][] =
        images |> batched (fun x -> softmaxRows (Metrics.rows (logits vars x)))

    /// The predicted class of each image.
    let predictClasses (vars: Variables) (images: Tensor) : int[] =
        Metrics.argmaxRows (predict vars images)

    /// The 128 penultimate features of each image, in eval mode.
    let featuresOf (vars: Variables) (images: Tensor) : float[][] =
        images
        |> batched (fun x -> Metrics.rows (Tensor.detach (fst (features.Apply vars evalCtx x))))

    /// Class probabilities and penultimate features of each image, from one forward pass.
    let predictAndFeatures (vars: Variables) (images: Tensor) : float[][] * float[][] =
        let n = checkImages "Classifier.predictAndFeatures" images
        let probs = ResizeArray()
        let feats = ResizeArray()

        for start in 0..500 .. n - 1 do
            let x = Tensor.narrow 0 start (min 500 (n - start)) images
            let h, _ = features.Apply vars evalCtx x
            let y, _ = head.Apply vars evalCtx h
            feats.AddRange(Metrics.rows (Tensor.detach h))
            probs.AddRange(softmaxRows (Metrics.rows (Tensor.detach y)))

        probs.ToArray(), feats.ToArray()

    /// The share of images whose predicted class equals the label.
    let accuracy (vars: Variables) (images: Tensor) (labels: int[]) : float =
        let predicted = predictClasses vars images

        if predicted.Length <> labels.Length then
            invalidArg "labels" (sprintf "accuracy: %d images but %d labels" predicted.Length labels.Length)

        let hits =
            Array.fold2 (fun acc p l -> if p = l then acc + 1 else acc) 0 predicted labels

        float hits / float (max 1 labels.Length)

    /// Images in a generator's pixel range mapped to the classifier's [0, 1]: (x + 1)/2 for
    /// tanh output, unchanged for sigmoid output.
    let toUnitRange (range: PixelRange) (images: Tensor) : Tensor =
        match range with
        | MinusOneToOne -> (images + 1.0) * 0.5
        | ZeroToOne -> images

    /// The Stacked MNIST modes of images [N, 3, 28, 28] with pixels in [0, 1]: each channel is
    /// labelled by the (MNIST) classifier's predicted digit d_c, and the mode is
    /// 100·d1 + 10·d2 + d3 in 0..999 (<c>StackedMnist.modes</c>).
    let stackedModes (vars: Variables) (images: Tensor) : int[] =
        StackedMnist.modes (predictClasses vars) images

    /// Stacked MNIST mode coverage of images [N, 3, 28, 28] (pixels in [0, 1]; VEEGAN and
    /// PacGAN score <c>StackedMnist.samples</c> = 26,000): the histogram of
    /// <see cref="stackedModes"/> over the 1,000 modes, the modes covered and its KL to uniform.
    let stackedCoverage (vars: Variables) (images: Tensor) : Coverage =
        StackedMnist.coverage (stackedModes vars images)

    /// The variables as named tensors (parameters and BatchNorm statistics), for the host to
    /// cache: "features.0.weight", "features.1.running_mean", …, "classifier.1.bias".
    let toNamed (vars: Variables) : (string * Tensor) list =
        Map.toList vars.Params @ Map.toList vars.State

    /// Variables from named tensors written by <see cref="toNamed"/>; a missing or misshapen
    /// entry raises <c>Checkpoint.CheckpointMismatchException</c> naming it.
    let ofNamed (named: (string * Tensor) list) : Variables =
        let table = dict named
        let template = network.Init(Random.key 0UL)

        let load (m: Map<string, Tensor>) =
            m
            |> Map.map (fun name like ->
                match table.TryGetValue name with
                | true, t when Tensor.shape t = Tensor.shape like -> Tensor.cast (Tensor.dtype like) t
                | true, t ->
                    raise (
                        Checkpoint.CheckpointMismatchException(
                            sprintf
                                "'%s' has shape %s, the classifier expects %s"
                                name
                                (Shape.show (Tensor.shape t))
                                (Shape.show (Tensor.shape like))
                        )
                    )
                | _ -> raise (Checkpoint.CheckpointMismatchException(sprintf "'%s' is missing" name)))

        {
            Params = load template.Params
            State = load template.State
        }

    /// The default number of random subsets of the kernel distance (torch-fidelity's: 100).
    let kidSubsets = 100

    /// The default size of each subset of the kernel distance (torch-fidelity's: 1,000).
    let kidSubsetSize = 1000

    /// Scores generated images [N, 1, 28, 28] (pixels in [0, 1]) against the real test set's
    /// penultimate features (<see cref="featuresOf"/> of the test images; compute them once):
    /// Inception Score over 10 splits, FCD, KID over <see cref="kidSubsets"/> subsets of
    /// <see cref="kidSubsetSize"/> drawn from `key`, and the class coverage.
    let score (vars: Variables) (key: Key) (realFeatures: float[][]) (generated: Tensor) : ImageScores =
        let probs, feats = predictAndFeatures vars generated

        {
            InceptionScore = Metrics.inceptionScore probs
            Fcd = Metrics.frechetDistance feats realFeatures
            Kid = Metrics.kernelDistanceSubsets key kidSubsets kidSubsetSize feats realFeatures
            Classes = Metrics.classCoverage probs
        }
