namespace Gan.Functional.CSharp

open System
open System.Collections.Generic
open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan
open Gan.Functional.Run

/// A named tensor as plain .NET data: row-major values with a shape. Exactly one of
/// `Float32Data` and `Float64Data` is non-null.
[<Sealed>]
type NamedTensor(name: string, shape: int[], float32Data: float32[] | null, float64Data: float[] | null) =
    /// The hierarchical name, e.g. "generator.0.weight".
    member _.Name = name
    /// The dimensions.
    member _.Shape = shape
    /// The values when the tensor is float32, else null.
    member _.Float32Data = float32Data
    /// The values when the tensor is float64, else null.
    member _.Float64Data = float64Data

    /// Converts an engine tensor.
    static member internal OfTensor(name: string, t: Tensor) =
        match Tensor.dtype t with
        | Float32 -> NamedTensor(name, Tensor.shape t, Tensor.toArray t, null)
        | Float64 -> NamedTensor(name, Tensor.shape t, null, Tensor.toArray64 t)

    /// Converts to an engine tensor.
    member internal this.ToTensor() =
        match float32Data, float64Data with
        | NonNull a, _ -> Tensor.ofArray shape a
        | Null, NonNull b -> Tensor.ofArray64 shape b
        | Null, Null -> invalidArg "data" (sprintf "tensor '%s' has no data" name)

/// A zoo model's description.
[<Sealed>]
type ModelInfo internal (model: GanModel, gParams: int, dParams: int) =
    /// The zoo name ("mlp", "dcgan28", …).
    member _.Name = model.Name
    /// One line on what the model is.
    member _.Summary = model.Summary
    /// Length of a latent vector z.
    member _.NoiseDim = model.NoiseDim
    /// [C, H, W] of a generated image.
    member _.ImageShape = Array.copy model.ImageShape
    /// True when the generator ends in sigmoid (data in [0, 1]); false for tanh ([−1, 1]).
    member _.OutputsZeroToOne = (model.Range = ZeroToOne)
    /// Trainable parameters of the generator.
    member _.GeneratorParameters = gParams
    /// Trainable parameters of the discriminator.
    member _.DiscriminatorParameters = dParams
    /// Default batch size from SEEDS.md.
    member _.DefaultBatchSize = model.Defaults.BatchSize
    /// Default learning rate.
    member _.DefaultLearningRate = model.Defaults.Lr
    /// Default generator learning-rate multiplier.
    member _.DefaultGeneratorLrScale = model.Defaults.GLrScale
    /// Default Adam β1.
    member _.DefaultBeta1 = model.Defaults.Beta1
    /// Default number of epochs: the seed's full schedule.
    member _.DefaultEpochs = model.Defaults.Epochs
    /// Epochs of a first look (what `train` runs when no epochs are given).
    member _.QuickEpochs = model.Defaults.QuickEpochs
    /// Default checkpoint interval in epochs.
    member _.DefaultCheckpointEvery = model.Defaults.CheckpointEvery
    /// Default epochs at which the learning rate is halved.
    member _.DefaultLrDecayEpochs = List.toArray model.Defaults.LrDecayEpochs
    member internal _.Model = model

/// A device ILGPU found on this machine (see <see cref="M:Gan.Functional.CSharp.Engine.Devices"/>).
[<Sealed>]
type DeviceDescription internal (d: DeviceInfo) =
    /// How --device and <see cref="M:Gan.Functional.CSharp.Engine.UseDevice(System.String)"/> name it:
    /// "cuda:0", "opencl:0", "ilgpu-cpu".
    member _.Spec = d.Spec.Name
    /// The device's own name, e.g. "NVIDIA H100 80GB HBM3".
    member _.Name = d.Name

    /// "cuda", "opencl" or "ilgpu-cpu".
    member _.Kind =
        match d.Spec with
        | DeviceSpec.Cuda _ -> "cuda"
        | DeviceSpec.OpenCl _ -> "opencl"
        | _ -> "ilgpu-cpu"

    /// Total memory in bytes (0 for the CPU accelerator, which has none of its own).
    member _.MemoryBytes = d.MemoryBytes
    /// CUDA compute capability "major.minor"; "" for other kinds or an architecture ILGPU does
    /// not know.
    member _.ComputeCapability = d.ComputeCapability
    /// Multiprocessors (CUDA SMs, OpenCL compute units, CPU accelerator threads).
    member _.Multiprocessors = d.Multiprocessors
    /// One line (without the spec): name, capability, memory.
    member _.Summary = Devices.describe d

