namespace Gan.Host.Cli

open System
open System.Globalization
open Argu

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

    let private checkDecay (flag: string) (values: int array) =
        if values |> Array.exists (fun v -> v < 1) then
            fail "%s takes epoch numbers of at least 1 (got '%s')." flag (String.Join(",", values))

        if values |> Array.pairwise |> Array.exists (fun (a, b) -> b <= a) then
            fail "%s must list epochs in increasing order (got '%s')." flag (String.Join(",", values))

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

            checkDecay "--lr-decay-epochs" values
            values

    let private nullable (v: 'T option) =
        match v with
        | Some x -> Nullable x
        | None -> Nullable()

    let private str (v: string option) : string | null =
        match v with
        | Some s -> s
        | None -> null

    let private checkDataset (spec: string) =
        let s = spec.Trim()

        if List.contains s [ "mnist"; "fashion-mnist"; "ring8"; "grid25"; "stacked-mnist"; "emoji" ] then
            s
        elif s.StartsWith("images:", StringComparison.Ordinal) then
            if s.Length = "images:".Length then
                fail "--dataset images:DIR needs a folder after the colon, e.g. images:/data/celeba."

            s
        else
            fail
                "Unknown dataset '%s'; known: mnist, fashion-mnist, stacked-mnist, emoji (64×64 colour), ring8, grid25 (2-D mixtures), images:DIR (a folder of PNG/JPEG files)."
                spec

    /// The range of --epochs (and of a run's stored epochs).
    [<Literal>]
    let MaxEpochs = 1_000_000

    let private check (f: 'T -> 'T) (v: Nullable<'T>) =
        if v.HasValue then
            f v.Value |> ignore

    /// Range-checks every value a train request carries; <c>name</c> turns a flag into the name a
    /// message shows (the flag itself on the command line, the stored setting for a run's config.json).
    let private checkTrain (name: string -> string) (req: TrainRequest) =
        match req.Dataset with
        | NonNull d -> checkDataset d |> ignore
        | Null -> ()

        check (between (name "--epochs") 1 MaxEpochs) req.Epochs
        check (between (name "--batch-size") 1 65536) req.BatchSize
        check (positive (name "--lr")) req.LearningRate
        check (positive (name "--g-lr-scale")) req.GeneratorLrScale
        check (unitInterval (name "--beta1")) req.Beta1
        check (atLeast (name "--noise-dim") 1) req.NoiseDim
        check (between (name "--d-steps") 1 1000) req.DSteps
        check (nonNegative (name "--gp-weight")) req.GradientPenaltyWeight
        check (nonNegative (name "--r1-weight")) req.R1Weight
        check (unitInterval (name "--ema")) req.EmaDecay

        match req.LrDecayEpochs with
        | NonNull e -> checkDecay (name "--lr-decay-epochs") e
        | Null -> ()

        check (between (name "--image-size") 4 4096) req.ImageSize

        check
            (fun c ->
                if c <> 1 && c <> 3 then
                    fail "%s must be 1 (grey) or 3 (colour) (got %d)." (name "--channels") c

                c)
            req.Channels

        check (atLeast (name "--train-size") 1) req.TrainSize
        check (atLeast (name "--checkpoint-every") 1) req.CheckpointEvery
        check (between (name "--keep-checkpoints") 1 1000) req.KeepCheckpoints
        check (between (name "--threads") 0 1024) req.Threads
        check (between (name "--eval-every") 0 MaxEpochs) req.EvalEvery
        check (between (name "--eval-samples") 10 1_000_000) req.EvalSamples

        match req.BoundingBoxes, req.Dataset with
        | NonNull _, NonNull d when d.StartsWith("images:", StringComparison.Ordinal) -> ()
        | NonNull _, d ->
            let ds =
                match d with
                | NonNull d -> d
                | Null -> "mnist"

            fail "%s crops the images of --dataset images:DIR; it does not apply to %s." (name "--bbox") ds
        | Null, _ -> ()

    let private trainRequest (r: ParseResults<TrainArgs>) =
        let req = TrainRequest()
        req.Model <- str (r.TryGetResult TrainArgs.Model)
        req.Dataset <- str (r.TryGetResult TrainArgs.Dataset |> Option.map (fun d -> d.Trim()))
        req.Epochs <- nullable (r.TryGetResult TrainArgs.Epochs)
        req.BatchSize <- nullable (r.TryGetResult TrainArgs.Batch_Size)
        req.LearningRate <- nullable (r.TryGetResult TrainArgs.Lr)
        req.GeneratorLrScale <- nullable (r.TryGetResult TrainArgs.G_Lr_Scale)
        req.Beta1 <- nullable (r.TryGetResult TrainArgs.Beta1)
        req.NoiseDim <- nullable (r.TryGetResult TrainArgs.Noise_Dim)
        req.Loss <- str (r.TryGetResult TrainArgs.Loss)
        req.DSteps <- nullable (r.TryGetResult TrainArgs.D_Steps)
        req.GradientPenaltyWeight <- nullable (r.TryGetResult TrainArgs.Gp_Weight)
        req.R1Weight <- nullable (r.TryGetResult TrainArgs.R1_Weight)
        req.EmaDecay <- nullable (r.TryGetResult TrainArgs.Ema)

        let decay: int array | null =
            match r.TryGetResult TrainArgs.Lr_Decay_Epochs with
            | Some t -> parseEpochList t
            | None -> null

        req.LrDecayEpochs <- decay
        req.ImageSize <- nullable (r.TryGetResult TrainArgs.Image_Size)
        req.Channels <- nullable (r.TryGetResult TrainArgs.Channels)
        req.BoundingBoxes <- str (r.TryGetResult TrainArgs.Bbox)
        req.TrainSize <- nullable (r.TryGetResult TrainArgs.Train_Size)
        req.CheckpointEvery <- nullable (r.TryGetResult TrainArgs.Checkpoint_Every)
        req.KeepCheckpoints <- nullable (r.TryGetResult TrainArgs.Keep_Checkpoints)
        req.Seed <- nullable (r.TryGetResult TrainArgs.Seed)
        req.Threads <- nullable (r.TryGetResult TrainArgs.Threads)
        req.Device <- str (r.TryGetResult TrainArgs.Device)
        req.DataDir <- str (r.TryGetResult TrainArgs.Data_Dir)
        req.Out <- str (r.TryGetResult TrainArgs.Out)
        req.Resume <- r.Contains TrainArgs.Resume
        req.SyncBatchNorm <- r.Contains TrainArgs.Sync_Batchnorm
        req.EvalEvery <- nullable (r.TryGetResult TrainArgs.Eval_Every)
        req.NoEval <- r.Contains TrainArgs.No_Eval
        req.EvalSamples <- nullable (r.TryGetResult TrainArgs.Eval_Samples)
        checkTrain id req

        if req.NoEval && req.EvalEvery.HasValue && req.EvalEvery.Value > 0 then
            fail "--no-eval turns the metrics off; it cannot be combined with --eval-every %d." req.EvalEvery.Value

        req

    /// The command line's checks of `train`'s values, applied to a request built from stored
    /// settings (a run's config.json on --resume): null when every value passes, else the message,
    /// naming each setting by <paramref name="name"/> (a flag → its stored name).
    let checkStoredTrain (req: TrainRequest) (name: Func<string, string>) : string | null =
        try
            checkTrain name.Invoke req
            null
        with BadValue message ->
            message

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
            | None -> "mnist"
            | Some d when d = "mnist" || d = "fashion-mnist" -> d
            | Some d -> fail "The classifier backbone exists for mnist and fashion-mnist only (got --dataset '%s')." d

        req.DataDir <- str (r.TryGetResult ClassifierArgs.Data_Dir)
        req.Threads <- threads (r.TryGetResult ClassifierArgs.Threads)
        req

    let private evaluateRequest (r: ParseResults<EvaluateArgs>) =
        let req = EvaluateRequest()
        req.Run <- str (r.TryGetResult EvaluateArgs.Run)
        req.Checkpoint <- str (r.TryGetResult EvaluateArgs.Checkpoint)
        req.Images <- str (r.TryGetResult EvaluateArgs.Images)
        req.Dataset <- str (r.TryGetResult EvaluateArgs.Dataset)

        req.Real <- r.Contains EvaluateArgs.Real

        req.Features <-
            match r.TryGetResult EvaluateArgs.Features with
            | None -> null
            | Some "resnet18" ->
                match req.Dataset with
                | NonNull d when d <> "emoji" ->
                    fail "--features resnet18 scores colour data (emoji); %s is scored with its own metrics." d
                | _ -> "resnet18"
            | Some f ->
                fail "--features: unknown features '%s'; the colour metrics use resnet18 (ImageNet ResNet-18)." f

        match req.Real, req.Images, req.Run, req.Checkpoint, req.Dataset with
        | true, Null, Null, Null, NonNull d when
            List.contains d [ "mnist"; "fashion-mnist"; "stacked-mnist"; "emoji"; "ring8"; "grid25" ]
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
        | NonNull _, Null, Null, NonNull d when d <> "mnist" && d <> "fashion-mnist" && d <> "emoji" ->
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

        req

    let private benchRequest (r: ParseResults<BenchArgs>) =
        let req = BenchRequest()
        req.Model <- r.TryGetResult BenchArgs.Model |> Option.defaultValue "all"
        req.Batch <- nullable (r.TryGetResult BenchArgs.Batch |> Option.map (between "--batch" 1 65536))

        req.Steps <- r.TryGetResult BenchArgs.Steps |> betweenOr "--steps" 1 100000 10

        req.Warmup <- r.TryGetResult BenchArgs.Warmup |> betweenOr "--warmup" 0 100000 3

        req.Threads <- threads (r.TryGetResult BenchArgs.Threads)

        req.ProfileShapes <- r.Contains BenchArgs.Profile_Shapes
        req.Profile <- r.Contains BenchArgs.Profile || req.ProfileShapes
        req.SyncBatchNorm <- r.Contains BenchArgs.Sync_Batchnorm
        req.Check <- r.Contains BenchArgs.Check
        req.Allreduce <- r.Contains BenchArgs.Allreduce
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
                typeof<TrainRequest>.Assembly.GetName().Version
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
