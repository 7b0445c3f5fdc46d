namespace Gan.Host.Cli

open System

/// What `classifier` was asked for.
[<Sealed>]
type ClassifierRequest() =
    member val Dataset = "mnist" with get, set
    member val DataDir: string | null = null with get, set
    member val Threads = 0 with get, set

/// What `evaluate` was asked for: a run or checkpoint, or a folder of images with a dataset.
[<Sealed>]
type EvaluateRequest() =
    member val Run: string | null = null with get, set
    member val Checkpoint: string | null = null with get, set
    member val Images: string | null = null with get, set
    member val Real = false with get, set
    member val Dataset: string | null = null with get, set
    member val Features: string | null = null with get, set
    member val Samples = Nullable<int>() with get, set
    member val Json: string | null = null with get, set
    member val Seed = 0UL with get, set
    member val UseEma = true with get, set
    member val DataDir: string | null = null with get, set
    member val Threads = 0 with get, set
    /// --device: a device spec (checked by the parser), "auto" when not given.
    member val Device = "auto" with get, set

/// What `interpolate` and `arithmetic` share: the generator to use and the output.
type LatentRequest() =
    member val Run: string | null = null with get, set
    member val Checkpoint: string | null = null with get, set
    member val Seed = 0UL with get, set
    member val Out = "" with get, set
    member val UseEma = true with get, set
    member val Threads = 0 with get, set

/// What `interpolate` was asked for.
[<Sealed>]
type InterpolateRequest() =
    inherit LatentRequest()
    member val Steps = 8 with get, set
    member val Rows = 4 with get, set
    member val Spherical = false with get, set

/// What `arithmetic` was asked for: three groups of sample indices.
[<Sealed>]
type ArithmeticRequest() =
    inherit LatentRequest()
    member val A: int[] = [||] with get, set
    member val B: int[] = [||] with get, set
    member val C: int[] = [||] with get, set

/// What `report` was asked for.
[<Sealed>]
type ReportRequest() =
    member val Run = "" with get, set
    member val Out: string | null = null with get, set