/// What one training step measured.
[<Sealed>]
type StepResult internal (m: StepMetrics, generatorUpdated: bool) =
    /// The discriminator's loss.
    member _.DiscriminatorLoss = m.DLoss
    /// The generator's loss (NaN when the step did not update the generator).
    member _.GeneratorLoss = m.GLoss
    /// Whether this step updated the generator (every DSteps-th step does).
    member _.GeneratorUpdated = generatorUpdated
    /// Mean D(x) on the real batch, as a probability.
    member _.RealScore = m.RealScore
    /// Mean D(G(z)) on the fake batch, as a probability.
    member _.FakeScore = m.FakeScore

/// The model zoo and engine settings for C# callers.
[<AbstractClass; Sealed>]
type Engine =
    static member private Info(name: string, channels: int) =
        let m = Zoo.byName name channels
        let k = Random.key 0UL
        ModelInfo(m, Layer.parameterCount (m.Generator.Init k), Layer.parameterCount (m.Discriminator.Init k))

    /// Every zoo model, with parameter counts (dcgan64 with `channels` channels).
    static member Models(channels: int) : ModelInfo[] =
        Zoo.names |> List.map (fun n -> Engine.Info(n, channels)) |> List.toArray

    /// One zoo model's description; throws ArgumentException listing the known names.
    static member Model(name: string, channels: int) : ModelInfo = Engine.Info(name, channels)

    /// The zoo model `train` uses when none is named.
    static member FirstRunModel = Zoo.firstRun.Model
    /// The first run's epochs; its other settings are the model's seed defaults except the
    /// learning rate and EMA below.
    static member FirstRunEpochs = Zoo.firstRun.Epochs
    /// The first run's learning rate (both networks).
    static member FirstRunLearningRate = Zoo.firstRun.Lr
    /// The first run's EMA decay of G's weights.
    static member FirstRunEmaDecay = Zoo.firstRun.EmaDecay

    /// Names of the known GAN losses.
    static member LossNames = List.toArray TrainSettings.lossNames

    /// Every zoo model's name.
    static member ModelNames = List.toArray Zoo.names

    /// True for a zoo model whose channel count is a parameter (dcgan64); ArgumentException for
    /// an unknown name.
    static member TakesChannels(name: string) = TrainSettings.takesChannels name

    /// The name of the kernel backend in use.
    static member BackendName = (Prim.backend ()).Name

    /// The selected kernel backend (the CPU backend on every core until one is selected).
    static member CurrentBackend: IBackend =
        match Backend.tryGet () with
        | Some b -> b
        | None -> Gan.Functional.Kernels.DefaultBackend.get ()

    /// Selects the kernel backend for all later operations.
    static member UseBackend(backend: IBackend) = Backend.set backend

    /// Selects the best CPU backend available here with `threads` worker threads (0: one per
    /// core) and returns one line saying which kernels are in use and why.
    static member ConfigureCpu(threads: int) : string =
        let b = Gan.Functional.Kernels.CpuBackend(threads)
        Backend.set b
        b.Description

    /// Selects where the kernels of all later operations run, and where new tensors live: "auto"
    /// (the first CUDA device that works, else the CPU), "cpu", "cuda:N", "opencl:N" or
    /// "ilgpu-cpu" (ILGPU's CPU accelerator, for tests); `threads` CPU worker threads for the CPU
    /// backend (0: one per core). Returns one line saying what runs where. Throws
    /// DeviceUnavailableException for a malformed spec or a device that is not here (the message
    /// lists those that are).
    static member UseDevice(spec: string, threads: int) : string =
        match DeviceSpec.parse spec with
        | Error message -> raise (DeviceUnavailableException message)
        | Ok s ->
            let backend, line = Devices.select s threads
            Backend.set backend
            line

    /// <see cref="M:Gan.Functional.CSharp.Engine.UseDevice(System.String,System.Int32)"/> with one
    /// CPU worker thread per core.
    static member UseDevice(spec: string) : string = Engine.UseDevice(spec, 0)

    /// The devices ILGPU finds here: CUDA, OpenCL, its CPU accelerator (the CPU backend, "cpu",
    /// is always there besides them). Loads the drivers' libraries on first use.
    static member Devices() : DeviceDescription[] =
        Devices.list () |> List.map DeviceDescription |> List.toArray

    /// Why there is no CUDA device here (meaningful when <see cref="M:Gan.Functional.CSharp.Engine.Devices"/>
    /// lists none): no driver library, or a driver that reports no device.
    static member NoCudaReason = Devices.noCudaReason ()

    /// Whether CUDA devices multiply float32 matrices with cuBLAS here: "available" (a
    /// libcublas.so.12, .11 or .10 loads), "off" (GAN_CUBLAS=0) or "none" (their own tiled
    /// GEMM kernel then serves). Loads cuBLAS on first use.
    static member CuBlasState = fst (Devices.cuBlas ())

    /// One sentence on <see cref="P:Gan.Functional.CSharp.Engine.CuBlasState"/>: the library
    /// that loaded, or why there is none, e.g. "libcublas.so.12 loads: CUDA devices multiply
    /// float32 matrices with cuBLAS (GAN_CUBLAS=0 turns it off)".
    static member CuBlasSummary = snd (Devices.cuBlas ())

