namespace Gan.Host.Cli

open Argu

/// `classifier`: trains the metrics' classifier backbone of a dataset and caches it.
[<RequireQualifiedAccess>]
type ClassifierArgs =
    | [<Unique>] Dataset of name: string
    | [<Unique>] Data_Dir of dir: string
    | [<Unique>] Threads of count: int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Dataset _ -> "mnist (default) or fashion-mnist."
            | Data_Dir _ -> "where the dataset's IDX files are (default: where train looks for them)."
            | Threads _ -> "CPU worker threads (default 0: one per core)."

/// `evaluate`: scores a generator (or a folder of images) with the sample-quality metrics.
[<RequireQualifiedAccess>]
type EvaluateArgs =
    | [<Unique>] Run of dir: string
    | [<Unique>] Checkpoint of file: string
    | [<Unique>] Images of dir: string
    | [<Unique>] Real
    | [<Unique>] Dataset of name: string
    | [<Unique>] Features of name: string
    | [<Unique>] Samples of count: int
    | [<Unique>] Json of file: string
    | [<Unique>] Seed of seed: uint64
    | [<Unique>] No_Ema
    | [<Unique>] Data_Dir of dir: string
    | [<Unique>] Threads of count: int
    | [<Unique>] Device of name: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Run _ -> "a run directory; its newest checkpoint is scored (the dataset comes from its config)."
            | Checkpoint _ -> "score this checkpoint file instead of the run's newest."
            | Images _ -> "score a folder of PNG/JPEG images made by anything (needs --dataset)."
            | Real ->
                "score real data of --dataset (training images, mixture points or stacked images) as if generated: the metrics' ceiling."
            | Dataset _ ->
                "with --images: mnist or fashion-mnist (their classifier) or emoji (ImageNet features); with --real: also stacked-mnist, ring8, grid25."
            | Features _ ->
                "the features of colour data's metrics: resnet18 (ImageNet ResNet-18, the default and only choice for emoji)."
            | Samples _ ->
                "samples to generate (default 10000 images; 1000 for emoji; 2500 points for ring8/grid25; 26000 for stacked-mnist)."
            | Json _ -> "also write the metrics to this JSON file."
            | Seed _ -> "seed of the noise and of KID's subsets (default 0)."
            | No_Ema -> "use the trained generator even when the checkpoint keeps EMA weights."
            | Data_Dir _ -> "where the dataset's IDX files are, if the classifier must be trained first."
            | Threads _ -> "CPU worker threads (default 0: one per core)."
            | Device _ ->
                "where the generator runs: auto (default), cpu, cuda:N, opencl:N or ilgpu-cpu (the devices command lists what exists); the metrics' classifier and features run on the CPU."

/// `interpolate`: rows of latent walks between pairs of random z.
[<RequireQualifiedAccess>]
type InterpolateArgs =
    | [<Unique>] Run of dir: string
    | [<Unique>] Checkpoint of file: string
    | [<Unique>] Steps of count: int
    | [<Unique>] Rows of count: int
    | [<Unique>] Spherical
    | [<Unique>] Seed of seed: uint64
    | [<Unique>] Out of file: string
    | [<Unique>] No_Ema
    | [<Unique>] Threads of count: int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Run _ -> "a run directory; its newest checkpoint is used."
            | Checkpoint _ -> "a checkpoint file instead of a run's newest."
            | Steps _ -> "images per row, the two ends included (default 8)."
            | Rows _ -> "walks, one per row, each between its own two random z (default 4)."
            | Spherical -> "walk along great circles (slerp) instead of straight lines."
            | Seed _ -> "seed of the end points (default 0)."
            | Out _ -> "the PNG file to write (required)."
            | No_Ema -> "use the trained generator even when the checkpoint keeps EMA weights."
            | Threads _ -> "CPU worker threads (default 0: one per core)."

/// `arithmetic`: S3's latent vector arithmetic, mean(a) − mean(b) + mean(c).
[<RequireQualifiedAccess>]
type ArithmeticArgs =
    | [<Unique>] Run of dir: string
    | [<Unique>] Checkpoint of file: string
    | [<Unique>] A of indices: string
    | [<Unique>] B of indices: string
    | [<Unique>] C of indices: string
    | [<Unique>] Seed of seed: uint64
    | [<Unique>] Out of file: string
    | [<Unique>] No_Ema
    | [<Unique>] Threads of count: int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Run _ -> "a run directory; its newest checkpoint is used."
            | Checkpoint _ -> "a checkpoint file instead of a run's newest."
            | A _ ->
                "comma-separated sample indices (0-based, as `sample --seed S` lays them out row by row), e.g. 3,7,9."
            | B _ -> "the indices whose mean is subtracted."
            | C _ -> "the indices whose mean is added."
            | Seed _ -> "the seed of the samples the indices refer to (default 0, as sample's)."
            | Out _ -> "the PNG file to write (required)."
            | No_Ema -> "use the trained generator even when the checkpoint keeps EMA weights."
            | Threads _ -> "CPU worker threads (default 0: one per core)."

/// `report`: one self-contained HTML page of a run.
[<RequireQualifiedAccess>]
type ReportArgs =
    | [<Unique>] Run of dir: string
    | [<Unique>] Out of file: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Run _ -> "the run directory (required)."
            | Out _ -> "the HTML file to write (default: report.html in the run directory)."
