namespace Gan.Host.Cli

open System
open System.Globalization
open Argu
open Gan.Functional.Run

/// Parses Gan.Host's command line into plain requests. Pure: no I/O; values are checked for
/// range here, names (models, losses, devices) and files by the host.
module CommandLine =

    /// The program name shown in usage lines.
    [<Literal>]
    let ProgramName = "Gan.Host"

    let private commands = [ "train"; "sample"; "models"; "devices"; "bench" ]

    let private parser =
        ArgumentParser.Create<HostArgs>(programName = ProgramName, checkStructure = false)

    /// The evaluation and exploration commands, after the core ones.
    let private allCommands =
        commands @ [ "classifier"; "evaluate"; "interpolate"; "arithmetic"; "report" ]

    exception private BadValue of string

    let private fail fmt =
        Printf.kprintf (fun s -> raise (BadValue s)) fmt

    let private show (v: float) =
        v.ToString("R", CultureInfo.InvariantCulture)

    let private atLeast flag lo (v: int) =
        if v < lo then
            fail "%s must be at least %d (got %d)." flag lo v

        v

    let private between flag lo hi (v: int) =
        if v < lo || v > hi then
            fail "%s must be between %d and %d (got %d)." flag lo hi v

        v

    /// An optional int flag checked against [lo, hi], or its default when absent.
    let private betweenOr flag lo hi fallback (v: int option) =
        v |> Option.map (between flag lo hi) |> Option.defaultValue fallback

    let private threads (v: int option) = betweenOr "--threads" 0 1024 0 v

    /// A --device value in its written form (the library's DeviceSpec), or its default.
    let private device fallback (v: string option) =
        match v with
        | None -> fallback
        | Some text ->
            match Gan.Functional.DeviceSpec.parse text with
            | Ok spec -> spec.Name
            | Error message -> fail "%s" message

    let private positive flag (v: float) =
        if not (Double.IsFinite v) || v <= 0.0 then
            fail "%s must be a positive number (got %s)." flag (show v)

        v

    let private nonNegative flag (v: float) =
        if not (Double.IsFinite v) || v < 0.0 then
            fail "%s must be zero or a positive number (got %s)." flag (show v)

        v

    let private unitInterval flag (v: float) =
        if not (Double.IsFinite v) || v < 0.0 || v >= 1.0 then
            fail "%s must be at least 0 and below 1 (got %s)." flag (show v)

        v

    /// "10,20,25" → [|10; 20; 25|]; "none" or "" → [||].
    let parseEpochList (text: string) =
        let t = text.Trim()

        if t = "" || t.Equals("none", StringComparison.OrdinalIgnoreCase) then
            [||]
        else
            let parts = t.Split(',') |> Array.map (fun s -> s.Trim())

            let values =
                parts
                |> Array.map (fun s ->
                    match Int32.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture) with
                    | true, v when v >= 1 -> v
                    | _ ->
                        fail
                            "--lr-decay-epochs takes epoch numbers of at least 1 separated by commas, e.g. 10,20,25, or none (got '%s')."
                            text)

            match TrainSettings.checkDecay "--lr-decay-epochs" (List.ofArray values) with
            | Some message -> raise (BadValue message)
            | None -> values

    let private nullable (v: 'T option) =
        match v with
        | Some x -> Nullable x
        | None -> Nullable()

    let private str (v: string option) : string | null =
        match v with
        | Some s -> s
        | None -> null

    let private orFail (r: Result<'T, string>) =
        match r with
        | Ok v -> v
        | Error message -> raise (BadValue message)

    let private trainRequest (r: ParseResults<TrainArgs>) =
        let mutable values = TrainSettings.noneGiven.Values
        let mutable keys = Set.empty

        let give key (value: 'T option) (set: 'T -> TrainSettings -> TrainSettings) =
            match value with
            | Some v ->
                values <- set v values
                keys <- keys.Add key
            | None -> ()

        let dataset =
            r.TryGetResult TrainArgs.Dataset |> Option.map (Dataset.parse >> orFail)

        give "dataset" dataset (fun v s -> { s with Dataset = v })
        give "model" (r.TryGetResult TrainArgs.Model) (fun v s -> { s with Model = v })
        give "epochs" (r.TryGetResult TrainArgs.Epochs) (fun v s -> { s with Epochs = v })
        give "batchSize" (r.TryGetResult TrainArgs.Batch_Size) (fun v s -> { s with BatchSize = v })
        give "learningRate" (r.TryGetResult TrainArgs.Lr) (fun v s -> { s with LearningRate = v })
        give "generatorLrScale" (r.TryGetResult TrainArgs.G_Lr_Scale) (fun v s -> { s with GeneratorLrScale = v })
        give "beta1" (r.TryGetResult TrainArgs.Beta1) (fun v s -> { s with Beta1 = v })
        give "noiseDim" (r.TryGetResult TrainArgs.Noise_Dim) (fun v s -> { s with NoiseDim = v })
        give "loss" (r.TryGetResult TrainArgs.Loss) (fun v s -> { s with Loss = v })
        give "dSteps" (r.TryGetResult TrainArgs.D_Steps) (fun v s -> { s with DSteps = v })
        give "gpWeight" (r.TryGetResult TrainArgs.Gp_Weight) (fun v s -> { s with GpWeight = v })
        give "r1Weight" (r.TryGetResult TrainArgs.R1_Weight) (fun v s -> { s with R1Weight = v })
        give "ema" (r.TryGetResult TrainArgs.Ema) (fun v s -> { s with Ema = v })

        give "lrDecayEpochs" (r.TryGetResult TrainArgs.Lr_Decay_Epochs |> Option.map parseEpochList) (fun v s -> {
            s with
                LrDecayEpochs = List.ofArray v
        })

        give "imageSize" (r.TryGetResult TrainArgs.Image_Size) (fun v s -> { s with ImageSize = v })
        give "channels" (r.TryGetResult TrainArgs.Channels) (fun v s -> { s with Channels = v })
        give "trainSize" (r.TryGetResult TrainArgs.Train_Size) (fun v s -> { s with TrainSize = Some v })
        give "checkpointEvery" (r.TryGetResult TrainArgs.Checkpoint_Every) (fun v s -> { s with CheckpointEvery = v })
        give "keepCheckpoints" (r.TryGetResult TrainArgs.Keep_Checkpoints) (fun v s -> { s with KeepCheckpoints = v })
        give "seed" (r.TryGetResult TrainArgs.Seed) (fun v s -> { s with Seed = v })
        give "threads" (r.TryGetResult TrainArgs.Threads) (fun v s -> { s with Threads = v })
        give "device" (r.TryGetResult TrainArgs.Device) (fun v s -> { s with Device = v })
        give "dataDir" (r.TryGetResult TrainArgs.Data_Dir) (fun v s -> { s with DataDir = v })
        // --eval-every scores again a run stored with --no-eval
        give "evalEvery" (r.TryGetResult TrainArgs.Eval_Every) (fun v s -> { s with EvalEvery = v })
        give "evaluate" (r.TryGetResult TrainArgs.Eval_Every) (fun _ s -> { s with Evaluate = true })
        give "evalSamples" (r.TryGetResult TrainArgs.Eval_Samples) (fun v s -> { s with EvalSamples = Some v })

        give
            "syncBatchNorm"
            (if r.Contains TrainArgs.Sync_Batchnorm then
                 Some true
             else
                 None)
            (fun v s -> { s with SyncBatchNorm = v })

        match TrainSettings.checkGiven { Values = values; Keys = keys } with
        | Some message -> raise (BadValue message)
        | None -> ()

        match r.TryGetResult TrainArgs.Bbox, dataset with
        | Some b, Some(Images(dir, _)) -> give "bbox" (Some b) (fun v s -> { s with Dataset = Images(dir, Some v) })
        | Some _, d ->
            let name = d |> Option.map Dataset.name |> Option.defaultValue "mnist"
            raise (BadValue(TrainSettings.bboxMisplaced "--bbox" name))
        | None, _ -> ()

        if r.Contains TrainArgs.No_Eval then
            match r.TryGetResult TrainArgs.Eval_Every with
            | Some e when e > 0 -> fail "--no-eval turns the metrics off; it cannot be combined with --eval-every %d." e
            | _ -> ()

            give "evaluate" (Some false) (fun v s -> { s with Evaluate = v; EvalEvery = 0 })
            give "evalEvery" (Some 0) (fun v s -> { s with EvalEvery = v })

        let req = TrainRequest { Values = values; Keys = keys }
        req.Out <- str (r.TryGetResult TrainArgs.Out)
        req.Resume <- r.Contains TrainArgs.Resume
        req

    let private requiredOut (command: string) (ext: string) (v: string option) =
        match v with
        | Some o when o.Trim() <> "" -> o
        | _ -> fail "%s needs --out FILE%s, the file to write." command ext

    let private runOrCheckpoint (command: string) (run: string option) (checkpoint: string option) =
        match run, checkpoint with
        | None, None -> fail "%s needs --run DIR or --checkpoint FILE." command
        | Some _, Some _ -> fail "%s takes --run DIR or --checkpoint FILE, not both." command
        | _ -> str run, str checkpoint

    /// "3,7,9" → [|3; 7; 9|]: sample indices of at least 0.
    let parseIndexList (flag: string) (text: string) =
        let parts = text.Split(',') |> Array.map (fun s -> s.Trim())

        let values =
            parts
            |> Array.map (fun s ->
                match Int32.TryParse(s, NumberStyles.None, CultureInfo.InvariantCulture) with
                | true, v when v <= 100_000 -> v
                | _ ->
                    fail
                        "%s takes sample indices (0-based whole numbers up to 100000) separated by commas, e.g. 3,7,9 (got '%s')."
                        flag
                        text)

        values

    let private classifierRequest (r: ParseResults<ClassifierArgs>) =
        let req = ClassifierRequest()

        req.Dataset <-
            match r.TryGetResult ClassifierArgs.Dataset with
            | None -> Dataset.name Mnist
            | Some d ->
                match Dataset.parse d with
                | Ok(Mnist | FashionMnist as ds) -> Dataset.name ds
                | _ -> fail "The classifier backbone exists for mnist and fashion-mnist only (got --dataset '%s')." d

        req.DataDir <- str (r.TryGetResult ClassifierArgs.Data_Dir)
        req.Threads <- threads (r.TryGetResult ClassifierArgs.Threads)
        req

    let private evaluateRequest (r: ParseResults<EvaluateArgs>) =
        let req = EvaluateRequest()
        req.Run <- str (r.TryGetResult EvaluateArgs.Run)
        req.Checkpoint <- str (r.TryGetResult EvaluateArgs.Checkpoint)
        req.Images <- str (r.TryGetResult EvaluateArgs.Images)
        req.Dataset <- str (r.TryGetResult EvaluateArgs.Dataset)
        // the data set parsed once; an unknown name is refused by the rules below, as before
        let parsed = r.TryGetResult EvaluateArgs.Dataset |> Option.map Dataset.parse

        let isOneOf (wanted: Dataset list) =
            match parsed with
            | Some(Ok ds) -> List.contains ds wanted
            | _ -> false

        req.Real <- r.Contains EvaluateArgs.Real

        req.Features <-
            match r.TryGetResult EvaluateArgs.Features with
            | None -> null
            | Some "resnet18" ->
                match req.Dataset with
                | NonNull d when not (isOneOf [ Emoji ]) ->
                    fail "--features resnet18 scores colour data (emoji); %s is scored with its own metrics." d
                | _ -> "resnet18"
            | Some f ->
                fail "--features: unknown features '%s'; the colour metrics use resnet18 (ImageNet ResNet-18)." f

        match req.Real, req.Images, req.Run, req.Checkpoint, req.Dataset with
        | true, Null, Null, Null, NonNull _ when
            (match parsed with
             | Some(Ok ds) -> Dataset.hasMetrics ds
             | _ -> false)
            ->
            ()
        | true, Null, Null, Null, _ ->
            fail
                "evaluate --real needs --dataset mnist, fashion-mnist, stacked-mnist, emoji, ring8 or grid25: the data to score."
        | true, _, _, _, _ ->
            fail "evaluate --real scores the dataset itself; it takes no --images, --run or --checkpoint."
        | false, _, _, _, _ -> ()

        match req.Images, req.Run, req.Checkpoint, req.Dataset with
        | _ when req.Real -> ()
        | NonNull _, Null, Null, Null ->
            fail
                "evaluate --images DIR needs --dataset mnist or fashion-mnist (the classifier that scores the images) or emoji (ImageNet features)."
        | NonNull _, Null, Null, NonNull d when not (isOneOf [ Mnist; FashionMnist; Emoji ]) ->
            fail
                "evaluate --images scores with the mnist or fashion-mnist classifier, or against emoji's held-out images (got --dataset '%s')."
                d
        | NonNull _, Null, Null, NonNull _ -> ()
        | NonNull _, _, _, _ -> fail "evaluate takes --images DIR or --run DIR/--checkpoint FILE, not both."
        | Null, Null, Null, _ -> fail "evaluate needs --run DIR (or --checkpoint FILE), or --images DIR with --dataset."
        | Null, _, _, NonNull _ ->
            fail "--dataset goes with evaluate --images; a run is scored on the dataset in its configuration."
        | Null, _, _, Null -> ()

        req.Samples <-
            nullable (
                r.TryGetResult EvaluateArgs.Samples
                |> Option.map (between "--samples" 10 1_000_000)
            )

        req.Json <-
            match r.TryGetResult EvaluateArgs.Json with
            | Some j when j.Trim() = "" -> fail "--json needs a file name."
            | j -> str j

        req.Seed <- r.TryGetResult EvaluateArgs.Seed |> Option.defaultValue 0UL
        req.UseEma <- not (r.Contains EvaluateArgs.No_Ema)
        req.DataDir <- str (r.TryGetResult EvaluateArgs.Data_Dir)
        req.Threads <- threads (r.TryGetResult EvaluateArgs.Threads)
        req.Device <- device "auto" (r.TryGetResult EvaluateArgs.Device)
        req

    let private interpolateRequest (r: ParseResults<InterpolateArgs>) =
        let req = InterpolateRequest()

        let run, checkpoint =
            runOrCheckpoint
                "interpolate"
                (r.TryGetResult InterpolateArgs.Run)
                (r.TryGetResult InterpolateArgs.Checkpoint)

        req.Run <- run
        req.Checkpoint <- checkpoint

        req.Steps <- r.TryGetResult InterpolateArgs.Steps |> betweenOr "--steps" 2 64 8

        req.Rows <- r.TryGetResult InterpolateArgs.Rows |> betweenOr "--rows" 1 64 4

        req.Spherical <- r.Contains InterpolateArgs.Spherical
        req.Seed <- r.TryGetResult InterpolateArgs.Seed |> Option.defaultValue 0UL
        req.Out <- requiredOut "interpolate" ".png" (r.TryGetResult InterpolateArgs.Out)
        req.UseEma <- not (r.Contains InterpolateArgs.No_Ema)
        req.Threads <- threads (r.TryGetResult InterpolateArgs.Threads)
        req

    let private arithmeticRequest (r: ParseResults<ArithmeticArgs>) =
        let req = ArithmeticRequest()

        let run, checkpoint =
            runOrCheckpoint "arithmetic" (r.TryGetResult ArithmeticArgs.Run) (r.TryGetResult ArithmeticArgs.Checkpoint)

        req.Run <- run
        req.Checkpoint <- checkpoint

        let group flag (v: string option) =
            match v with
            | Some t -> parseIndexList flag t
            | None -> fail "arithmetic needs --a, --b and --c, each a list of sample indices (missing %s)." flag

        req.A <- group "--a" (r.TryGetResult ArithmeticArgs.A)
        req.B <- group "--b" (r.TryGetResult ArithmeticArgs.B)
        req.C <- group "--c" (r.TryGetResult ArithmeticArgs.C)
        req.Seed <- r.TryGetResult ArithmeticArgs.Seed |> Option.defaultValue 0UL
        req.Out <- requiredOut "arithmetic" ".png" (r.TryGetResult ArithmeticArgs.Out)
        req.UseEma <- not (r.Contains ArithmeticArgs.No_Ema)
        req.Threads <- threads (r.TryGetResult ArithmeticArgs.Threads)
        req

    let private reportRequest (r: ParseResults<ReportArgs>) =
        let req = ReportRequest()

        req.Run <-
            match r.TryGetResult ReportArgs.Run with
            | Some d when d.Trim() <> "" -> d
            | _ -> fail "report needs --run DIR, the run directory to describe."

        req.Out <- str (r.TryGetResult ReportArgs.Out)
        req

    let private sampleRequest (r: ParseResults<SampleArgs>) =
        let req = SampleRequest()
        req.Run <- str (r.TryGetResult SampleArgs.Run)
        req.Checkpoint <- str (r.TryGetResult SampleArgs.Checkpoint)

        match req.Run, req.Checkpoint with
        | null, null -> fail "sample needs --run DIR or --checkpoint FILE."
        | NonNull _, NonNull _ -> fail "sample takes --run DIR or --checkpoint FILE, not both."
        | _ -> ()

        req.Count <- r.TryGetResult SampleArgs.Count |> betweenOr "--count" 1 4096 16

        req.Out <-
            match r.TryGetResult SampleArgs.Out with
            | Some o when o.Trim() <> "" -> o
            | _ -> fail "sample needs --out FILE.png, the image to write."

        req.Seed <- r.TryGetResult SampleArgs.Seed |> Option.defaultValue 0UL
        req.UseEma <- not (r.Contains SampleArgs.No_Ema)

        req.Threads <- threads (r.TryGetResult SampleArgs.Threads)
        req.Device <- device "auto" (r.TryGetResult SampleArgs.Device)

        req

    let private benchRequest (r: ParseResults<BenchArgs>) =
        let req = BenchRequest()
        req.Model <- r.TryGetResult BenchArgs.Model |> Option.defaultValue "all"
        req.Batch <- nullable (r.TryGetResult BenchArgs.Batch |> Option.map (between "--batch" 1 65536))

        req.Steps <- r.TryGetResult BenchArgs.Steps |> betweenOr "--steps" 1 100000 10

        req.Warmup <- r.TryGetResult BenchArgs.Warmup |> betweenOr "--warmup" 0 100000 3

        req.Threads <- threads (r.TryGetResult BenchArgs.Threads)
        req.Device <- device "auto" (r.TryGetResult BenchArgs.Device)

        req.ProfileShapes <- r.Contains BenchArgs.Profile_Shapes
        req.Profile <- r.Contains BenchArgs.Profile || req.ProfileShapes
        req.SyncBatchNorm <- r.Contains BenchArgs.Sync_Batchnorm
        req.Check <- r.Contains BenchArgs.Check
        req.Allreduce <- r.Contains BenchArgs.Allreduce
        req.Ab <- r.TryGetResult BenchArgs.Ab |> Option.toObj
        req

    let private error (command: string option) (message: string) =
        let hint =
            match command with
            | Some c -> sprintf "Run `%s %s --help` for the options." ProgramName c
            | None -> sprintf "Run `%s --help` for the commands." ProgramName

        ParsedCommand(CommandKind.Error, message.TrimEnd() + " " + hint, null, null, 3, 0)

    /// Argu's message is "ERROR: what.\nUSAGE: …": keep the first line, without the prefix.
    let private arguMessage (message: string) =
        let first =
            message.Split('\n')
            |> Array.map (fun l -> l.Trim())
            |> Array.tryFind (fun l -> l <> "")
            |> Option.defaultValue message

        let first =
            if first.StartsWith("ERROR:", StringComparison.OrdinalIgnoreCase) then
                first.Substring(6).Trim()
            else
                first

        let first = first.TrimEnd('.') + "."
        string (Char.ToUpperInvariant first.[0]) + first.Substring(1)

    /// The usage text of a command ("" for the top level).
    let usage (command: string) =
        match command with
        | "train" -> parser.GetSubCommandParser(HostArgs.Train).PrintUsage()
        | "sample" -> parser.GetSubCommandParser(HostArgs.Sample).PrintUsage()
        | "classifier" -> parser.GetSubCommandParser(HostArgs.Classifier).PrintUsage()
        | "evaluate" -> parser.GetSubCommandParser(HostArgs.Evaluate).PrintUsage()
        | "interpolate" -> parser.GetSubCommandParser(HostArgs.Interpolate).PrintUsage()
        | "arithmetic" -> parser.GetSubCommandParser(HostArgs.Arithmetic).PrintUsage()
        | "report" -> parser.GetSubCommandParser(HostArgs.Report).PrintUsage()
        | "models" -> parser.GetSubCommandParser(HostArgs.Models).PrintUsage()
        | "devices" -> parser.GetSubCommandParser(HostArgs.Devices).PrintUsage()
        | "bench" -> parser.GetSubCommandParser(HostArgs.Bench).PrintUsage()
        | _ -> parser.PrintUsage()

    /// Parses a command line. No arguments means `train` with every default; a command line
    /// that starts with a train flag (e.g. `--epochs 5`) is a `train` command line.
    let parse (argv: string array) : ParsedCommand =
        let argv =
            if argv.Length = 0 then
                [| "train" |]
            elif
                argv.[0].StartsWith("--", StringComparison.Ordinal)
                && argv.[0] <> "--help"
                && argv.[0] <> "--version"
            then
                Array.append [| "train" |] argv
            else
                argv

        let command =
            if allCommands |> List.contains argv.[0] then
                Some argv.[0]
            else
                None

        match command with
        | None when argv.[0] = "--help" || argv.[0] = "-h" || argv.[0] = "help" || argv.[0] = "/?" ->
            ParsedCommand(CommandKind.Help, parser.PrintUsage(), null, null, 3, 0)
        | None when argv.[0] = "--version" ->
            let v =
                typeof<BenchRequest>.Assembly.GetName().Version
                |> Option.ofObj
                |> Option.map string
                |> Option.defaultValue "?"

            ParsedCommand(CommandKind.Help, sprintf "%s %s" ProgramName v, null, null, 3, 0)
        | None ->
            error None (sprintf "Unknown command '%s'; the commands are %s." argv.[0] (String.Join(", ", allCommands)))
        | Some name ->
            try
                let results = parser.ParseCommandLine(argv, raiseOnUsage = true)

                match results.GetSubCommand() with
                | HostArgs.Train r -> ParsedCommand(CommandKind.Train, "", trainRequest r, null, 3, 0)
                | HostArgs.Sample r -> ParsedCommand(CommandKind.Sample, "", null, sampleRequest r, 3, 0)
                | HostArgs.Classifier r ->
                    ParsedCommand(CommandKind.Classifier, "", null, null, 3, 0, Classifier = classifierRequest r)
                | HostArgs.Evaluate r ->
                    ParsedCommand(CommandKind.Evaluate, "", null, null, 3, 0, Evaluate = evaluateRequest r)
                | HostArgs.Interpolate r ->
                    ParsedCommand(CommandKind.Interpolate, "", null, null, 3, 0, Interpolate = interpolateRequest r)
                | HostArgs.Arithmetic r ->
                    ParsedCommand(CommandKind.Arithmetic, "", null, null, 3, 0, Arithmetic = arithmeticRequest r)
                | HostArgs.Report r -> ParsedCommand(CommandKind.Report, "", null, null, 3, 0, Report = reportRequest r)
                | HostArgs.Models r ->
                    let c =
                        r.TryGetResult ModelsArgs.Channels
                        |> Option.map (fun c ->
                            if c <> 1 && c <> 3 then
                                fail "--channels must be 1 (grey) or 3 (colour) (got %d)." c

                            c)
                        |> Option.defaultValue 3

                    ParsedCommand(CommandKind.Models, "", null, null, c, 0)
                | HostArgs.Devices r ->
                    let t = threads (r.TryGetResult DevicesArgs.Threads)

                    ParsedCommand(CommandKind.Devices, "", null, null, 3, t)
                | HostArgs.Bench r -> ParsedCommand(CommandKind.Bench, "", null, null, 3, 0, Bench = benchRequest r)
            with
            | :? ArguParseException as e when e.ErrorCode = ErrorCode.HelpText ->
                ParsedCommand(CommandKind.Help, e.Message, null, null, 3, 0)
            | :? ArguParseException as e -> error (Some name) (arguMessage e.Message)
            | BadValue message -> error (Some name) message
