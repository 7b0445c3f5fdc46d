/// The GAN training step on a tiny 2-D problem (a GanModel built here from small Linear layers):
/// D learns, steps are deterministic given the key, DSteps alternates the generator updates, the
/// EMA follows its formula, penalties run; checkpoints round-trip; latent interpolation keeps
/// its endpoints (and norms, for slerp); the C# facade trains, exports and restores.
module TrainingTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan
open Gan.Functional.CSharp

// ------------------------------------------------------------------------------ a toy problem

/// A GAN on points in the plane: z (2) → G → x (2); real data N((2, 2), 0.1²·I). ImageShape
/// [2] makes a real batch [N, 2], as Training.step expects [N; ImageShape…].
let private toyWith (gLayers: Layer list) (dLayers: Layer list) = {
    Name = "toy"
    Summary = "2-D toy GAN"
    NoiseDim = 2
    ImageShape = [| 2 |]
    Range = MinusOneToOne
    Generator = Layer.sequential gLayers
    Discriminator = Layer.sequential dLayers
    Defaults = Zoo.mlp.Defaults
}

let private toy =
    toyWith [ Layers.linear 2 8; Layers.tanh; Layers.linear 8 2 ] [
        Layers.linear 2 16
        Layers.tanh
        Layers.linear 16 1
    ]

/// The same with BatchNorm in both networks, so the state carries running statistics.
let private toyBn =
    toyWith [ Layers.linear 2 8; Normalization.batchNorm 8; Layers.relu; Layers.linear 8 2 ] [
        Layers.linear 2 8
        Normalization.batchNorm 8
        Layers.leakyRelu 0.2
        Layers.linear 8 1
    ]

let private realBatch (seed: uint64) (n: int) =
    Tensor.randn (Random.key seed) [| n; 2 |] * 0.1 + 2.0

let private config = {
    Training.defaultConfig 0.5 with
        DSteps = 1
}

/// D's accuracy in eval mode on 256 fresh real points (logit > 0) and 256 fakes (logit < 0).
let private accuracy (model: GanModel) (state: TrainState) =
    let real = realBatch 12345UL 256

    let fake =
        Sampling.generate model state.G (Training.noise model (Random.key 54321UL) 256)

    let ctx = {
        Mode = Eval
        Key = Random.key 0UL
        Shard = None
    }

    let r, _ = model.Discriminator.Apply state.D ctx real
    let f, _ = model.Discriminator.Apply state.D ctx fake
    // a logit of exactly 0 is a coin toss: half right
    let score (correct: float -> bool) (v: float) =
        if v = 0.0 then 0.5
        elif correct v then 1.0
        else 0.0

    (Array.sumBy (score (fun v -> v > 0.0)) (Tensor.toArray64 r)
     + Array.sumBy (score (fun v -> v < 0.0)) (Tensor.toArray64 f))
    / 512.0

/// `steps` training steps on real batches drawn from seeds 1, 2, …; returns the states and metrics.
let private run (model: GanModel) (cfg: TrainConfig) (gLr: float) (dLr: float) (steps: int) (state: TrainState) =
    let mutable s = state

    let metrics = [
        for i in 1..steps do
            let next, m = Training.step model cfg gLr dLr (realBatch (uint64 i) 16) s
            s <- next
            yield m
    ]

    s, metrics

let private values (state: TrainState) =
    Checkpoint.toNamed state
    |> List.map (fun (n, t) -> n, Tensor.shape t, Tensor.toArray64 t)

// ------------------------------------------------------------------------------ Training.step

[<Fact>]
let ``a few D-heavy GAN steps on a 2-D toy problem raise D's accuracy`` () =
    let cfg = { config with DSteps = 5 }

    // D starts at chance: its last layer is zeroed, so every logit is 0 (accuracy exactly ½)
    let s0 =
        let s = Training.init toy cfg (Random.key 7UL)

        let ps =
            s.D.Params
            |> Map.map (fun k v -> if k.StartsWith "2." then Tensor.zerosLike v else v)

        { s with D = { s.D with Params = ps } }

    let before = accuracy toy s0
    Assert.Equal(0.5, before)
    let s1, metrics = run toy cfg 1e-3 0.01 50 s0
    let after = accuracy toy s1
    Assert.True(after >= 0.9 && after > before, sprintf "accuracy %g → %g" before after)
    // and the D loss fell (BCE of a chance-level D is 2 ln 2 ≈ 1.386)
    let first, last = (List.head metrics).DLoss, (List.last metrics).DLoss
    Assert.True(last < first && last < 1.0, sprintf "D loss %g → %g" first last)
    Assert.True((List.last metrics).RealScore > (List.last metrics).FakeScore)

