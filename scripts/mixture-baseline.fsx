// Trains a zoo model for 2-D points (toy2d or toy2d-mbd) on a Gaussian mixture (ring8 or grid25)
// and prints VEEGAN/PacGAN's mode metrics of its samples: the baselines of docs/quality.md.
//
//     dotnet build Gan.Functional -c Release
//     dotnet fsi scripts/mixture-baseline.fsx MODEL MIXTURE STEPS [SEED]
//     dotnet fsi scripts/mixture-baseline.fsx toy2d ring8 10000 0
//
// Every step draws a fresh batch of the model's default size from the mixture (an endless
// dataset, as in PacGAN's experiments) and takes one Training.step with the model's defaults
// (Adam β1 0.5, lr 1e-3 for both networks, non-saturating BCE). Every STEPS/5 steps, and at the
// end, 2,500 samples of G (eval mode, fresh noise) are scored: modes covered (≥ 1 and ≥ 20
// high-quality samples), the share of high-quality samples (within 3σ of the nearest mode) and
// the KL of the mode histogram to uniform. All randomness derives from SEED.

#r "../Gan.Functional/bin/Release/net10.0/Gan.Functional.dll"

open System.Diagnostics
open Gan.Functional
open Gan.Functional.Gan
open Gan.Functional.Eval

// the engine's default backend: the fast CPU kernels (OpenBLAS/oneDNN or managed SIMD), one
// thread per core, as the host uses; say which
printfn "%s" (Gan.Functional.CSharp.Engine.ConfigureCpu 0)

let args = fsi.CommandLineArgs |> Array.skip 1

if args.Length < 3 then
    eprintfn "usage: dotnet fsi scripts/mixture-baseline.fsx toy2d|toy2d-mbd ring8|grid25 STEPS [SEED]"
    exit 2

let model = Zoo.byName args.[0] 1
let mixture = Mixtures.byName args.[1]
let steps = int args.[2]
let seed = if args.Length > 3 then uint64 args.[3] else 0UL

if model.ImageShape <> [| 2 |] then
    eprintfn "mixture-baseline.fsx: %s generates images, not 2-D points; use toy2d or toy2d-mbd" model.Name
    exit 2

let config = Training.defaultConfig model.Defaults.Beta1
let root = Random.key seed
let keys = Random.splitN 3 root
let kInit, kData, kEval = keys.[0], keys.[1], keys.[2]
let lr = model.Defaults.Lr
let mutable state = Training.init model config kInit
let clock = Stopwatch.StartNew()

printfn
    "%s on %s: %d steps of batch %d, lr %g (G ×%g), seed %d"
    model.Name
    mixture.Name
    steps
    model.Defaults.BatchSize
    lr
    model.Defaults.GLrScale
    seed

let evaluate (step: int) =
    let z = Training.noise model (Random.foldIn kEval step) Mixtures.defaultSamples
    let points = Metrics.rows (Sampling.generate model state.G z)
    let m = Mixtures.modeMetrics mixture points

    printfn
        "step %6d: modes %2d/%d (>= %d samples: %2d), high quality %5.1f%%, KL %.3f  (%.0f s)"
        step
        m.ModesCovered
        mixture.Means.Length
        m.Threshold
        m.ModesCoveredAtThreshold
        (100.0 * m.HighQualityShare)
        m.KlToUniform
        clock.Elapsed.TotalSeconds

for t in 1..steps do
    let real = Mixtures.sample mixture (Random.foldIn kData t) model.Defaults.BatchSize

    let s, _ = Training.step model config (lr * model.Defaults.GLrScale) lr real state

    state <- s

    if t % max 1 (steps / 5) = 0 && t <> steps then
        evaluate t

evaluate steps
