/// The one record of training settings (Run/TrainSettings.fs) and the typed data sets: the command
/// line's checks and messages, the merge "given over stored over model default", the settings that
/// decide the weights, and config.json (round trip, and files written by earlier versions).
module SettingsTests

open System
open Xunit
open Gan.Functional.Gan
open Gan.Functional.Run
open Gan.Functional.CSharp

let private given (keys: string list) (values: TrainSettings) = { Values = values; Keys = set keys }

let private ok (r: Result<'T, string>) =
    match r with
    | Ok v -> v
    | Error message -> failwithf "expected a value, got: %s" message

let private error (r: Result<'T, string>) =
    match r with
    | Ok _ -> failwith "expected an error"
    | Error message -> message

let private none = TrainSettings.noneGiven.Values

// ------------------------------------------------------------------------------ data sets

[<Theory>]
[<InlineData("mnist")>]
[<InlineData("fashion-mnist")>]
[<InlineData("stacked-mnist")>]
[<InlineData("emoji")>]
[<InlineData("ring8")>]
[<InlineData("grid25")>]
[<InlineData("images:/data/celeba")>]
let ``Every data set name parses to a case that writes the same name`` (name: string) =
    let d = ok (Dataset.parse (" " + name + " "))
    Assert.Equal(name, Dataset.name d)

[<Fact>]
let ``Data sets parse to their cases and say their facts`` () =
    Assert.Equal(Mnist, ok (Dataset.parse "mnist"))
    Assert.Equal(Dataset.Mixture "ring8", ok (Dataset.parse "ring8"))
    Assert.Equal(Images("/x/celeba", None), ok (Dataset.parse "images:/x/celeba"))
    Assert.Equal("images-celeba", Dataset.label (Images("/x/celeba/", None)))
    Assert.Equal(3, Dataset.defaultChannels StackedMnist)
    Assert.Equal(1, Dataset.defaultChannels FashionMnist)
    Assert.False(Dataset.hasMetrics (Images("/x", None)))
    Assert.Equal((26000, 26000), (Dataset.evalSamples StackedMnist, Dataset.trainingEvalSamples StackedMnist))
    Assert.Equal((10000, 5000), (Dataset.evalSamples Mnist, Dataset.trainingEvalSamples Mnist))
    Assert.Equal((2500, 1000), (Dataset.evalSamples (Dataset.Mixture "grid25"), Dataset.evalSamples Emoji))
    Assert.Equal(Some "mnist", Dataset.classifierBackbone StackedMnist)

[<Fact>]
let ``An unknown data set or an empty folder is the command line's message`` () =
    Assert.StartsWith("Unknown dataset 'imagenet'; known: mnist, fashion-mnist", error (Dataset.parse "imagenet"))

    Assert.Equal(
        "--dataset images:DIR needs a folder after the colon, e.g. images:/data/celeba.",
        error (Dataset.parse "images:")
    )

// ------------------------------------------------------------------------------ checks

[<Fact>]
let ``Given values are checked with the command line's messages naming the flag`` () =
    let check keys values =
        TrainSettings.checkGiven (given keys values)

    Assert.Equal(Some "--epochs must be between 1 and 1000000 (got 0).", check [ "epochs" ] { none with Epochs = 0 })

    Assert.Equal(
        Some "--lr must be a positive number (got -1).",
        check [ "learningRate" ] { none with LearningRate = -1.0 }
    )

    Assert.Equal(Some "--beta1 must be at least 0 and below 1 (got 1).", check [ "beta1" ] { none with Beta1 = 1.0 })

    Assert.Equal(
        Some "--channels must be 1 (grey) or 3 (colour) (got 2).",
        check [ "channels" ] { none with Channels = 2 }
    )

    Assert.Equal(
        Some "--lr-decay-epochs must list epochs in increasing order (got '20,10').",
        check [ "lrDecayEpochs" ] { none with LrDecayEpochs = [ 20; 10 ] }
    )

    Assert.Equal(
        Some "--image-size must be between 4 and 4096 (got 0).",
        check [ "imageSize" ] { none with ImageSize = 0 }
    )
    // values not given are not checked (the placeholders would fail)
    Assert.Equal(None, check [] none)
    Assert.Equal(None, check [ "epochs" ] { none with Epochs = 5 })

[<Fact>]
let ``Stored values are checked naming the setting and its flag`` () =
    let valid = TrainOptions.ForModel("mlp", 1).Settings
    Assert.Equal(None, TrainSettings.checkStored valid)

    Assert.Equal(
        Some "keepCheckpoints (--keep-checkpoints) must be between 1 and 1000 (got 0)",
        TrainSettings.checkStored { valid with KeepCheckpoints = 0 }
    )

    Assert.Equal(
        Some "sampleCount must be between 1 and 100,000 (got 0)",
        TrainSettings.checkStored { valid with SampleCount = 0 }
    )
    // a 2-D model's stored image size is 0: no images, nothing to check
    Assert.Equal(None, TrainSettings.checkStored { valid with ImageSize = 0 })

// ------------------------------------------------------------------------------ merge

let private cache = "/cache"

[<Fact>]
let ``A new run takes what is given over the model's defaults`` () =
    let s =
        ok (
            TrainSettings.resolve
                cache
                (given [ "model"; "batchSize"; "seed" ] {
                    none with
                        Model = "dcgan28"
                        BatchSize = 32
                        Seed = 9UL
                })
        )

    let d = Zoo.dcgan28.Defaults
    Assert.Equal((32, 9UL), (s.BatchSize, s.Seed))

    Assert.Equal(
        (d.Lr, d.QuickEpochs, d.CheckpointEvery, 1, 28, 100),
        (s.LearningRate, s.Epochs, s.CheckpointEvery, s.Channels, s.ImageSize, s.NoiseDim)
    )

    Assert.Equal(("/cache/mnist", "auto", "bce", 16), (s.DataDir, s.Device, s.Loss, s.SampleCount))

[<Fact>]
let ``No model on image data is the first run; on a mixture the 2-D model`` () =
    let first = ok (TrainSettings.resolve cache TrainSettings.noneGiven)

    Assert.Equal(
        (Zoo.firstRun.Model, Zoo.firstRun.Epochs, Zoo.firstRun.Lr, Zoo.firstRun.EmaDecay),
        (first.Model, first.Epochs, first.LearningRate, first.Ema)
    )

    let ring =
        ok (
            TrainSettings.resolve
                cache
                (given [ "dataset" ] {
                    none with
                        Dataset = Dataset.Mixture "ring8"
                })
        )

    Assert.Equal(("toy2d", 1, 0, 2500, ""), (ring.Model, ring.Channels, ring.ImageSize, ring.SampleCount, ring.DataDir))
    Assert.Equal(0.0, ring.Ema)

[<Fact>]
let ``Model facts that do not fit what is given are the command line's messages`` () =
    let resolve keys values =
        error (TrainSettings.resolve cache (given keys values))

    Assert.Equal(
        "--noise-dim 7 does not fit mlp, whose generator takes z of length 100 (fixed by SEEDS.md).",
        resolve [ "model"; "noiseDim" ] {
            none with
                Model = "mlp"
                NoiseDim = 7
        }
    )

    Assert.Equal(
        "stacked-mnist has 3 channels (one digit each); drop --channels 1 or pass --channels 3.",
        resolve [ "model"; "dataset"; "channels" ] {
            none with
                Model = "dcgan64"
                Dataset = StackedMnist
                Channels = 1
        }
    )

    Assert.StartsWith(
        "Unknown model 'nope'; the zoo has mlp, dcgan28",
        resolve [ "model" ] { none with Model = "nope" }
    )

    Assert.StartsWith("Unknown loss 'x'; known: minimax, bce", resolve [ "loss" ] { none with Loss = "x" })
    Assert.StartsWith("Unknown device 'cuda'", resolve [ "device" ] { none with Device = "cuda" })

    Assert.StartsWith(
        "ring8 is a mixture of 2-D points; mlp generates images.",
        resolve [ "model"; "dataset" ] {
            none with
                Model = "mlp"
                Dataset = Dataset.Mixture "ring8"
        }
    )

[<Fact>]
let ``dcgan64 takes its channels from the data set unless given`` () =
    let channels keys values =
        (ok (TrainSettings.resolve cache (given ("model" :: keys) { values with Model = "dcgan64" }))).Channels

    Assert.Equal(1, channels [] none)
    Assert.Equal(3, channels [ "dataset" ] { none with Dataset = Emoji })
    Assert.Equal(3, channels [ "channels" ] { none with Channels = 3 })
    Assert.True(TrainSettings.takesChannels "dcgan64")
    Assert.False(TrainSettings.takesChannels "mlp")

[<Fact>]
let ``A resumed run takes what is given over what is stored over the model's defaults`` () =
    let stored =
        ok (
            TrainSettings.resolve
                cache
                (given [ "model"; "epochs"; "batchSize"; "threads"; "dataDir" ] {
                    none with
                        Model = "mlp"
                        Epochs = 10
                        BatchSize = 32
                        Threads = 2
                        DataDir = "/data/mnist"
                })
        )

    let resumed =
        ok (TrainSettings.resume cache stored (given [ "epochs" ] { none with Epochs = 20 }))

    // given: epochs; stored: batch, threads, data dir (not the default cache folder); model defaults: the rest
    Assert.Equal((20, 32, 2, "/data/mnist"), (resumed.Epochs, resumed.BatchSize, resumed.Threads, resumed.DataDir))
    Assert.Equal((Zoo.mlp.Defaults.Lr, Zoo.mlp.Defaults.GLrScale), (resumed.LearningRate, resumed.GeneratorLrScale))
    Assert.Empty(TrainSettings.differences stored resumed)
    // the stored run's metrics switch is kept, and --eval-every turns them on again
    let quiet = { stored with Evaluate = false }
    Assert.False((ok (TrainSettings.resume cache quiet TrainSettings.noneGiven)).Evaluate)

    let scored =
        ok (TrainSettings.resume cache quiet (given [ "evalEvery"; "evaluate" ] { none with EvalEvery = 2 }))

    Assert.Equal((true, 2), (scored.Evaluate, scored.EvalEvery))

[<Fact>]
let ``Exactly the settings that decide the weights are compared`` () =
    Assert.Equal<string list>(
        [
            "model"
            "dataset"
            "channels"
            "imageSize"
            "noiseDim"
            "batchSize"
            "learningRate"
            "generatorLrScale"
            "beta1"
            "loss"
            "dSteps"
            "gpWeight"
            "r1Weight"
            "ema"
            "lrDecayEpochs"
            "bbox"
            "trainSize"
            "seed"
        ],
        TrainSettings.weightKeys
    )

    let a = TrainOptions.ForModel("mlp", 1).Settings

    let b = {
        a with
            Seed = 3UL
            LearningRate = 1e-3
            Epochs = 99
            Threads = 7
            KeepCheckpoints = 9
            DataDir = "/elsewhere"
            LrDecayEpochs = [ 10; 20 ]
    }

    let d = TrainSettings.differences a b

    Assert.Equal<(string * string * string * string) list>(
        [
            "learningRate", "--lr", "0.0002", "0.001"
            "lrDecayEpochs", "--lr-decay-epochs", "none", "10,20"
            "seed", "--seed", "0", "3"
        ],
        d |> List.map (fun x -> x.Key, x.Flag, x.First, x.Second)
    )

// ------------------------------------------------------------------------------ config.json

/// A config.json written by the version before this record (a 30-epoch emoji run).
let private written =
    """{
  "format": 1,
  "model": "dcgan64",
  "dataset": "emoji",
  "channels": 3,
  "imageSize": 64,
  "noiseDim": 100,
  "epochs": 30,
  "batchSize": 64,
  "learningRate": 0.0002,
  "generatorLrScale": 1,
  "beta1": 0.5,
  "loss": "bce",
  "dSteps": 1,
  "gpWeight": 0,
  "r1Weight": 0,
  "ema": 0,
  "lrDecayEpochs": [
    10,
    20,
    25
  ],
  "bbox": null,
  "trainSize": null,
  "checkpointEvery": 1,
  "keepCheckpoints": 30,
  "seed": 0,
  "threads": 0,
  "device": "auto",
  "dataDir": "/root/.cache/gan-functional/emoji",
  "sampleCount": 16,
  "evalEvery": 5,
  "evaluate": true,
  "syncBatchNorm": false,
  "evalSamples": 500
}
"""

[<Fact>]
let ``A config.json of the earlier version reads and writes back the same text`` () =
    let s = ok (TrainSettings.ofJson "config.json" written)

    Assert.Equal(
        ("dcgan64", Emoji, 3, [ 10; 20; 25 ], Some 500),
        (s.Model, s.Dataset, s.Channels, s.LrDecayEpochs, s.EvalSamples)
    )

    Assert.Equal(written.Replace("\r\n", "\n"), TrainSettings.toJson s)

[<Fact>]
let ``A config.json older still, without the metrics settings, reads with what they meant then`` () =
    let old =
        [ "evalEvery"; "evaluate"; "syncBatchNorm"; "evalSamples" ]
        |> List.fold
            (fun (json: string) key ->
                let node = Text.Json.Nodes.JsonNode.Parse(json) |> nonNull
                node.AsObject().Remove(key) |> ignore
                node.ToJsonString())
            written

    let s = ok (TrainSettings.ofJson "config.json" old)
    Assert.Equal((0, true, false, None), (s.EvalEvery, s.Evaluate, s.SyncBatchNorm, s.EvalSamples))

[<Fact>]
let ``Every setting survives config.json`` () =
    let s = {
        TrainOptions.ForModel("dcgan64", 3).Settings with
            Dataset = Images("/data/celeba", Some "/data/list_bbox_celeba.txt")
            Epochs = 7
            LearningRate = 1.5e-5
            Loss = "hinge"
            DSteps = 2
            GpWeight = 10.0
            R1Weight = 0.25
            Ema = 0.999
            LrDecayEpochs = [ 3; 5 ]
            TrainSize = Some 1000
            Seed = UInt64.MaxValue
            Threads = 2
            Device = "cpu"
            DataDir = "/cache/images"
            EvalEvery = 2
            Evaluate = false
            SyncBatchNorm = true
            EvalSamples = Some 100
    }

    Assert.Equal(s, ok (TrainSettings.ofJson "config.json" (TrainSettings.toJson s)))

[<Fact>]
let ``A damaged config.json names the setting or says it is not valid`` () =
    let refused (edit: string -> string) =
        error (TrainSettings.ofJson "run/config.json" (edit written))

    Assert.Contains(
        "is not a valid run configuration (seed: ",
        refused (fun j -> j.Replace("\"seed\": 0", "\"seed\": -1"))
    )

    Assert.Contains(
        "dataDir is null; it must be given",
        refused (fun j -> j.Replace("\"/root/.cache/gan-functional/emoji\"", "null"))
    )

    Assert.Contains(
        "epochs (--epochs) must be between 1 and 1000000 (got 0)",
        refused (fun j -> j.Replace("\"epochs\": 30", "\"epochs\": 0"))
    )

    Assert.Contains(
        "bbox (--bbox) crops the images of --dataset images:DIR; it does not apply to emoji",
        refused (fun j -> j.Replace("\"bbox\": null", "\"bbox\": \"b.txt\""))
    )

    Assert.Contains("(format 2)", refused (fun j -> j.Replace("\"format\": 1", "\"format\": 2")))
    Assert.StartsWith("run/config.json is not a valid run configuration", refused (fun _ -> "{"))

// ------------------------------------------------------------------------------ the step

[<Fact>]
let ``The generator is updated on every DSteps-th step`` () =
    let config = {
        Training.defaultConfig 0.5 with
            DSteps = 3
    }

    Assert.Equal<bool list>(
        [ false; false; true; false; false; true ],
        [ for s in 0..5 -> Training.updatesGenerator config s ]
    )
