// A tour of Gan.Functional in F# Interactive: compose a small generator from layers, run a
// batch through it, and differentiate a loss with respect to every parameter.
//
//     dotnet build Gan.Functional -c Release
//     dotnet fsi scripts/compose.fsx
//
// Each step checks its result; any mismatch stops the script with an exception (exit code 1),
// so CI runs this file as a test.

// #r paths are resolved relative to this script's folder (__SOURCE_DIRECTORY__), not the current
// directory, so the script runs from anywhere in the repository.
// The library's NuGet dependencies are copied beside the DLL (CopyLocalLockFileAssemblies in
// Gan.Functional.fsproj), where fsi finds them.
#r "../Gan.Functional/bin/Release/net10.0/Gan.Functional.dll"

open System
open System.IO
open Gan.Functional
open Gan.Functional.Nn

/// Stops the script when a check fails.
let check (what: string) (ok: bool) =
    if not ok then
        failwithf "compose.fsx: check failed: %s" what

let showShape (s: int[]) = "[" + String.Join("; ", s) + "]"

let checkShape (what: string) (expected: int[]) (t: Tensor) =
    if Tensor.shape t <> expected then
        failwithf "compose.fsx: %s has shape %s, expected %s" what (showShape (Tensor.shape t)) (showShape expected)

// ---------------------------------------------------------------------------------------------
// 0. The library we run is the one just built next to this script.
// ---------------------------------------------------------------------------------------------

let expectedDll =
    Path.GetFullPath(Path.Combine(__SOURCE_DIRECTORY__, "../Gan.Functional/bin/Release/net10.0/Gan.Functional.dll"))

let loadedDll = Path.GetFullPath(typeof<Layer>.Assembly.Location)
printfn "library: %s" (Path.GetRelativePath(Path.Combine(__SOURCE_DIRECTORY__, ".."), loadedDll))
check (sprintf "loaded %s, not %s" loadedDll expectedDll) (loadedDll = expectedDll)

// ---------------------------------------------------------------------------------------------
// 1. A generator is a Layer: a description plus two pure functions, Init and Apply.
//    Layer.sequential chains layers and names child i's variables "i.…", as torch.nn.Sequential.
// ---------------------------------------------------------------------------------------------

let noiseDim = 16
let batch = 4

let generator =
    Layer.sequential [
        Layers.linear noiseDim (8 * 7 * 7) // 0: z [N, 16] → [N, 392]
        Normalization.batchNorm (8 * 7 * 7) // 1: BatchNorm1d over the 392 features
        Layers.relu // 2
        Layers.unflatten [| 8; 7; 7 |] // 3: [N, 392] → [N, 8, 7, 7]
        Layers.convTranspose2d 8 1 4 2 (Pad 1) // 4: 7×7 → 14×14, one channel
        Layers.tanh // 5: pixels in (−1, 1)
    ]

printfn "\ngenerator: %s" generator.Describe

// ---------------------------------------------------------------------------------------------
// 2. Init draws the variables from a key. Keys are split, never reused: one for the weights,
//    one for the noise, one for the forward pass (stochastic layers fold their own from it),
//    one for the final sample.
// ---------------------------------------------------------------------------------------------

let initKey, noiseKey, applyKey, sampleKey =
    match Random.splitN 4 (Random.key 42UL) with
    | [| a; b; c; d |] -> a, b, c, d
    | _ -> failwith "unreachable"

let vars = generator.Init initKey

// Parameters are trained; state (BatchNorm's running statistics) is carried along.
printfn "\nparameters:"

for KeyValue(name, t) in vars.Params do
    printfn "  %-10s %s" name (showShape (Tensor.shape t))

printfn "state:"

for KeyValue(name, t) in vars.State do
    printfn "  %-16s %s" name (showShape (Tensor.shape t))

// PyTorch's state_dict names and layouts: Linear weight [out, in], ConvTranspose2d weight
// [in, out, k, k].
let expectedParams =
    Map.ofList [
        "0.weight", [| 392; 16 |]
        "0.bias", [| 392 |]
        "1.weight", [| 392 |]
        "1.bias", [| 392 |]
        "4.weight", [| 8; 1; 4; 4 |]
        "4.bias", [| 1 |]
    ]

check "parameter names" (Set.ofSeq vars.Params.Keys = Set.ofSeq expectedParams.Keys)

for KeyValue(name, shape) in expectedParams do
    checkShape name shape vars.Params.[name]

check "state names" (Set.ofSeq vars.State.Keys = set [ "1.running_mean"; "1.running_var" ])