[<Fact>]
let ``Training.step is deterministic: the same key gives the same metrics and weights`` () =
    let go seed =
        run toyBn config 1e-3 1e-3 3 (Training.init toyBn config (Random.key seed))

    let s1, m1 = go 1UL
    let s2, m2 = go 1UL
    let s3, m3 = go 2UL
    Assert.Equal<StepMetrics list>(m1, m2)
    Assert.True((values s1 = values s2), "same weights")
    Assert.NotEqual<StepMetrics list>(m1, m3)
    Assert.False((values s1 = values s3), "another key gives other weights")
    Assert.Equal(3, s1.Step)

[<Fact>]
let ``Training.stepDonated gives the weights of Training.step, which leaves its input state unchanged`` () =
    let s0 = Training.init toyBn config (Random.key 3UL)
    let before = values s0
    let plain, pureMetrics = run toyBn config 1e-3 1e-3 3 s0
    Assert.True((values s0 = before), "Training.step changed its input state")

    let start = Training.init toyBn config (Random.key 3UL)
    let buffers = start.DOpt.Moment2 |> Map.map (fun _ t -> Tensor.toRaw t)
    let mutable s = start

    let donatedMetrics = [
        for i in 1..3 do
            let next, m =
                Training.stepDonated toyBn config 1e-3 1e-3 (realBatch (uint64 i) 16) s

            s <- next
            yield m
    ]

    Assert.Equal<StepMetrics list>(pureMetrics, donatedMetrics)
    Assert.True((values plain = values s), "donated steps gave other weights or moments")
    // the moments were written over the first state's buffers, not copied
    for KeyValue(name, raw) in buffers do
        Assert.True(RawTensor.sameBuffer raw (Tensor.toRaw s.DOpt.Moment2.[name]), name)

[<Theory>]
[<InlineData(false)>]
[<InlineData(true)>]
let ``donated steps write the parameters in place and still give the pure step's weights, EMA included``
    (simultaneous: bool)
    =
    // EMA starts as a copy of G's weights (in-place steps must not move it); under
    // SimultaneousUpdates G's pass reads D from before its update, so D is not stepped in place
    let cfg = {
        config with
            EmaDecay = 0.9
            SimultaneousUpdates = simultaneous
    }

    let plain, pureMetrics =
        run toyBn cfg 1e-2 1e-2 3 (Training.init toyBn cfg (Random.key 6UL))

    let start = Training.init toyBn cfg (Random.key 6UL)
    let gBuffers = start.G.Params |> Map.map (fun _ t -> Tensor.toRaw t)
    let dBuffers = start.D.Params |> Map.map (fun _ t -> Tensor.toRaw t)
    let mutable s = start

    let donatedMetrics = [
        for i in 1..3 do
            let next, m = Training.stepDonated toyBn cfg 1e-2 1e-2 (realBatch (uint64 i) 16) s
            s <- next
            yield m
    ]

    Assert.Equal<StepMetrics list>(pureMetrics, donatedMetrics)
    Assert.True((values plain = values s), "donated steps gave other weights, moments or EMA")

    for KeyValue(name, raw) in gBuffers do
        Assert.True(RawTensor.sameBuffer raw (Tensor.toRaw s.G.Params.[name]), name)

    for KeyValue(name, raw) in dBuffers do
        Assert.Equal(not simultaneous, RawTensor.sameBuffer raw (Tensor.toRaw s.D.Params.[name]))

