namespace Gan.Functional.CSharp

open System
open Gan.Functional.Gan
open Gan.Functional.Run

/// Which kind of data set (see <see cref="DatasetInfo"/>).
type DatasetKind =
    /// MNIST digits.
    | Mnist = 0
    /// Fashion-MNIST.
    | FashionMnist = 1
    /// Three MNIST digits as three channels.
    | StackedMnist = 2
    /// The Noto emoji, 64×64 colour.
    | Emoji = 3
    /// A 2-D Gaussian mixture (ring8, grid25).
    | Mixture = 4
    /// A folder of PNG/JPEG images.
    | Images = 5

/// Settings the library refuses: the message is the one to show (it names the setting).
type InvalidSettingsException(message: string) =
    inherit Exception(message)

/// A data set by name, with its defaults and the evaluation protocol's facts.
[<Sealed>]
type DatasetInfo internal (d: Dataset) =
    /// Parses a data set name ("mnist", "ring8", "images:DIR", …); throws
    /// InvalidSettingsException with the command line's message for an unknown one.
    static member Parse(name: string) =
        match Dataset.parse name with
        | Ok d -> DatasetInfo d
        | Error message -> raise (InvalidSettingsException message)

    member internal _.Value = d
    /// The name `Parse` reads back.
    member _.Name = Dataset.name d

    /// The kind.
    member _.Kind =
        match d with
        | Mnist -> DatasetKind.Mnist
        | FashionMnist -> DatasetKind.FashionMnist
        | StackedMnist -> DatasetKind.StackedMnist
        | Emoji -> DatasetKind.Emoji
        | Dataset.Mixture _ -> DatasetKind.Mixture
        | Images _ -> DatasetKind.Images

    /// True for the 2-D mixtures.
    member _.IsMixture = Dataset.isMixture d

    /// The image folder of an Images data set, else null.
    member _.ImageFolder: string | null =
        match d with
        | Images(dir, _) -> dir
        | _ -> null

    /// The bounding-box list of an image folder, else null.
    member _.BoundingBoxes: string | null =
        match Dataset.bbox d with
        | Some b -> b
        | None -> null

    /// The name in a run directory's name ("images-FOLDER" for a folder).
    member _.Label = Dataset.label d
    /// True where the evaluation protocol has metrics for it.
    member _.HasMetrics = Dataset.hasMetrics d
    /// The samples `evaluate` scores by default.
    member _.EvalSamples = Dataset.evalSamples d
    /// The samples scored during training by default.
    member _.TrainingEvalSamples = Dataset.trainingEvalSamples d

    /// The data set whose classifier backbone scores this one ("mnist", "fashion-mnist"), else null.
    member _.ClassifierBackbone: string | null =
        match Dataset.classifierBackbone d with
        | Some b -> b
        | None -> null