/// A GAN being trained: the pure training state of Gan.Functional behind a mutable handle, for
/// C# callers. Images are float32 NCHW, row-major, in the model's pixel range.
[<Sealed>]
type GanTrainer private (info: ModelInfo, options: TrainSettings, config: TrainConfig, initial: TrainState) =
    let mutable state = initial

    static let configOf (o: TrainOptions) =
        TrainSettings.trainConfig o.Settings o.SimultaneousUpdates

    /// A fresh run with the given options (see `TrainOptions.ForModel`).
    static member Create(options: TrainOptions) =
        let info = Engine.Model(options.Model, options.Channels)
        let config = configOf options
        GanTrainer(info, options.Settings, config, Training.init info.Model config (Random.key options.Seed))

    /// A run restored from named tensors (as written by `ExportState`); throws
    /// Checkpoint.CheckpointMismatchException when they do not fit the model.
    static member Restore(options: TrainOptions, tensors: IEnumerable<NamedTensor>) =
        let info = Engine.Model(options.Model, options.Channels)
        let config = configOf options
        let template = Training.init info.Model config (Random.key options.Seed)
        let named = tensors |> Seq.map (fun t -> t.Name, t.ToTensor()) |> Seq.toList
        GanTrainer(info, options.Settings, config, Checkpoint.ofNamed template named)

    /// The model.
    member _.Model = info

    /// Where the training state lives: "the host", or a device's name. A trainer's tensors are
    /// made where the backend selected at <c>Create</c>/<c>Restore</c> makes new tensors (a
    /// device backend's device, see <c>Engine.UseDevice</c>), and each step's images go there
    /// too; the arrays this class returns are host copies.
    member _.Placement =
        state.G.Params
        |> Map.toSeq
        |> Seq.tryHead
        |> Option.map (snd >> Tensor.placeName)
        |> Option.defaultValue "the host"

    /// Steps taken so far.
    member _.StepCount = state.Step

    /// The generator's learning rate at a 0-based epoch (halved at each decay epoch).
    member _.GeneratorLearningRate(epoch: int) =
        Schedule.rate (StepDecay(options.LrDecayEpochs, 0.5)) options.LearningRate epoch
        * options.GeneratorLrScale

    /// The discriminator's learning rate at a 0-based epoch.
    member _.DiscriminatorLearningRate(epoch: int) =
        Schedule.rate (StepDecay(options.LrDecayEpochs, 0.5)) options.LearningRate epoch

    /// Runs one step function over this handle's state; the handle owns its state, so the step
    /// may donate the optimizer buffers (less peak memory), and once it has returned, every
    /// buffer it made that the new state does not hold is dead: a backend that reuses buffers
    /// across steps (<c>IStepBuffers</c>) gets them back for the next step.
    member private this.Advance(images: float32[], count: int, epoch: int, step) =
        let real = Tensor.ofArray (Array.append [| count |] info.ImageShape) images

        // the pool belongs to the backend that runs host tensors
        let buffers =
            match Gan.Functional.Kernels.Placement.hostBackend () with
            | :? IStepBuffers as b -> Some b
            | _ -> None

        buffers |> Option.iter (fun b -> b.BeginStep())

        let next, metrics =
            try
                step
                    info.Model
                    config
                    (this.GeneratorLearningRate epoch)
                    (this.DiscriminatorLearningRate epoch)
                    real
                    state
            with _ ->
                buffers |> Option.iter (fun b -> b.CancelStep())
                reraise ()

        buffers
        |> Option.iter (fun b -> b.EndStep(Training.tensors next |> Seq.map Tensor.toRaw))

        let updated = Training.updatesGenerator config state.Step
        state <- next
        StepResult(metrics, updated)

    /// One training step on `count` real images (NCHW, flat) at a 0-based `epoch`.
    member this.Step(images: float32[], count: int, epoch: int) =
        this.Advance(images, count, epoch, Training.stepDonated)

    /// One data-parallel training step (see <c>Training.stepShard</c>): this rank's `count`
    /// real images, rows `offset` … `offset + count − 1` of a global batch of `total` spread over
    /// the ranks of `reducer`'s job; every rank calls it together. With `syncBatchNorm`,
    /// BatchNorm uses the whole batch's statistics, so the ranks compute what one process
    /// computes on the whole batch.
    member this.StepShard
        (images: float32[], count: int, epoch: int, reducer: IReducer, offset: int, total: int, syncBatchNorm: bool)
        =
        let shard = {
            Reducer = reducer
            Offset = offset
            Total = total
            SyncBatchNorm = syncBatchNorm
        }

        this.Advance(images, count, epoch, Training.stepShardDonated shard)

    /// `count` latent vectors z ~ N(0, 1) from `seed`, [count, NoiseDim] flat.
    member _.Noise(count: int, seed: uint64) =
        Tensor.toArray (Training.noise info.Model (Random.key seed) count)

    /// G(z) in eval mode for `count` latent vectors (flat [count, NoiseDim]), NCHW flat; with
    /// `useEma` the EMA weights are used when kept.
    member _.Generate(z: float32[], count: int, useEma: bool) =
        let g =
            if useEma && not state.GEma.IsEmpty then
                { state.G with Params = state.GEma }
            else
                state.G

        Tensor.toArray (Sampling.generate info.Model g (Tensor.ofArray [| count; info.NoiseDim |] z))

    /// The discriminator's logits for `count` images, in eval mode.
    member _.Discriminate(images: float32[], count: int) =
        let x = Tensor.ofArray (Array.append [| count |] info.ImageShape) images

        let y, _ =
            info.Model.Discriminator.Apply
                state.D
                {
                    Mode = Eval
                    Key = Random.key 0UL
                    Shard = None
                }
                x

        Tensor.toArray y

    /// Everything a resume needs, as named tensors (see Gan.Functional.Gan.Checkpoint).
    member _.ExportState() : NamedTensor[] =
        Checkpoint.toNamed state
        |> List.map (fun (n, t) -> NamedTensor.OfTensor(n, t))
        |> List.toArray

    /// True when every parameter and statistic is finite.
    member _.IsFinite() =
        Checkpoint.toNamed state
        |> List.forall (fun (_, t) -> Tensor.toArray64 t |> Array.forall Double.IsFinite)
