// Trains the sample-quality classifier backbone (Gan.Functional.Eval.Classifier) with its fixed
// recipe and prints the test accuracy: the documented check of issue 6's accuracy bars
// (≥ 99.0% on MNIST, ≥ 90% on Fashion-MNIST), too long for the test suite.
//
//     dotnet build Gan.Functional -c Release
//     dotnet fsi scripts/train-classifier.fsx mnist            [DIR]
//     dotnet fsi scripts/train-classifier.fsx fashion-mnist    [DIR]
//
// DIR holds the four IDX files (plain or .gz): by default ~/.cache/gan-functional/mnist (the host
// fetches MNIST there on first use) and /usr/share/datasets/fashion-mnist (Debian's
// dataset-fashion-mnist). Exits with code 1 when the accuracy misses the bar.

#r "../Gan.Functional/bin/Release/net10.0/Gan.Functional.dll"

open System
open System.Diagnostics
open System.IO
open System.IO.Compression
open Gan.Functional
open Gan.Functional.Eval

// the engine's default backend: the fast CPU kernels (OpenBLAS/oneDNN or managed SIMD), one
// thread per core, as the host uses; say which
printfn "%s" (Gan.Functional.CSharp.Engine.ConfigureCpu 0)

let args = fsi.CommandLineArgs |> Array.skip 1

let dataset =
    match args with
    | [||] -> "mnist"
    | a -> a.[0]

let bar, defaultDir =
    match dataset with
    | "mnist" ->
        0.99,
        Path.Combine(Environment.GetFolderPath Environment.SpecialFolder.UserProfile, ".cache/gan-functional/mnist")
    | "fashion-mnist" -> 0.90, "/usr/share/datasets/fashion-mnist"
    | other ->
        eprintfn "train-classifier.fsx: unknown dataset '%s'; expected mnist or fashion-mnist" other
        exit 2

let dir = if args.Length > 1 then args.[1] else defaultDir

/// The bytes of an IDX file, plain or gzipped, with the magic number checked.
let readIdx (name: string) (dims: int) =
    let plain = Path.Combine(dir, name)

    let bytes =
        if File.Exists plain then
            File.ReadAllBytes plain
        elif File.Exists(plain + ".gz") then
            use gz = new GZipStream(File.OpenRead(plain + ".gz"), CompressionMode.Decompress)
            use ms = new MemoryStream()
            gz.CopyTo ms
            ms.ToArray()
        else
            eprintfn
                "train-classifier.fsx: %s(.gz) not found in %s (give the IDX folder as the second argument)"
                name
                dir

            exit 2

    let be (o: int) =
        (int bytes.[o] <<< 24)
        ||| (int bytes.[o + 1] <<< 16)
        ||| (int bytes.[o + 2] <<< 8)
        ||| int bytes.[o + 3]

    if be 0 <> 0x0800 + dims then
        eprintfn "train-classifier.fsx: %s is not an IDX file of %d dimensions (magic %08x)" name dims (be 0)
        exit 2

    let shape = Array.init dims (fun i -> be (4 + 4 * i))
    shape, bytes.[4 + 4 * dims ..]

/// Images [N, 1, 28, 28] scaled to [0, 1] and their labels.
let load (prefix: string) =
    let shape, pixels = readIdx (prefix + "-images-idx3-ubyte") 3
    let _, labels = readIdx (prefix + "-labels-idx1-ubyte") 1
    let n = shape.[0]

    Tensor.ofArray [| n; 1; shape.[1]; shape.[2] |] (pixels |> Array.map (fun b -> float32 b / 255.0f)),
    labels |> Array.map int

let trainX, trainY = load "train"
let testX, testY = load "t10k"
let recipe = Classifier.recipeFor dataset

printfn "%s: %d training and %d test images from %s; recipe %A" dataset trainY.Length testY.Length dir recipe

let clock = Stopwatch.StartNew()
let mutable state = Classifier.init (Random.key recipe.Seed)

for epoch in 0 .. recipe.Epochs - 1 do
    let s, loss = Classifier.trainEpoch recipe epoch trainX trainY state
    state <- s

    printfn
        "epoch %d: lr %g, mean loss %.4f, test accuracy %.2f%% (%.0f s)"
        epoch
        (Classifier.learningRate recipe epoch)
        loss
        (100.0 * Classifier.accuracy state.Vars testX testY)
        clock.Elapsed.TotalSeconds

let acc = Classifier.accuracy state.Vars testX testY

printfn
    "%s test accuracy: %.2f%% (bar %.1f%%) after %d epochs in %.0f s"
    dataset
    (100.0 * acc)
    (100.0 * bar)
    recipe.Epochs
    clock.Elapsed.TotalSeconds

if acc < bar then
    eprintfn "train-classifier.fsx: %s accuracy %.2f%% misses the bar of %.1f%%" dataset (100.0 * acc) (100.0 * bar)
    exit 1