/// Every setting of a training run (the library's <c>TrainSettings</c>) behind a mutable handle
/// for C# callers. Start from <see cref="TrainOptions.ForModel"/> for a model's SEEDS.md defaults;
/// the host gets its run's settings from <see cref="TrainOptions.Resolve"/>,
/// <see cref="TrainOptions.Resume"/> or <see cref="TrainOptions.FromJson"/>.
[<Sealed>]
type TrainOptions(settings: TrainSettings, simultaneousUpdates: bool) =
    let mutable s = settings

    static let simultaneousOf (model: string) channels =
        List.contains model Zoo.names
        && (Zoo.byName model channels).Defaults.SimultaneousUpdates

    static let orThrow (r: Result<TrainSettings, string>) =
        match r with
        | Ok s -> TrainOptions(s, simultaneousOf s.Model s.Channels)
        | Error message -> raise (InvalidSettingsException message)

    /// mlp's batch and learning rates on MNIST with 3 channels; prefer <see cref="TrainOptions.ForModel"/>.
    new() =
        TrainOptions(
            {
                TrainSettings.forModel Zoo.mlp Mnist 3 with
                    BatchSize = 256
                    LearningRate = 2e-4
                    GeneratorLrScale = 1.0
            },
            false
        )

    /// These settings as a handle; SimultaneousUpdates as the model's seed does it.
    new(settings: TrainSettings) = TrainOptions(settings, simultaneousOf settings.Model settings.Channels)

    /// The settings as the library's record.
    member _.Settings = s

    /// Zoo model name.
    member _.Model
        with get () = s.Model
        and set v = s <- { s with Model = v }

    /// The data set's name ("mnist", "ring8", "images:DIR"); setting an unknown one throws
    /// InvalidSettingsException. An image folder's bounding boxes are kept.
    member _.Dataset
        with get () = Dataset.name s.Dataset
        and set (v: string) =
            match Dataset.parse v with
            | Ok d ->
                s <- {
                    s with
                        Dataset =
                            match d with
                            | Images(dir, _) -> Images(dir, Dataset.bbox s.Dataset)
                            | other -> other
                }
            | Error message -> raise (InvalidSettingsException message)

    /// The data set with its facts.
    member _.DatasetInfo = DatasetInfo s.Dataset

    /// The bounding-box list of an image folder (null: none).
    member _.BoundingBoxes
        with get (): string | null =
            match Dataset.bbox s.Dataset with
            | Some b -> b
            | None -> null
        and set (v: string | null) =
            match s.Dataset with
            | Images(dir, _) ->
                s <- {
                    s with
                        Dataset = Images(dir, Option.ofObj v)
                }
            | _ when isNull v -> ()
            | other -> raise (InvalidSettingsException(TrainSettings.bboxMisplaced "--bbox" (Dataset.name other)))

    /// Image channels (1 or 3).
    member _.Channels
        with get () = s.Channels
        and set v = s <- { s with Channels = v }

    /// Image side in pixels (0 for the 2-D models).
    member _.ImageSize
        with get () = s.ImageSize
        and set v = s <- { s with ImageSize = v }

    /// Length of z.
    member _.NoiseDim
        with get () = s.NoiseDim
        and set v = s <- { s with NoiseDim = v }

    /// Total epochs of the run.
    member _.Epochs
        with get () = s.Epochs
        and set v = s <- { s with Epochs = v }

    /// Examples per step.
    member _.BatchSize
        with get () = s.BatchSize
        and set v = s <- { s with BatchSize = v }

    /// The discriminator's learning rate.
    member _.LearningRate
        with get () = s.LearningRate
        and set v = s <- { s with LearningRate = v }

    /// The generator's learning rate is LearningRate × this.
    member _.GeneratorLrScale
        with get () = s.GeneratorLrScale
        and set v = s <- { s with GeneratorLrScale = v }

    /// Adam β1 for both networks.
    member _.Beta1
        with get () = s.Beta1
        and set v = s <- { s with Beta1 = v }

    /// minimax | bce (non-saturating) | wgan | lsgan | hinge | ragan.
    member _.Loss
        with get () = s.Loss
        and set v = s <- { s with Loss = v }

    /// Discriminator steps per generator step.
    member _.DSteps
        with get () = s.DSteps
        and set v = s <- { s with DSteps = v }

    /// WGAN-GP weight (0: off).
    member _.GradientPenaltyWeight
        with get () = s.GpWeight
        and set v = s <- { s with GpWeight = v }

    /// R1 weight (0: off).
    member _.R1Weight
        with get () = s.R1Weight
        and set v = s <- { s with R1Weight = v }

    /// Generator EMA decay (0: off).
    member _.EmaDecay
        with get () = s.Ema
        and set v = s <- { s with Ema = v }

    /// Epochs at which both learning rates are halved.
    member _.LrDecayEpochs
        with get () = List.toArray s.LrDecayEpochs
        and set (v: int[]) =
            s <- {
                s with
                    LrDecayEpochs = List.ofArray v
            }

    /// Only the first N training examples (null: all).
    member _.TrainSize
        with get () = Option.toNullable s.TrainSize
        and set (v: Nullable<int>) =
            s <- {
                s with
                    TrainSize = Option.ofNullable v
            }

    /// A checkpoint every N epochs (and after the last).
    member _.CheckpointEvery
        with get () = s.CheckpointEvery
        and set v = s <- { s with CheckpointEvery = v }

    /// Checkpoints kept.
    member _.KeepCheckpoints
        with get () = s.KeepCheckpoints
        and set v = s <- { s with KeepCheckpoints = v }

    /// Seed of every random draw of the run.
    member _.Seed
        with get () = s.Seed
        and set v = s <- { s with Seed = v }

    /// CPU worker threads (0: one per core).
    member _.Threads
        with get () = s.Threads
        and set v = s <- { s with Threads = v }

    /// Where the kernels run: "auto", "cpu", "cuda:N", "opencl:N" or "ilgpu-cpu" (see
    /// <see cref="M:Gan.Functional.CSharp.Engine.UseDevice(System.String,System.Int32)"/>).
    member _.Device
        with get () = s.Device
        and set v = s <- { s with Device = v }

    /// Where the data lives ("" where there is no folder).
    member _.DataDir
        with get () = s.DataDir
        and set v = s <- { s with DataDir = v }

    /// Samples drawn from fixed noise after each epoch.
    member _.SampleCount
        with get () = s.SampleCount
        and set v = s <- { s with SampleCount = v }

    /// Score G every N epochs (0: after the last only).
    member _.EvalEvery
        with get () = s.EvalEvery
        and set v = s <- { s with EvalEvery = v }

    /// Whether G is scored at all where the data set has metrics (false with --no-eval).
    member _.Evaluate
        with get () = s.Evaluate
        and set v = s <- { s with Evaluate = v }

    /// Under mpirun, BatchNorm over the whole global batch.
    member _.SyncBatchNorm
        with get () = s.SyncBatchNorm
        and set v = s <- { s with SyncBatchNorm = v }

    /// Samples scored after an epoch (null: the data set's default).
    member _.EvalSamples
        with get () = Option.toNullable s.EvalSamples
        and set (v: Nullable<int>) =
            s <- {
                s with
                    EvalSamples = Option.ofNullable v
            }

    /// Take G's gradient through D as it was before the step's D update (S1's tutorial); not
    /// stored: it follows the model.
    member val SimultaneousUpdates = simultaneousUpdates with get, set

    /// The settings as config.json holds them.
    member _.ToJson() = TrainSettings.toJson s

    /// The weight-deciding settings on which these and `other` differ (First: these).
    member _.WeightDifferences(other: TrainOptions) : SettingDifference[] =
        TrainSettings.differences s other.Settings |> List.toArray

    /// The defaults of a zoo model (SEEDS.md), its full schedule of epochs, on MNIST (a 2-D
    /// model on ring8); throws ArgumentException for an unknown name.
    static member ForModel(model: string, channels: int) =
        let m = Zoo.byName model channels

        let dataset =
            if m.ImageShape.Length = 1 then
                Dataset.Mixture "ring8"
            else
                Mnist

        TrainOptions(
            {
                TrainSettings.forModel m dataset channels with
                    Epochs = m.Defaults.Epochs
            },
            m.Defaults.SimultaneousUpdates
        )

    /// Reads a run configuration (config.json); `source` names it in messages. Throws
    /// InvalidSettingsException naming the first value the command line would refuse.
    static member FromJson(json: string, source: string) =
        TrainSettings.ofJson source json |> orThrow

    /// A new run's settings: `given` over the model's defaults (<c>TrainSettings.resolve</c>);
    /// throws InvalidSettingsException with the message to show.
    static member Resolve(given: GivenSettings, cacheRoot: string) =
        TrainSettings.resolve cacheRoot given |> orThrow

    /// A resumed run's settings: `given` over `stored` (<c>TrainSettings.resume</c>); compare the
    /// result with `stored` by <see cref="TrainOptions.WeightDifferences"/>.
    static member Resume(stored: TrainOptions, given: GivenSettings, cacheRoot: string) =
        TrainSettings.resume cacheRoot stored.Settings given |> orThrow

    /// The names of every setting in config.json, in its order.
    static member SettingNames = List.toArray TrainSettings.keys

    /// The command-line flag of a setting by its config.json name.
    static member FlagOf(key: string) = TrainSettings.flagOf key

    /// The most epochs a run can have.
    static member MaxEpochs = TrainSettings.MaxEpochs

    /// The most samples per epoch a run can have.
    static member MaxSampleCount = TrainSettings.MaxSampleCount

    /// The message for a model the zoo does not have.
    static member UnknownModelMessage(name: string) = TrainSettings.unknownModel name

    /// The forms --device accepts: auto, cpu, cuda:N, opencl:N, ilgpu-cpu.
    static member Devices = List.toArray TrainSettings.devices

    /// True for a new run that names no model on image data (it gets the first-run settings).
    static member IsFirstRun(given: GivenSettings) = TrainSettings.isFirstRun given