[<Fact>]
let ``a donated step with SGD momentum gives the weights of the pure step`` () =
    // at t = 1 SGD's momentum buffer is the gradient itself: a donated step must keep it
    let sgd = Sgd(0.9, false, 0.0)

    let cfg = {
        config with
            GOptimizer = sgd
            DOptimizer = sgd
    }

    let plain, pureMetrics =
        run toyBn cfg 1e-2 1e-2 3 (Training.init toyBn cfg (Random.key 4UL))

    let mutable s = Training.init toyBn cfg (Random.key 4UL)

    let donatedMetrics = [
        for i in 1..3 do
            let next, m = Training.stepDonated toyBn cfg 1e-2 1e-2 (realBatch (uint64 i) 16) s
            s <- next
            yield m
    ]

    Assert.Equal<StepMetrics list>(pureMetrics, donatedMetrics)
    Assert.True((values plain = values s), "donated SGD steps gave other weights or momenta")

[<Fact>]
let ``with DSteps = 2 the generator is updated only on every second step`` () =
    let cfg = { config with DSteps = 2 }
    let s0 = Training.init toyBn cfg (Random.key 3UL)
    let mutable s = s0

    for i in 1..4 do
        let next, m = Training.step toyBn cfg 1e-2 1e-2 (realBatch (uint64 i) 8) s
        let gUpdated = i % 2 = 0
        Assert.Equal(not gUpdated, Double.IsNaN m.GLoss)
        Assert.True(Double.IsFinite m.DLoss)

        let same =
            next.G.Params
            |> Map.forall (fun k v -> Tensor.toArray64 v = Tensor.toArray64 s.G.Params.[k])

        Assert.Equal(not gUpdated, same)

        Assert.False(
            next.D.Params
            |> Map.forall (fun k v -> Tensor.toArray64 v = Tensor.toArray64 s.D.Params.[k]),
            "D moves every step"
        )
        // G's BatchNorm statistics move with every train-mode forward pass, updated or not
        Assert.NotEqual<float[]>(
            Tensor.toArray64 s.G.State.["1.running_mean"],
            Tensor.toArray64 next.G.State.["1.running_mean"]
        )

        s <- next

    Assert.Equal(2, s.GOpt.Step)
    Assert.Equal(4, s.DOpt.Step)
    Assert.Equal(4, s.Step)

[<Fact>]
let ``the generator's EMA is kept when EmaDecay > 0 and follows decay·ema + (1 - decay)·G`` () =
    let cfg = { config with EmaDecay = 0.9 }
    let s0 = Training.init toy cfg (Random.key 4UL)
    Assert.Equal<string list>(s0.G.Params |> Map.keys |> List.ofSeq, s0.GEma |> Map.keys |> List.ofSeq)
    let s1, _ = run toy cfg 1e-2 1e-2 1 s0
    let s2, _ = run toy cfg 1e-2 1e-2 1 s1

    for KeyValue(name, e) in s2.GEma do
        let expected =
            Array.map2
                (fun a b -> 0.9 * a + 0.1 * b)
                (Tensor.toArray64 s1.GEma.[name])
                (Tensor.toArray64 s2.G.Params.[name])

        Array.iter2
            (fun x y -> Assert.True(abs (x - y) < 1e-6, sprintf "%s: %g vs %g" name x y))
            expected
            (Tensor.toArray64 e)

    Assert.False((Tensor.toArray64 s2.GEma.["0.weight"] = Tensor.toArray64 s2.G.Params.["0.weight"]), "EMA lags G")
    // no EMA when the decay is 0
    let s3, _ = run toy config 1e-2 1e-2 2 (Training.init toy config (Random.key 4UL))
    Assert.True(s3.GEma.IsEmpty)

