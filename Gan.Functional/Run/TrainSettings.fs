namespace Gan.Functional.Run

open System
open System.Globalization
open System.IO
open System.Text.Json
open Gan.Functional.Nn
open Gan.Functional.Gan
open Gan.Functional.Eval

/// Every setting of a training run, resolved: what config.json stores and --resume reads back.
/// One record for the library, the command line and the host; <c>TrainSettings</c> (the module)
/// has the defaults, the checks, the merge and the JSON form.
type TrainSettings = {
    /// Zoo model name.
    Model: string
    /// The training data (with an image folder's bounding boxes).
    Dataset: Dataset
    /// Image channels (1 or 3; 1 for the 2-D models).
    Channels: int
    /// Image side in pixels (0 for the 2-D models).
    ImageSize: int
    /// Length of z.
    NoiseDim: int
    /// Total epochs of the run.
    Epochs: int
    /// Examples per step.
    BatchSize: int
    /// The discriminator's learning rate.
    LearningRate: float
    /// The generator's learning rate is LearningRate × this.
    GeneratorLrScale: float
    /// Adam β1 of both networks.
    Beta1: float
    /// GAN loss name (<c>TrainSettings.lossNames</c>).
    Loss: string
    /// Discriminator steps per generator step.
    DSteps: int
    /// WGAN-GP weight (0: off).
    GpWeight: float
    /// R1 weight (0: off).
    R1Weight: float
    /// Decay of the EMA of G's weights (0: off).
    Ema: float
    /// Epochs at which both learning rates halve.
    LrDecayEpochs: int list
    /// Only the first N training examples (None: all).
    TrainSize: int option
    /// A checkpoint every N epochs (and after the last).
    CheckpointEvery: int
    /// Checkpoints kept.
    KeepCheckpoints: int
    /// Seed of every random draw of the run.
    Seed: uint64
    /// CPU worker threads (0: one per core).
    Threads: int
    /// Where the kernels run, as a device spec in its written form (<c>DeviceSpec</c>): "auto",
    /// "cpu", "cuda:0", "opencl:0", "ilgpu-cpu".
    Device: string
    /// Where the data lives ("" where there is no folder).
    DataDir: string
    /// Samples drawn from fixed noise after each epoch.
    SampleCount: int
    /// Score G every N epochs (0: after the last only).
    EvalEvery: int
    /// Whether G is scored at all (false with --no-eval).
    Evaluate: bool
    /// Under mpirun, BatchNorm over the whole global batch.
    SyncBatchNorm: bool
    /// Samples scored after an epoch (None: the data set's default).
    EvalSamples: int option
}

/// Settings given on the command line: the values of the settings named in <c>Keys</c> (their
/// config.json names); the other values are placeholders.
type GivenSettings = {
    /// The values; only those named in Keys were given.
    Values: TrainSettings
    /// The config.json names of the settings given.
    Keys: Set<string>
} with

    /// True when the setting with this config.json name was given.
    member g.Has(key: string) = g.Keys.Contains key

    /// The given paths (data directory, image folder, bounding boxes) mapped by `resolve`
    /// (the host makes them absolute).
    member g.MapPaths(resolve: Func<string, string>) =
        let v = g.Values

        let path key (p: string) =
            if g.Has key then resolve.Invoke p else p

        let dataset =
            match v.Dataset with
            | Images(dir, bbox) -> Images(path "dataset" dir, bbox |> Option.map (path "bbox"))
            | other -> other

        {
            g with
                Values = {
                    v with
                        Dataset = dataset
                        DataDir = path "dataDir" v.DataDir
                }
        }

/// Two runs' values of a setting that decides the weights.
type SettingDifference = {
    /// The setting's name in config.json.
    Key: string
    /// Its command-line flag.
    Flag: string
    /// The first run's value, as the command line writes it.
    First: string
    /// The second run's value.
    Second: string
}

/// One setting: its names, whether it decides the weights, its check, its copy and its JSON form.
type internal Setting = {
    Key: string
    Flag: string
    DecidesWeights: bool
    Show: TrainSettings -> string
    /// The message for a bad value, naming the setting by the given name; `stored` is true for
    /// values read from a run's configuration.
    Check: bool -> string -> TrainSettings -> string option
    /// This setting's value copied from the first record into the second.
    Copy: TrainSettings -> TrainSettings -> TrainSettings
    Write: Utf8JsonWriter -> TrainSettings -> unit
    /// Reads a present JSON value: Ok, a value the file cannot hold (Error), or null where the
    /// setting must be given (Ok with the problem).
    Read: JsonElement -> TrainSettings -> Result<TrainSettings * string option, string>
}

