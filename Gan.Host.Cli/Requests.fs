namespace Gan.Host.Cli

open System
open Gan.Functional.CSharp
open Gan.Functional.Run

/// What `train` was asked for: the settings given on the command line (the library's
/// <c>GivenSettings</c>; the host resolves them over the model's defaults, or over config.json on
/// --resume), the run directory and whether to resume.
[<Sealed>]
type TrainRequest(given: GivenSettings) =
    /// The settings given; only those it names were on the command line.
    member val Given = given with get, set
    /// The given values as a settings handle (only the settings <c>IsGiven</c> names count).
    member this.Settings = TrainOptions(this.Given.Values)
    /// True when the setting with this config.json name (e.g. "epochs") was given.
    member this.IsGiven(key: string) = this.Given.Has key
    /// --out, or null.
    member val Out: string | null = null with get, set
    /// --resume.
    member val Resume = false with get, set

/// What `sample` was asked for.
[<Sealed>]
type SampleRequest() =
    member val Run: string | null = null with get, set
    member val Checkpoint: string | null = null with get, set
    member val Count = 16 with get, set
    member val Out = "" with get, set
    member val Seed = 0UL with get, set
    member val UseEma = true with get, set
    member val Threads = 0 with get, set
    /// --device: a device spec (checked by the parser), "auto" when not given.
    member val Device = "auto" with get, set

/// What `bench` was asked for; a null Batch means the model's bench default.
[<Sealed>]
type BenchRequest() =
    member val Model = "all" with get, set
    member val Batch = Nullable<int>() with get, set
    member val Steps = 10 with get, set
    member val Warmup = 3 with get, set
    member val Threads = 0 with get, set
    /// --device: a device spec (checked by the parser), "auto" when not given.
    member val Device = "auto" with get, set
    member val Profile = false with get, set
    /// Split the profile by operand shapes (implies Profile).
    member val ProfileShapes = false with get, set
    /// Under mpirun: synchronised BatchNorm.
    member val SyncBatchNorm = false with get, set
    /// Under mpirun: check the ranks against one process.
    member val Check = false with get, set
    /// Under mpirun: time MPI_Allreduce alone.
    member val Allreduce = false with get, set
    /// GAN_* overrides (NAME=VALUE, comma-separated) for an A/B run: steps alternate between
    /// the environment's CPU knobs and these; null for a plain run.
    member val Ab: string | null = null with get, set

/// Which command a command line asks for.
type CommandKind =
    | Train = 0
    | Sample = 1
    | Classifier = 20
    | Evaluate = 21
    | Interpolate = 22
    | Arithmetic = 23
    | Report = 24
    | Models = 2
    | Devices = 3
    /// `--help` somewhere: print `Text` and exit 0.
    | Help = 4
    /// A bad command line: print `Text` (one paragraph) and exit 2.
    | Error = 5
    | Bench = 6

/// A parsed command line.
[<Sealed>]
type ParsedCommand
    internal
    (
        kind: CommandKind,
        text: string,
        train: TrainRequest | null,
        sample: SampleRequest | null,
        channels: int,
        threads: int
    ) =
    /// The command.
    member _.Kind = kind
    /// Help text (Help) or the error paragraph (Error); empty otherwise.
    member _.Text = text
    /// The train request (Train), else null.
    member _.Train = train
    /// The sample request (Sample), else null.
    member _.Sample = sample
    /// The classifier request (Classifier), else null.
    member val Classifier: ClassifierRequest | null = null with get, set
    /// The evaluate request (Evaluate), else null.
    member val Evaluate: EvaluateRequest | null = null with get, set
    /// The interpolate request (Interpolate), else null.
    member val Interpolate: InterpolateRequest | null = null with get, set
    /// The arithmetic request (Arithmetic), else null.
    member val Arithmetic: ArithmeticRequest | null = null with get, set
    /// The report request (Report), else null.
    member val Report: ReportRequest | null = null with get, set
    /// `models --channels` (default 3).
    member _.Channels = channels
    /// `devices --threads` (default 0).
    member _.Threads = threads
    /// The bench request (Bench), else null.
    member val Bench: BenchRequest | null = null with get, set