[<Fact>]
let ``WGAN-GP and R1 configurations run and give finite losses that include the penalty`` () =
    let wgan = {
        config with
            Loss = Wasserstein
            GpWeight = 10.0
    }

    for cfg in
        [
            wgan
            { config with R1Weight = 5.0 }
            {
                config with
                    Loss = Hinge
                    R1Weight = 1.0
            }
        ] do
        let s0 = Training.init toyBn cfg (Random.key 5UL)
        let s, metrics = run toyBn cfg 1e-3 1e-3 3 s0

        for m in metrics do
            Assert.True(Double.IsFinite m.DLoss && Double.IsFinite m.GLoss, sprintf "%A" m)

        // from the same state and key, the penalised D loss exceeds the plain one by the
        // (non-negative, here positive) penalty term
        let plain = {
            cfg with
                GpWeight = 0.0
                R1Weight = 0.0
        }

        let _, withPenalty = Training.step toyBn cfg 1e-3 1e-3 (realBatch 9UL 16) s
        let _, without = Training.step toyBn plain 1e-3 1e-3 (realBatch 9UL 16) s
        Assert.True(withPenalty.DLoss > without.DLoss, sprintf "%g vs %g" withPenalty.DLoss without.DLoss)
        Assert.Equal(without.RealScore, withPenalty.RealScore)

// ------------------------------------------------------------------------------ checkpoints

let private trained =
    lazy
        (let cfg = { config with EmaDecay = 0.99 }
         let s, _ = run toyBn cfg 1e-3 1e-3 3 (Training.init toyBn cfg (Random.key 6UL))
         cfg, s)