/// Defaults, checks, merge and config.json form of <c>TrainSettings</c>.
[<RequireQualifiedAccess>]
module TrainSettings =

    /// The range of --epochs (and of a run's stored epochs).
    [<Literal>]
    let MaxEpochs = 1_000_000

    /// The most sample images or points per epoch (a real run has 16 images or 2,500 points).
    [<Literal>]
    let MaxSampleCount = 100_000

    /// The config.json format this version writes and reads.
    [<Literal>]
    let CurrentFormat = 1

    /// The names of the GAN losses.
    let lossNames = [ "minimax"; "bce"; "wgan"; "lsgan"; "hinge"; "ragan" ]

    /// The loss of a name in <c>lossNames</c>; other names raise an ArgumentException.
    let lossOf (name: string) =
        match name with
        | "minimax" -> Minimax
        | "bce" -> NonSaturating
        | "wgan" -> Wasserstein
        | "lsgan" -> LeastSquares
        | "hinge" -> Hinge
        | "ragan" -> RelativisticAverage
        | other -> invalidArg "Loss" (sprintf "unknown loss '%s'; known: %s" other (String.Join(", ", lossNames)))

    /// The forms --device accepts (<c>DeviceSpec.forms</c>).
    let devices = Gan.Functional.DeviceSpec.forms

    let private show (v: float) =
        v.ToString("R", CultureInfo.InvariantCulture)

    let private showInt (v: int) =
        v.ToString(CultureInfo.InvariantCulture)

    // ------------------------------------------------------------------ checks (the CLI's messages)

    let private between lo hi (name: string) (v: int) =
        if v < lo || v > hi then
            Some(sprintf "%s must be between %d and %d (got %d)." name lo hi v)
        else
            None

    let private atLeast lo (name: string) (v: int) =
        if v < lo then
            Some(sprintf "%s must be at least %d (got %d)." name lo v)
        else
            None

    let private positive (name: string) (v: float) =
        if not (Double.IsFinite v) || v <= 0.0 then
            Some(sprintf "%s must be a positive number (got %s)." name (show v))
        else
            None

    let private nonNegative (name: string) (v: float) =
        if not (Double.IsFinite v) || v < 0.0 then
            Some(sprintf "%s must be zero or a positive number (got %s)." name (show v))
        else
            None

    let private unitInterval (name: string) (v: float) =
        if not (Double.IsFinite v) || v < 0.0 || v >= 1.0 then
            Some(sprintf "%s must be at least 0 and below 1 (got %s)." name (show v))
        else
            None

    /// The check of an epoch list (--lr-decay-epochs): each at least 1, increasing.
    let checkDecay (name: string) (values: int list) =
        let text = String.Join(",", values)

        if values |> List.exists (fun v -> v < 1) then
            Some(sprintf "%s takes epoch numbers of at least 1 (got '%s')." name text)
        elif values |> List.pairwise |> List.exists (fun (a, b) -> b <= a) then
            Some(sprintf "%s must list epochs in increasing order (got '%s')." name text)
        else
            None

    /// The message for bounding boxes given with a data set that is not an image folder.
    let bboxMisplaced (name: string) (dataset: string) =
        sprintf "%s crops the images of --dataset images:DIR; it does not apply to %s." name dataset

    // ------------------------------------------------------------------ the table of settings

    let private invalid (key: string) (what: string) = Error(sprintf "%s: %s" key what)

    /// How values of one type are shown, written and read (Ok None: a JSON null).
    type private Kind<'T> = {
        Show: 'T -> string
        Write: Utf8JsonWriter -> 'T -> unit
        Read: JsonElement -> Result<'T option, string>
    }

    let private readInt (e: JsonElement) =
        match
            e.ValueKind,
            (if e.ValueKind = JsonValueKind.Number then
                 e.TryGetInt32()
             else
                 (false, 0))
        with
        | JsonValueKind.Number, (true, v) -> Some v
        | _ -> None

    let private kind show write (read: JsonElement -> 'T option) (expected: string) : Kind<'T> = {
        Show = show
        Write = write
        Read =
            fun e ->
                match read e with
                | Some v -> Ok(Some v)
                | None -> Error expected
    }

    /// A kind whose JSON null is a value (None).
    let private optional (none: string) (k: Kind<'T>) : Kind<'T option> = {
        Show = Option.map k.Show >> Option.defaultValue none
        Write =
            fun w v ->
                match v with
                | Some x -> k.Write w x
                | None -> w.WriteNullValue()
        Read =
            fun e ->
                if e.ValueKind = JsonValueKind.Null then
                    Ok(Some None)
                else
                    k.Read e |> Result.map (Option.map Some)
    }

    let private intKind =
        kind showInt (fun w (v: int) -> w.WriteNumberValue v) readInt "expected a whole number"

    let private floatKind =
        kind
            show
            (fun w (v: float) -> w.WriteNumberValue v)
            (fun e ->
                match
                    e.ValueKind,
                    (if e.ValueKind = JsonValueKind.Number then
                         e.TryGetDouble()
                     else
                         (false, 0.0))
                with
                | JsonValueKind.Number, (true, v) -> Some v
                | _ -> None)
            "expected a number"

    let private boolKind =
        kind
            (fun (b: bool) -> if b then "true" else "false")
            (fun w (v: bool) -> w.WriteBooleanValue v)
            (fun e ->
                match e.ValueKind with
                | JsonValueKind.True -> Some true
                | JsonValueKind.False -> Some false
                | _ -> None)
            "expected true or false"

    let private seedKind =
        kind
            (fun (v: uint64) -> v.ToString(CultureInfo.InvariantCulture))
            (fun w (v: uint64) -> w.WriteNumberValue v)
            (fun e ->
                match
                    e.ValueKind,
                    (if e.ValueKind = JsonValueKind.Number then
                         e.TryGetUInt64()
                     else
                         (false, 0UL))
                with
                | JsonValueKind.Number, (true, v) -> Some v
                | _ -> None)
            "expected a whole number of at least 0"

    /// A string that must be given: null is a problem the checks name.
    let private stringKind: Kind<string> = {
        Show = id
        Write = fun w v -> w.WriteStringValue v
        Read =
            fun e ->
                match e.ValueKind with
                | JsonValueKind.String -> Ok(Some(e.GetString() |> nonNull))
                | JsonValueKind.Null -> Ok None
                | _ -> Error "expected a string"
    }

    let private epochListKind: Kind<int list> = {
        Show = fun l -> if l.IsEmpty then "none" else String.Join(",", l)
        Write =
            fun w l ->
                w.WriteStartArray()

                for v in l do
                    w.WriteNumberValue(v: int)

                w.WriteEndArray()
        Read =
            fun e ->
                match e.ValueKind with
                | JsonValueKind.Null -> Ok None
                | JsonValueKind.Array ->
                    let values = [ for v in e.EnumerateArray() -> readInt v ]

                    if values |> List.forall Option.isSome then
                        Ok(Some(values |> List.choose id))
                    else
                        Error "expected a list of whole numbers"
                | _ -> Error "expected a list of whole numbers"
    }

    /// One row of the table: a value of kind `k` at `get`/`set`, checked by `check` (given the
    /// name a message uses); a JSON null where `k` has no null value is a problem the checks name.
    let private setting
        key
        flag
        decides
        (get: TrainSettings -> 'T)
        (set: 'T -> TrainSettings -> TrainSettings)
        (k: Kind<'T>)
        (check: string -> 'T -> string option)
        : Setting = {
        Key = key
        Flag = flag
        DecidesWeights = decides
        Show = get >> k.Show
        Check = fun _ name s -> check name (get s)
        Copy = fun from into -> set (get from) into
        Write =
            fun w s ->
                w.WritePropertyName key
                k.Write w (get s)
        Read =
            fun e s ->
                match k.Read e with
                | Ok(Some v) -> Ok(set v s, None)
                | Ok None -> Ok(s, Some(sprintf "%s is null; it must be given" key))
                | Error what -> invalid key what
    }

    let private noCheck _ _ = None

    let private datasetWith (bbox: string option) (d: Dataset) =
        match d with
        | Images(dir, _) -> Images(dir, bbox)
        | other -> other

    // the data set's name is parsed as it is read; an unknown one is the command line's message
    let private datasetSetting =
        let datasetKind: Kind<Dataset> = {
            Show = Dataset.name
            Write = fun w d -> w.WriteStringValue(Dataset.name d)
            Read = fun _ -> Ok None // replaced below: an unknown name is a problem, not a type error
        }

        let s =
            setting
                "dataset"
                "--dataset"
                true
                (fun s -> s.Dataset)
                // an image folder's bounding boxes are a setting of their own (bbox)
                (fun v s -> {
                    s with
                        Dataset = datasetWith (Dataset.bbox s.Dataset) v
                })
                datasetKind
                noCheck

        {
            s with
                Read =
                    fun e settings ->
                        match e.ValueKind with
                        | JsonValueKind.String ->
                            match Dataset.parse (e.GetString() |> nonNull) with
                            | Ok d ->
                                Ok(
                                    {
                                        settings with
                                            Dataset = datasetWith (Dataset.bbox settings.Dataset) d
                                    },
                                    None
                                )
                            | Error message -> Ok(settings, Some(message.TrimEnd '.'))
                        | JsonValueKind.Null -> Ok(settings, Some "dataset is null; it must be given")
                        | _ -> invalid "dataset" "expected a string"
        }

    // bounding boxes belong to an image folder; read after the data set
    let private bboxSetting =
        let s =
            setting
                "bbox"
                "--bbox"
                true
                (fun s -> Dataset.bbox s.Dataset)
                (fun v s -> {
                    s with
                        Dataset = datasetWith v s.Dataset
                })
                (optional "(none)" stringKind)
                noCheck

        {
            s with
                Read =
                    fun e settings ->
                        match e.ValueKind, settings.Dataset with
                        | JsonValueKind.Null, _ ->
                            Ok(
                                {
                                    settings with
                                        Dataset = datasetWith None settings.Dataset
                                },
                                None
                            )
                        | JsonValueKind.String, Images(dir, _) ->
                            Ok(
                                {
                                    settings with
                                        Dataset = Images(dir, Some(e.GetString() |> nonNull))
                                },
                                None
                            )
                        | JsonValueKind.String, other ->
                            Ok(settings, Some((bboxMisplaced "bbox (--bbox)" (Dataset.name other)).TrimEnd '.'))
                        | _ -> invalid "bbox" "expected a string or null"
        }

    // a stored 0 is a 2-D model's: no images
    let private imageSizeSetting =
        let s =
            setting
                "imageSize"
                "--image-size"
                true
                (fun s -> s.ImageSize)
                (fun v s -> { s with ImageSize = v })
                intKind
                noCheck

        {
            s with
                Check =
                    fun stored name v ->
                        if stored && v.ImageSize = 0 then
                            None
                        else
                            between 4 4096 name v.ImageSize
        }

    // no flag: the sample count follows the model; the message has no flag to name
    let private sampleCountSetting =
        let check _ v =
            if v < 1 || v > MaxSampleCount then
                Some(
                    String.Format(
                        CultureInfo.InvariantCulture,
                        "sampleCount must be between 1 and {0:N0} (got {1})",
                        MaxSampleCount,
                        (v: int)
                    )
                )
            else
                None

        setting "sampleCount" "" false (fun s -> s.SampleCount) (fun v s -> { s with SampleCount = v }) intKind check

    let private channels name c =
        if c <> 1 && c <> 3 then
            Some(sprintf "%s must be 1 (grey) or 3 (colour) (got %d)." name c)
        else
            None

    let private decay name v = checkDecay name v

    /// The settings in config.json's order (key, flag, decides the weights, get, set, kind,
    /// check). Weight-deciding ones are refused by --resume when the command line changes them,
    /// and compared with a checkpoint's.
    let internal table: Setting list = [
        setting "model" "--model" true (fun s -> s.Model) (fun v s -> { s with Model = v }) stringKind noCheck
        datasetSetting
        setting "channels" "--channels" true (fun s -> s.Channels) (fun v s -> { s with Channels = v }) intKind channels
        imageSizeSetting
        setting
            "noiseDim"
            "--noise-dim"
            true
            (fun s -> s.NoiseDim)
            (fun v s -> { s with NoiseDim = v })
            intKind
            (atLeast 1)
        setting
            "epochs"
            "--epochs"
            false
            (fun s -> s.Epochs)
            (fun v s -> { s with Epochs = v })
            intKind
            (between 1 MaxEpochs)
        setting
            "batchSize"
            "--batch-size"
            true
            (fun s -> s.BatchSize)
            (fun v s -> { s with BatchSize = v })
            intKind
            (between 1 65536)
        setting
            "learningRate"
            "--lr"
            true
            (fun s -> s.LearningRate)
            (fun v s -> { s with LearningRate = v })
            floatKind
            positive
        setting
            "generatorLrScale"
            "--g-lr-scale"
            true
            (fun s -> s.GeneratorLrScale)
            (fun v s -> { s with GeneratorLrScale = v })
            floatKind
            positive
        setting "beta1" "--beta1" true (fun s -> s.Beta1) (fun v s -> { s with Beta1 = v }) floatKind unitInterval
        setting "loss" "--loss" true (fun s -> s.Loss) (fun v s -> { s with Loss = v }) stringKind noCheck
        setting
            "dSteps"
            "--d-steps"
            true
            (fun s -> s.DSteps)
            (fun v s -> { s with DSteps = v })
            intKind
            (between 1 1000)
        setting
            "gpWeight"
            "--gp-weight"
            true
            (fun s -> s.GpWeight)
            (fun v s -> { s with GpWeight = v })
            floatKind
            nonNegative
        setting
            "r1Weight"
            "--r1-weight"
            true
            (fun s -> s.R1Weight)
            (fun v s -> { s with R1Weight = v })
            floatKind
            nonNegative
        setting "ema" "--ema" true (fun s -> s.Ema) (fun v s -> { s with Ema = v }) floatKind unitInterval
        setting
            "lrDecayEpochs"
            "--lr-decay-epochs"
            true
            (fun s -> s.LrDecayEpochs)
            (fun v s -> { s with LrDecayEpochs = v })
            epochListKind
            decay
        bboxSetting
        setting
            "trainSize"
            "--train-size"
            true
            (fun s -> s.TrainSize)
            (fun v s -> { s with TrainSize = v })
            (optional "(all)" intKind)
            (fun n -> Option.bind (atLeast 1 n))
        setting
            "checkpointEvery"
            "--checkpoint-every"
            false
            (fun s -> s.CheckpointEvery)
            (fun v s -> { s with CheckpointEvery = v })
            intKind
            (atLeast 1)
        setting
            "keepCheckpoints"
            "--keep-checkpoints"
            false
            (fun s -> s.KeepCheckpoints)
            (fun v s -> { s with KeepCheckpoints = v })
            intKind
            (between 1 1000)
        setting "seed" "--seed" true (fun s -> s.Seed) (fun v s -> { s with Seed = v }) seedKind noCheck
        setting
            "threads"
            "--threads"
            false
            (fun s -> s.Threads)
            (fun v s -> { s with Threads = v })
            intKind
            (between 0 1024)
        setting "device" "--device" false (fun s -> s.Device) (fun v s -> { s with Device = v }) stringKind (fun _ v ->
            match Gan.Functional.DeviceSpec.parse v with
            | Ok _ -> None
            | Error message -> Some message)
        setting "dataDir" "--data-dir" false (fun s -> s.DataDir) (fun v s -> { s with DataDir = v }) stringKind noCheck
        sampleCountSetting
        setting
            "evalEvery"
            "--eval-every"
            false
            (fun s -> s.EvalEvery)
            (fun v s -> { s with EvalEvery = v })
            intKind
            (between 0 MaxEpochs)
        setting "evaluate" "--no-eval" false (fun s -> s.Evaluate) (fun v s -> { s with Evaluate = v }) boolKind noCheck
        setting
            "syncBatchNorm"
            "--sync-batchnorm"
            false
            (fun s -> s.SyncBatchNorm)
            (fun v s -> { s with SyncBatchNorm = v })
            boolKind
            noCheck
        setting
            "evalSamples"
            "--eval-samples"
            false
            (fun s -> s.EvalSamples)
            (fun v s -> { s with EvalSamples = v })
            (optional "(default)" intKind)
            (fun n -> Option.bind (between 10 1_000_000 n))
    ]

    /// The config.json names of every setting, in the file's order.
    let keys = table |> List.map (fun s -> s.Key)

    /// The config.json names of the settings that decide the weights a run produces: --resume
    /// refuses to change them, and a checkpoint must agree with its run on them.
    let weightKeys =
        table |> List.filter (fun s -> s.DecidesWeights) |> List.map (fun s -> s.Key)

    /// The command-line flag of a setting by its config.json name ("" for sampleCount).
    let flagOf (key: string) =
        table
        |> List.tryFind (fun s -> s.Key = key)
        |> Option.map (fun s -> s.Flag)
        |> Option.defaultValue ""

    // ------------------------------------------------------------------ checks

    /// The message for the first given value the command line refuses, naming it by its flag.
    let checkGiven (given: GivenSettings) : string option =
        table
        |> List.filter (fun s -> given.Has s.Key)
        |> List.tryPick (fun s -> s.Check false s.Flag given.Values)

    /// The message for the first value the command line would refuse, naming it as
    /// "key (--flag)": the checks of a run's stored settings.
    let checkStored (settings: TrainSettings) : string option =
        table
        |> List.tryPick (fun s ->
            let name =
                if s.Flag = "" then
                    s.Key
                else
                    sprintf "%s (%s)" s.Key s.Flag

            s.Check true name settings)
        |> Option.map (fun m -> m.TrimEnd '.')

    /// The weight-deciding settings on which two runs differ, in config.json's order.
    let differences (first: TrainSettings) (second: TrainSettings) : SettingDifference list =
        table
        |> List.filter (fun s -> s.DecidesWeights)
        |> List.choose (fun s ->
            let a, b = s.Show first, s.Show second

            if a <> b then
                Some {
                    Key = s.Key
                    Flag = s.Flag
                    First = a
                    Second = b
                }
            else
                None)

    // ------------------------------------------------------------------ config.json

    /// What a config.json without a setting means: the values earlier versions wrote before the
    /// setting existed (e.g. evaluate true, keepCheckpoints 3).
    let internal blank = {
        Model = "mlp"
        Dataset = Mnist
        Channels = 0
        ImageSize = 0
        NoiseDim = 0
        Epochs = 0
        BatchSize = 0
        LearningRate = 0.0
        GeneratorLrScale = 0.0
        Beta1 = 0.0
        Loss = "bce"
        DSteps = 1
        GpWeight = 0.0
        R1Weight = 0.0
        Ema = 0.0
        LrDecayEpochs = []
        TrainSize = None
        CheckpointEvery = 0
        KeepCheckpoints = 3
        Seed = 0UL
        Threads = 0
        Device = "auto"
        DataDir = ""
        SampleCount = 16
        EvalEvery = 0
        Evaluate = true
        SyncBatchNorm = false
        EvalSamples = None
    }

    /// The settings as config.json holds them (indented, camelCase names, a final newline).
    let toJson (settings: TrainSettings) : string =
        use stream = new MemoryStream()

        do
            use w = new Utf8JsonWriter(stream, JsonWriterOptions(Indented = true))
            w.WriteStartObject()
            w.WriteNumber("format", CurrentFormat)

            for s in table do
                s.Write w settings

            w.WriteEndObject()

        Text.Encoding.UTF8.GetString(stream.ToArray()) + "\n"

    /// Reads and checks a run configuration (config.json, or one inside a checkpoint) that
    /// `source` names in messages: every value is checked as the command line checks its flags,
    /// so a hand-edited or damaged file ends in one message naming the setting. Settings the
    /// file lacks take the values older versions meant (<c>blank</c>); unknown ones are ignored.
    let ofJson (source: string) (json: string) : Result<TrainSettings, string> =
        let notValid (detail: string) =
            Error(
                sprintf
                    "%s is not a valid run configuration (%s). Restore it, or start a new run with another --out."
                    source
                    (detail.TrimEnd '.')
            )

        let notUnderstood (format: string) =
            Error(
                sprintf
                    "%s is not a run configuration this version understands (format %s). Start a new run with another --out."
                    source
                    format
            )

        let parsed =
            try
                Ok(JsonDocument.Parse json)
            with
            | :? JsonException as e -> Error e.Message
            | :? ArgumentException as e -> Error e.Message

        match parsed with
        | Error message -> notValid message
        | Ok doc ->
            use doc = doc
            let root = doc.RootElement

            match root.ValueKind with
            | JsonValueKind.Null -> notUnderstood ""
            | JsonValueKind.Object ->
                // the last of a name given twice counts, as for a deserializer
                let props =
                    root.EnumerateObject()
                    |> Seq.fold (fun (m: Map<string, JsonElement>) p -> m.Add(p.Name, p.Value)) Map.empty

                let format =
                    match props.TryFind "format" with
                    | None -> Ok CurrentFormat
                    | Some e ->
                        match readInt e with
                        | Some f -> Ok f
                        | None -> Error "format: expected a whole number"

                let read =
                    table
                    |> List.fold
                        (fun acc s ->
                            match acc with
                            | Error _ -> acc
                            | Ok(settings, problems) ->
                                match props.TryFind s.Key with
                                | None -> acc
                                | Some e ->
                                    match s.Read e settings with
                                    | Ok(next, problem) -> Ok(next, problems @ Option.toList problem)
                                    | Error message -> Error message)
                        (Ok(blank, []))

                match format, read with
                | Error message, _
                | _, Error message -> notValid message
                | Ok f, _ when f <> CurrentFormat -> notUnderstood (string f)
                | Ok _, Ok(settings, problems) ->
                    let nulls, others =
                        problems
                        |> List.partition (fun p -> p.EndsWith("it must be given", StringComparison.Ordinal))

                    let problem =
                        List.tryHead nulls
                        |> Option.orElse (List.tryHead others)
                        |> Option.orElse (checkStored settings)

                    match problem with
                    | Some p ->
                        Error(
                            sprintf
                                "%s has a setting the command line would refuse: %s. Restore the file (or fix that value), or start a new run with another --out."
                                source
                                p
                        )
                    | None -> Ok settings
            | _ -> notValid "the JSON value is not an object"

    // ------------------------------------------------------------------ defaults and merge

    /// A model's defaults (SEEDS.md) for `dataset`: the settings of a run given only the model.
    let forModel (model: GanModel) (dataset: Dataset) (channels: int) =
        let d = model.Defaults

        {
            blank with
                Model = model.Name
                Dataset = dataset
                Channels = channels
                ImageSize =
                    (if model.ImageShape.Length = 1 then
                         0
                     else
                         model.ImageShape.[1])
                NoiseDim = model.NoiseDim
                Epochs = d.QuickEpochs
                BatchSize = d.BatchSize
                LearningRate = d.Lr
                GeneratorLrScale = d.GLrScale
                Beta1 = d.Beta1
                LrDecayEpochs = d.LrDecayEpochs
                CheckpointEvery = d.CheckpointEvery
                SampleCount =
                    (if model.ImageShape.Length = 1 then
                         Mixtures.defaultSamples
                     else
                         16)
        }

    /// Nothing given: every value a placeholder.
    let noneGiven = { Values = blank; Keys = Set.empty }

    /// True for a new run that names no model on image data: it gets the first-run settings
    /// (<c>Zoo.firstRun</c>: model, epochs, learning rate, EMA) wherever the command line gives none.
    let isFirstRun (given: GivenSettings) =
        not (given.Has "model")
        && not (given.Has "dataset" && Dataset.isMixture given.Values.Dataset)

    /// The names the zoo knows, for messages.
    let private zooNames () = String.Join(", ", Zoo.names)

    /// The message for a model the zoo does not have.
    let unknownModel (name: string) =
        sprintf "Unknown model '%s'; the zoo has %s (`Gan.Host models` describes them)." name (zooNames ())

    let private modelOf (name: string) channels =
        if List.contains name Zoo.names then
            Ok(Zoo.byName name channels)
        else
            Error(unknownModel name)

    /// True for a zoo model whose channel count is a parameter (dcgan64).
    let takesChannels (name: string) =
        (Zoo.byName name 1).ImageShape.[0] <> (Zoo.byName name 3).ImageShape.[0]

    /// The settings of a new run: what was given over the model's defaults (the first run's where
    /// no model is named), with the model's fixed facts checked against what was given. Paths
    /// are taken as given (the caller makes them absolute); `cacheRoot` holds the data sets.
    let resolve (cacheRoot: string) (given: GivenSettings) : Result<TrainSettings, string> =
        let g = given.Values
        let dataset = if given.Has "dataset" then g.Dataset else Mnist
        let firstRun = isFirstRun given

        let name =
            if given.Has "model" then g.Model
            elif Dataset.isMixture dataset then "toy2d"
            else Zoo.firstRun.Model

        let result =
            modelOf name 3
            |> Result.bind (fun fixedModel ->
                let pointModel = fixedModel.ImageShape.Length = 1
                let dsName = Dataset.name dataset

                if pointModel <> Dataset.isMixture dataset then
                    let points =
                        Zoo.names |> List.filter (fun m -> (Zoo.byName m 3).ImageShape.Length = 1)

                    Error(
                        if pointModel then
                            sprintf
                                "%s generates 2-D points, so it trains on the mixtures ring8 and grid25 only, not %s; pick an image model for images (`Gan.Host models` lists them)."
                                name
                                dsName
                        else
                            sprintf
                                "%s is a mixture of 2-D points; %s generates images. Train it with %s."
                                dsName
                                name
                                (if points.IsEmpty then
                                     "a 2-D model (none is in this build's zoo)"
                                 else
                                     String.Join(" or ", points))
                    )
                elif pointModel && (given.Has "channels" || given.Has "imageSize") then
                    Error(sprintf "--channels and --image-size describe images; %s generates 2-D points." name)
                else
                    let stacked = dataset = StackedMnist

                    let channels =
                        if pointModel then
                            Ok 1
                        elif takesChannels name then
                            let c =
                                if given.Has "channels" then
                                    g.Channels
                                else
                                    Dataset.defaultChannels dataset

                            if stacked && c <> 3 then
                                Error
                                    "stacked-mnist has 3 channels (one digit each); drop --channels 1 or pass --channels 3."
                            else
                                Ok c
                        else
                            let c = fixedModel.ImageShape.[0]

                            if stacked && c <> 3 then
                                Error(
                                    sprintf
                                        "stacked-mnist has 3 channels (one digit each), but %s generates %d-channel images. No zoo model makes 3×28×28 images; dcgan64 (--channels 3) and valid64 train on Stacked MNIST resized to 64×64."
                                        name
                                        c
                                )
                            elif given.Has "channels" && g.Channels <> c then
                                Error(
                                    sprintf
                                        "--channels %d does not fit %s, which generates %d-channel images; only dcgan64 takes either 1 or 3."
                                        g.Channels
                                        name
                                        c
                                )
                            else
                                Ok c

                    channels
                    |> Result.bind (fun channels ->
                        let model = Zoo.byName name channels
                        let defaults = forModel model dataset channels
                        let size = defaults.ImageSize

                        if given.Has "imageSize" && g.ImageSize <> size then
                            Error(
                                sprintf
                                    "--image-size %d does not fit %s, whose layers are built for %d×%d images; data is resized to %d automatically."
                                    g.ImageSize
                                    name
                                    size
                                    size
                                    size
                            )
                        elif given.Has "noiseDim" && g.NoiseDim <> model.NoiseDim then
                            Error(
                                sprintf
                                    "--noise-dim %d does not fit %s, whose generator takes z of length %d (fixed by SEEDS.md)."
                                    g.NoiseDim
                                    name
                                    model.NoiseDim
                            )
                        else
                            let defaults = {
                                defaults with
                                    Epochs = (if firstRun then Zoo.firstRun.Epochs else defaults.Epochs)
                                    LearningRate = (if firstRun then Zoo.firstRun.Lr else defaults.LearningRate)
                                    Ema = (if firstRun then Zoo.firstRun.EmaDecay else 0.0)
                                    DataDir =
                                        Dataset.cacheFolder dataset
                                        |> Option.map (fun f -> Path.Combine(cacheRoot, f))
                                        |> Option.defaultValue ""
                            }

                            let fixedKeys =
                                set [ "model"; "dataset"; "bbox"; "channels"; "imageSize"; "noiseDim" ]

                            let settings =
                                table
                                |> List.fold
                                    (fun acc s ->
                                        if given.Has s.Key && not (fixedKeys.Contains s.Key) then
                                            s.Copy g acc
                                        else
                                            acc)
                                    defaults

                            Ok settings))

        result
        |> Result.bind (fun s ->
            match Gan.Functional.DeviceSpec.parse s.Device with
            | Error message -> Error message
            | Ok _ when not (List.contains s.Loss lossNames) ->
                Error(sprintf "Unknown loss '%s'; known: %s." s.Loss (String.Join(", ", lossNames)))
            | Ok device -> Ok { s with Device = device.Name })

    /// The settings of a resumed run: the stored ones, with what the command line gives over
    /// them, resolved as a new run's are. The image size and noise length always come from the
    /// model (a changed stored value shows as a difference), and a 2-D run's channel count is
    /// not carried over. The caller compares the result with `stored` (<c>differences</c>) and
    /// refuses changed weight-deciding settings.
    let resume (cacheRoot: string) (stored: TrainSettings) (given: GivenSettings) : Result<TrainSettings, string> =
        let carried =
            keys
            |> List.filter (fun k ->
                k <> "imageSize"
                && k <> "noiseDim"
                && not (k = "channels" && Dataset.isMixture stored.Dataset))
            |> Set.ofList

        let values =
            table
            |> List.fold (fun acc s -> if given.Has s.Key then s.Copy given.Values acc else acc) stored

        resolve cacheRoot {
            Values = values
            Keys = Set.union carried given.Keys
        }

    /// The engine's training configuration of these settings (Adam with the settings' β1 for
    /// both networks); `simultaneousUpdates` as the model's seed does it (<c>ModelDefaults</c>).
    let trainConfig (settings: TrainSettings) (simultaneousUpdates: bool) : TrainConfig = {
        Training.defaultConfig settings.Beta1 with
            Loss = lossOf settings.Loss
            DSteps = settings.DSteps
            GpWeight = settings.GpWeight
            R1Weight = settings.R1Weight
            EmaDecay = settings.Ema
            SimultaneousUpdates = simultaneousUpdates
    }