let count = Layer.parameterCount vars
printfn "parameter count: %d" count
// (16·392 + 392) + 2·392 + (8·1·4·4 + 1)
check (sprintf "parameter count %d, expected 7577" count) (count = 7577)

// ---------------------------------------------------------------------------------------------
// 3. Apply runs a batch and returns (output, new state): train mode normalises with the batch
//    statistics and reports the updated running statistics instead of mutating anything.
// ---------------------------------------------------------------------------------------------

let z = Tensor.randn noiseKey [| batch; noiseDim |]

let ctx = {
    Mode = Train
    Key = applyKey
    Shard = None
}

let images, newState = generator.Apply vars ctx z

printfn "\nz: %s → images: %s" (showShape (Tensor.shape z)) (showShape (Tensor.shape images))
checkShape "G(z)" [| batch; 1; 14; 14 |] images

let pixels = Tensor.toArray images
printfn "pixel range: [%.4f, %.4f]" (Array.min pixels) (Array.max pixels)
check "tanh output inside (−1, 1)" (pixels |> Array.forall (fun v -> v > -1.0f && v < 1.0f))

check "new state names" (Set.ofSeq newState.Keys = Set.ofSeq vars.State.Keys)

check
    "running_mean moved towards the batch mean"
    (Tensor.toArray newState.["1.running_mean"]
     <> Tensor.toArray vars.State.["1.running_mean"])

// ---------------------------------------------------------------------------------------------
// 4. Differentiate a simple loss, the mean squared pixel, with respect to every parameter at once.
//    valueAndGrads takes a function of the parameter map and returns (loss, gradient map).
// ---------------------------------------------------------------------------------------------

let loss (ps: Map<string, Tensor>) =
    let y, _ = generator.Apply { vars with Params = ps } ctx z
    Tensor.mean (Tensor.square y)

let lossValue, grads = Autodiff.valueAndGrads loss vars.Params
let l0 = Tensor.item lossValue
printfn "\nloss: %.6f" l0

// The same key gives the same forward pass, so the loss matches the batch from step 3.
let direct = Tensor.item (Tensor.mean (Tensor.square images))
check (sprintf "loss %g differs from the direct value %g" l0 direct) (abs (l0 - direct) < 1e-6)
check "loss is finite and positive" (Double.IsFinite l0 && l0 > 0.0)

// One lesson hides in the norms: the Linear bias right before BatchNorm gets a zero gradient
// (up to rounding), because BatchNorm subtracts any per-feature shift again. That is why DCGAN
// builds such layers without a bias.
printfn "gradients:"

for KeyValue(name, g) in grads do
    let norm = sqrt (Tensor.item (Tensor.sum (Tensor.square g)))
    printfn "  %-10s %-14s ‖g‖ = %.3g" name (showShape (Tensor.shape g)) norm
    checkShape ("gradient of " + name) (Tensor.shape vars.Params.[name]) g
    check ("finite gradient of " + name) (Tensor.toArray g |> Array.forall Single.IsFinite)

    if name = "0.bias" then
        check (sprintf "the bias before BatchNorm has gradient norm %g, expected ~0" norm) (norm < 1e-5)
    else
        check (sprintf "the gradient of %s is zero" name) (norm > 1e-5)

check "one gradient per parameter" (Set.ofSeq grads.Keys = Set.ofSeq vars.Params.Keys)

// ---------------------------------------------------------------------------------------------
// 5. A plain gradient-descent step, p ← p − 0.1·∇p, must lower the loss.
// ---------------------------------------------------------------------------------------------

let stepped = vars.Params |> Map.map (fun name p -> p - grads.[name] * 0.1)
let l1 = Tensor.item (loss stepped)
printfn "\nloss after one step: %.6f (was %.6f)" l1 l0
check (sprintf "the step did not lower the loss (%g → %g)" l0 l1) (l1 < l0)

// ---------------------------------------------------------------------------------------------
// 6. Layer.run folds the new state into the variables; eval mode then uses the running
//    statistics, so even a single example can be generated.
// ---------------------------------------------------------------------------------------------

let _, trained = Layer.run generator { vars with Params = stepped } ctx z

let one, _ =
    generator.Apply
        trained
        {
            Mode = Eval
            Key = applyKey
            Shard = None
        }
        (Tensor.randn sampleKey [| 1; noiseDim |])

printfn "eval-mode sample: %s" (showShape (Tensor.shape one))
checkShape "eval-mode G(z)" [| 1; 1; 14; 14 |] one

printfn "\ncompose.fsx: all checks passed"