let private mismatch (f: unit -> 'a) =
    try
        f () |> ignore
        failwith "expected a CheckpointMismatchException"
    with Checkpoint.CheckpointMismatchException msg ->
        msg

[<Fact>]
let ``Checkpoint.toNamed uses PyTorch-like names and ofNamed round-trips a state exactly`` () =
    let cfg, s = trained.Value
    let named = Checkpoint.toNamed s
    let names = named |> List.map fst |> Set.ofList

    for n in
        [
            "generator.0.weight"
            "generator.1.running_mean"
            "discriminator.1.running_var"
            "discriminator.3.bias"
            "optim.generator.exp_avg.0.weight"
            "optim.discriminator.exp_avg_sq.3.weight"
            "ema.generator.3.bias"
            "optim.generator.step"
            "train.step"
            "train.key"
        ] do
        Assert.True(names.Contains n, sprintf "'%s' missing" n)

    let template = Training.init toyBn cfg (Random.key 99UL)
    let back = Checkpoint.ofNamed template named
    Assert.True((values back = values s), "every tensor equal")
    Assert.Equal(s.Step, back.Step)
    Assert.Equal(s.Key, back.Key)
    Assert.Equal(s.GOpt.Step, back.GOpt.Step)
    Assert.Equal(s.DOpt.Step, back.DOpt.Step)
    // and the restored state continues exactly as the original
    let _, m1 = Training.step toyBn cfg 1e-3 1e-3 (realBatch 10UL 16) s
    let _, m2 = Training.step toyBn cfg 1e-3 1e-3 (realBatch 10UL 16) back
    Assert.Equal(m1, m2)

[<Fact>]
let ``Checkpoint.ofNamed rejects a wrong shape or a missing name with CheckpointMismatchException`` () =
    let cfg, s = trained.Value
    let named = Checkpoint.toNamed s
    let template = Training.init toyBn cfg (Random.key 99UL)

    let wrong =
        named
        |> List.map (fun (n, t) ->
            if n = "generator.0.weight" then
                n, Tensor.zeros [| 3; 3 |]
            else
                n, t)

    let msg = mismatch (fun () -> Checkpoint.ofNamed template wrong)
    Assert.Contains("generator.0.weight", msg)

    let missing =
        named |> List.filter (fun (n, _) -> n <> "discriminator.1.running_var")

    let msg2 = mismatch (fun () -> Checkpoint.ofNamed template missing)
    Assert.Contains("discriminator.1.running_var", msg2)
    // a state of another model does not fit
    let other = Training.init toy cfg (Random.key 1UL)
    mismatch (fun () -> Checkpoint.ofNamed other named) |> ignore

// ------------------------------------------------------------------------------ sampling

let private norm (xs: float[]) = sqrt (Array.sumBy (fun v -> v * v) xs)

let private rows (t: Tensor) =
    let s = Tensor.shape t
    let a = Tensor.toArray64 t
    Array.init s.[0] (fun i -> a.[i * s.[1] .. (i + 1) * s.[1] - 1])

let private closeArr (tol: float) (what: string) (e: float[]) (g: float[]) =
    Array.iteri2
        (fun i x y ->
            if not (abs (x - y) <= tol * (1.0 + abs x)) then
                failwithf "%s[%d]: %g vs %g" what i x y)
        e
        g

[<Fact>]
let ``lerp and slerp start at z0 and end at z1, and slerp keeps the norm of equal-norm endpoints`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! d = Gen.choose (2, 64)
                let! steps = Gen.choose (2, 9)
                let! seed = Gen.choose (0, 100000)
                return d, steps, seed
            }
        ))
        (fun (d, steps, seed) ->
            let k = Random.splitN 2 (Random.key (uint64 seed))
            let z0 = Tensor.randn k.[0] [| d |]
            let z1raw = Tensor.randn k.[1] [| d |]
            // z1 rescaled to ‖z0‖
            let z1 = z1raw * (norm (Tensor.toArray64 z0) / norm (Tensor.toArray64 z1raw))
            let a0, a1 = Tensor.toArray64 z0, Tensor.toArray64 z1

            for name, path in [ "lerp", Sampling.lerp z0 z1 steps; "slerp", Sampling.slerp z0 z1 steps ] do
                if Tensor.shape path <> [| steps; d |] then
                    failwithf "%s shape %A" name (Tensor.shape path)

                let r = rows path
                closeArr 1e-6 (name + " start") a0 r.[0]
                closeArr 1e-6 (name + " end") a1 r.[steps - 1]

            let n0 = norm a0

            for i, r in Array.indexed (rows (Sampling.slerp z0 z1 steps)) do
                if abs (norm r - n0) > 1e-5 * n0 then
                    failwithf "slerp row %d has norm %g, endpoints %g" i (norm r) n0

            // lerp's points are evenly spaced on the segment
            let mid = rows (Sampling.lerp z0 z1 3)
            closeArr 1e-6 "lerp midpoint" (Array.map2 (fun x y -> (x + y) / 2.0) a0 a1) mid.[1])
    |> Prop.check "interpolation endpoints and norms"

[<Fact>]
let ``slerp of parallel vectors falls back to lerp, and arithmetic is mean(a) - mean(b) + mean(c)`` () =
    let z0 = Tensor.ofArray [| 3 |] [| 1.0f; 2.0f; 2.0f |]
    let z1 = z0 * 2.0
    Assert.Equal<float[]>(Tensor.toArray64 (Sampling.lerp z0 z1 4), Tensor.toArray64 (Sampling.slerp z0 z1 4))
    let a = Tensor.ofArray [| 2; 2 |] [| 1.0f; 3.0f; 3.0f; 5.0f |]
    let b = Tensor.ofArray [| 1; 2 |] [| 1.0f; 1.0f |]
    let c = Tensor.ofArray [| 2; 2 |] [| 0.0f; 0.0f; 2.0f; 2.0f |]
    // [2, 4] − [1, 1] + [1, 1] = [2, 4]
    Assert.Equal<float[]>([| 2.0; 4.0 |], Tensor.toArray64 (Sampling.arithmetic a b c))

// ------------------------------------------------------------------------------ C# facade

[<Fact>]
let ``the C# GanTrainer says which steps updated the generator`` () =
    let options = TrainOptions.ForModel("mlp", 1)
    options.BatchSize <- 4
    options.DSteps <- 2
    let trainer = GanTrainer.Create options
    let images = Array.init (4 * 784) (fun i -> float32 (i % 7) / 7.0f - 0.5f)

    let steps = [ for _ in 1..4 -> trainer.Step(images, 4, 0) ]

    Assert.Equal<bool list>([ false; true; false; true ], steps |> List.map (fun r -> r.GeneratorUpdated))
    // a step that leaves G alone has no generator loss
    Assert.True(
        steps
        |> List.forall (fun r -> r.GeneratorUpdated = Double.IsFinite r.GeneratorLoss)
    )

[<Fact>]
let ``the C# GanTrainer reuses its steps' buffers and trains exactly as Training.step`` () =
    // batch 64: mlp's activations are pooled sizes (64·512 floats); the suite poisons every
    // given buffer with NaN, so a buffer handed back while the state still held it would show
    let options = TrainOptions.ForModel("mlp", 1)
    options.BatchSize <- 64
    options.Seed <- 5UL
    let trainer = GanTrainer.Create options
    // a CPU backend with a 64 MB step pool (mlp's step at batch 64 fits), for this thread only
    let pooled =
        Gan.Functional.Kernels.CpuBackend(
            2,
            {
                CpuKnobs.Default with
                    StepPoolBytes = 64L <<< 20
            }
        )

    Backend.using pooled (fun () ->
        let info = Engine.Model("mlp", 1)

        let config =
            Gan.Functional.Run.TrainSettings.trainConfig options.Settings options.SimultaneousUpdates

        let mutable s = Training.init info.Model config (Random.key 5UL)

        for i in 1..4 do
            let rng = System.Random(i)
            let images = Array.init (64 * 784) (fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0))
            let r = trainer.Step(images, 64, 0)
            // the whole step fit in the step pool: its buffers went back for the next one
            Assert.True(Gan.Functional.Kernels.BufferPool.lastStepGiven () > 0L, "the step gave nothing back")

            let next, m =
                Training.step
                    info.Model
                    config
                    (trainer.GeneratorLearningRate 0)
                    (trainer.DiscriminatorLearningRate 0)
                    (Tensor.ofArray [| 64; 1; 28; 28 |] images)
                    s

            s <- next
            Assert.Equal(m.DLoss, r.DiscriminatorLoss)
            Assert.Equal(m.GLoss, r.GeneratorLoss)

        let expected = Checkpoint.toNamed s |> Map.ofList

        for t in trainer.ExportState() do
            let e = expected.[t.Name]

            match t.Float32Data with
            | null -> ()
            | data -> Assert.Equal<float32[]>(Tensor.toArray e, data))

[<Fact>]
let ``the C# GanTrainer trains mlp for two steps and ExportState then Restore gives the same Generate output`` () =
    let options = TrainOptions.ForModel("mlp", 1)
    options.BatchSize <- 8
    options.Seed <- 42UL
    let trainer = GanTrainer.Create options
    Assert.Equal(1e-3, trainer.GeneratorLearningRate(0), 12)
    let rng = System.Random(1)

    let images () =
        Array.init (8 * 784) (fun _ -> float32 (rng.NextDouble() * 2.0 - 1.0))

    for _ in 1..2 do
        let r = trainer.Step(images (), 8, 0)
        Assert.True(Double.IsFinite r.DiscriminatorLoss && Double.IsFinite r.GeneratorLoss)
        Assert.True(r.RealScore > 0.0 && r.RealScore < 1.0)

    Assert.Equal(2, trainer.StepCount)
    Assert.True(trainer.IsFinite())
    let exported = trainer.ExportState()

    Assert.Contains(
        exported,
        fun t ->
            t.Name = "generator.0.weight"
            && t.Shape = [| 128; 100 |]
            && not (isNull t.Float32Data)
    )

    let restored = GanTrainer.Restore(options, exported)
    Assert.Equal(2, restored.StepCount)
    let z = trainer.Noise(4, 7UL)
    Assert.Equal<float32[]>(z, restored.Noise(4, 7UL))
    let g1 = trainer.Generate(z, 4, false)
    Assert.Equal(4 * 784, g1.Length)
    Assert.Equal<float32[]>(g1, restored.Generate(z, 4, false))
    Assert.Equal<float32[]>(trainer.Discriminate(g1, 4), restored.Discriminate(g1, 4))
    // a further identical step keeps them identical
    let batch = images ()
    let a = trainer.Step(batch, 8, 0)
    let b = restored.Step(batch, 8, 0)
    Assert.Equal(a.DiscriminatorLoss, b.DiscriminatorLoss)
    Assert.Equal<float32[]>(trainer.Generate(z, 4, false), restored.Generate(z, 4, false))

[<Fact>]
let ``simultaneous updates differentiate G through D as it was before the step's D update`` () =
    let s0 = Training.init toy config (Random.key 11UL)

    let gAfter (cfg: TrainConfig) (dLr: float) =
        let s, _ = Training.step toy cfg 1e-2 dLr (realBatch 1UL 8) s0
        values { s with D = s0.D }

    let simultaneous = {
        config with
            SimultaneousUpdates = true
    }
    // with a frozen D (learning rate 0) the two orders are the same computation
    Assert.True((gAfter config 0.0 = gAfter simultaneous 0.0), "same G when D does not move")
    // once D moves, only the sequential order sees the new D
    Assert.False((gAfter config 0.5 = gAfter simultaneous 0.5), "G differs when D moves")
    Assert.True((gAfter simultaneous 0.0 = gAfter simultaneous 0.5), "simultaneous G ignores D's update")

// ------------------------------------------------------------------------------ S1's recipe

// The checks of the mlp mode-collapse investigation (docs/quality.md): the learning rates reach
// the right networks, each network has its own Adam state, the generator's step raises D's
// score of its samples, and the C# trainer gives mlp's G five times D's rate.

[<Fact>]
let ``Training.step applies gLr to the generator only and dLr to the discriminator only`` () =
    let s0 = Training.init toy config (Random.key 5UL)

    let weightsOf (v: Variables) =
        v.Params |> Map.map (fun _ t -> Tensor.toArray64 t) |> Map.toList

    let gOnly, _ = Training.step toy config 1e-2 0.0 (realBatch 1UL 8) s0
    let dOnly, _ = Training.step toy config 0.0 1e-2 (realBatch 1UL 8) s0
    Assert.True((weightsOf gOnly.D = weightsOf s0.D), "dLr = 0 leaves D as it was")
    Assert.False((weightsOf gOnly.G = weightsOf s0.G), "gLr > 0 moves G")
    Assert.True((weightsOf dOnly.G = weightsOf s0.G), "gLr = 0 leaves G as it was")
    Assert.False((weightsOf dOnly.D = weightsOf s0.D), "dLr > 0 moves D")

[<Fact>]
let ``each network keeps its own Adam moments, keyed by its own parameter names`` () =
    let s, _ =
        Training.step toy config 1e-2 1e-2 (realBatch 1UL 8) (Training.init toy config (Random.key 5UL))

    let names (m: Map<string, Tensor>) = m |> Map.keys |> Set.ofSeq
    Assert.Equal<Set<string>>(names s.G.Params, names s.GOpt.Moment1)
    Assert.Equal<Set<string>>(names s.D.Params, names s.DOpt.Moment2)
    // both sequentials name their first Linear "0.weight": the same name, different tensors
    Assert.NotEqual<int[]>(Tensor.shape s.GOpt.Moment1.["0.weight"], Tensor.shape s.DOpt.Moment1.["0.weight"])
    Assert.Equal(1, s.GOpt.Step)
    Assert.Equal(1, s.DOpt.Step)

[<Theory>]
[<InlineData(false)>]
[<InlineData(true)>]
let ``a generator step raises D's score of the generator's samples`` (simultaneous: bool) =
    let cfg = {
        config with
            SimultaneousUpdates = simultaneous
    }

    let s0 = Training.init toy cfg (Random.key 7UL)
    // D frozen (dLr = 0), so only G's update can change D(G(z)); the step draws z from the key
    let s1, m = Training.step toy cfg 1e-2 0.0 (realBatch 1UL 16) s0

    let fakeScore (s: TrainState) =
        (snd (Training.step toy cfg 0.0 0.0 (realBatch 1UL 16) { s with Key = s0.Key })).FakeScore

    Assert.Equal(m.FakeScore, fakeScore s0)
    Assert.True(fakeScore s1 > fakeScore s0, sprintf "D(G(z)) %g before, %g after" (fakeScore s0) (fakeScore s1))

[<Fact>]
let ``the C# trainer gives mlp's generator five times the discriminator's learning rate`` () =
    let options = TrainOptions.ForModel("mlp", 1)
    Assert.True(options.SimultaneousUpdates)
    let trainer = GanTrainer.Create options
    Assert.Equal(2e-4, trainer.DiscriminatorLearningRate 0, 12)
    Assert.Equal(1e-3, trainer.GeneratorLearningRate 0, 12)
