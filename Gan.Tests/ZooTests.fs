/// The five seed models of SEEDS.md: trainable parameter counts equal to the equivalent
/// PyTorch modules (SEEDS.md's table), output shapes and ranges, PyTorch-like names and
/// layouts of their variables, and lookup by name.
module ZooTests

open System
open Xunit
open Gan.Functional
open Gan.Functional.Nn
open Gan.Functional.Gan

let private trainCtx = {
    Mode = Train
    Key = Random.key 3UL
    Shard = None
}

let private evalCtx = {
    Mode = Eval
    Key = Random.key 0UL
    Shard = None
}

/// Variables of each network, initialised once (mbd28's discriminator alone has 13M parameters).
let private initCache =
    Collections.Concurrent.ConcurrentDictionary<string * bool, Lazy<Variables>>()

let private varsOf (model: GanModel) (generator: bool) =
    let key = sprintf "%s/%A" model.Name model.ImageShape, generator

    initCache
        .GetOrAdd(
            key,
            fun _ ->
                lazy
                    (if generator then
                         model.Generator.Init(Random.key 1UL)
                     else
                         model.Discriminator.Init(Random.key 2UL))
        )
        .Value

let private shapesOf (m: Map<string, Tensor>) =
    m |> Map.map (fun _ t -> Tensor.shape t)

// ------------------------------------------------------------------------------ parameter counts

[<Theory>]
[<InlineData("mlp", 579728, 566273)>]
[<InlineData("dcgan28", 855809, 392833)>]
[<InlineData("mbd28", 6640193, 13015489)>]
[<InlineData("dcgan64", 3576704, 2765568)>]
[<InlineData("valid64", 2471555, 1030273)>]
// toy2d: G 2→128→128→128→2 (384 + 2·16,512 + 258); D 2→128→128→128→1 (384 + 2·16,512 + 129);
// toy2d-mbd adds the projection 128→16·4 (8,256) and widens the last Linear to 144 inputs (+16)
[<InlineData("toy2d", 33666, 33537)>]
[<InlineData("toy2d-mbd", 33666, 41809)>]
let ``trainable parameter counts equal SEEDS.md's table (PyTorch's counts)`` (name: string, g: int, d: int) =
    let model = Zoo.byName name 3
    Assert.Equal(g, Layer.parameterCount (varsOf model true))
    Assert.Equal(d, Layer.parameterCount (varsOf model false))

[<Fact>]
let ``dcgan64 with one channel loses the colour weights of its first and last convolutions`` () =
    // only G's last ConvT [64, C, 4, 4] and D's first Conv [64, C, 4, 4] depend on C:
    // 3 → 1 channel removes 2·64·16 = 2,048 parameters from each
    let model = Zoo.dcgan64With 1
    Assert.Equal(3576704 - 2048, Layer.parameterCount (varsOf model true))
    Assert.Equal(2765568 - 2048, Layer.parameterCount (varsOf model false))
    Assert.Equal<int[]>([| 1; 64; 64 |], model.ImageShape)

[<Fact>]
let ``the C# facade reports the same parameter counts`` () =
    let info = Gan.Functional.CSharp.Engine.Model("mlp", 1)
    Assert.Equal(579728, info.GeneratorParameters)
    Assert.Equal(566273, info.DiscriminatorParameters)
    Assert.Equal(100, info.NoiseDim)

// ------------------------------------------------------------------------------ shapes and ranges

/// G(z) for N = 2 in train mode (BatchNorm needs two examples) and N = 1 in eval mode, then D on
/// the generated batch: G gives [N, C, H, W] in the model's range, D one logit per example.
let private checkModel (model: GanModel) =
    let g = varsOf model true
    let d = varsOf model false

    for n, ctx in [ 2, trainCtx; 1, evalCtx ] do
        let z = Training.noise model (Random.key 4UL) n
        let x, _ = model.Generator.Apply g ctx z
        Assert.Equal<int[]>(Array.append [| n |] model.ImageShape, Tensor.shape x)
        let xs = Tensor.toArray64 x
        Assert.True(xs |> Array.forall Double.IsFinite, model.Name + ": finite output")

        let lo, hi =
            match model.Range with
            | MinusOneToOne -> -1.0, 1.0
            | ZeroToOne -> 0.0, 1.0

        Assert.True(
            xs |> Array.forall (fun v -> v >= lo && v <= hi),
            sprintf "%s: output within [%g, %g]" model.Name lo hi
        )

        let y, _ = model.Discriminator.Apply d ctx x
        Assert.Equal<int[]>([| n; 1 |], Tensor.shape y)
        Assert.True(Tensor.toArray64 y |> Array.forall Double.IsFinite, model.Name + ": finite logits")

[<Fact>]
let ``mlp maps z to [N, 1, 28, 28] in [-1, 1] and D to [N, 1]`` () = checkModel Zoo.mlp

[<Fact>]
let ``dcgan28 maps z to [N, 1, 28, 28] in [-1, 1] and D to [N, 1]`` () = checkModel Zoo.dcgan28

[<Fact>]
let ``mbd28 maps z (62) to [N, 1, 28, 28] in [0, 1] and D to [N, 1]`` () =
    Assert.Equal(62, Zoo.mbd28.NoiseDim)
    Assert.Equal(ZeroToOne, Zoo.mbd28.Range)
    checkModel Zoo.mbd28

[<Fact>]
let ``dcgan64 maps z to [N, 3, 64, 64] in [-1, 1] and D to [N, 1]`` () = checkModel Zoo.dcgan64

[<Fact>]
let ``dcgan64 with one channel maps z to [N, 1, 64, 64]`` () = checkModel (Zoo.dcgan64With 1)

[<Fact>]
let ``valid64 maps z to [N, 3, 64, 64] in [-1, 1] and D to [N, 1]`` () = checkModel Zoo.valid64

[<Fact>]
let ``every image model but mbd28 produces tanh output for data in [-1, 1]`` () =
    for name in Zoo.names |> List.filter (fun n -> not (n.StartsWith "toy2d")) do
        let m = Zoo.byName name 3
        Assert.Equal(name, m.Name)
        Assert.Equal((if name = "mbd28" then ZeroToOne else MinusOneToOne), m.Range)

// ------------------------------------------------------------------------------ names and layouts

let private expectEntries (what: string) (m: Map<string, Tensor>) (expected: (string * int[]) list) =
    let shapes = shapesOf m

    for name, shape in expected do
        match Map.tryFind name shapes with
        | Some s -> Assert.True((s = shape), sprintf "%s: '%s' has shape %A, expected %A" what name s shape)
        | None -> failwithf "%s: '%s' is missing (have %s)" what name (String.Join(", ", shapes.Keys))

[<Fact>]
let ``mlp's variables are named and laid out like its torch.nn.Sequential`` () =
    let g = varsOf Zoo.mlp true
    let d = varsOf Zoo.mlp false
    // G: Linear(100, 128) is module 0, weights [out, in]
    expectEntries "G" g.Params [
        "0.weight", [| 128; 100 |]
        "0.bias", [| 128 |]
        "2.weight", [| 256; 128 |]
        "4.weight", [| 512; 256 |]
        "6.weight", [| 784; 512 |]
        "6.bias", [| 784 |]
    ]

    Assert.Equal(8, g.Params.Count)
    // D: module 0 is Flatten, so the linears are 1, 3, 5, 7
    expectEntries "D" d.Params [
        "1.weight", [| 512; 784 |]
        "3.weight", [| 256; 512 |]
        "5.weight", [| 128; 256 |]
        "7.weight", [| 1; 128 |]
        "7.bias", [| 1 |]
    ]

    Assert.Equal(8, d.Params.Count)
    Assert.True(g.State.IsEmpty && d.State.IsEmpty)

[<Fact>]
let ``dcgan64's convolutions have PyTorch's layouts and no biases; BatchNorm has weight, bias and running stats`` () =
    let g = varsOf Zoo.dcgan64 true
    let d = varsOf Zoo.dcgan64 false
    // G: module 0 reshapes z to [100, 1, 1]; ConvTranspose2d weights are [in, out, k, k]
    expectEntries "G" g.Params [
        "1.weight", [| 100; 512; 4; 4 |]
        "2.weight", [| 512 |]
        "2.bias", [| 512 |]
        "4.weight", [| 512; 256; 4; 4 |]
        "7.weight", [| 256; 128; 4; 4 |]
        "10.weight", [| 128; 64; 4; 4 |]
        "13.weight", [| 64; 3; 4; 4 |]
    ]

    expectEntries "G state" g.State [
        "2.running_mean", [| 512 |]
        "2.running_var", [| 512 |]
        "11.running_var", [| 64 |]
    ]

    Assert.False(g.Params.ContainsKey "1.bias", "ConvTranspose2d without bias")
    // D: Conv2d weights are [out, in, k, k]
    expectEntries "D" d.Params [
        "0.weight", [| 64; 3; 4; 4 |]
        "2.weight", [| 128; 64; 4; 4 |]
        "3.weight", [| 128 |]
        "3.bias", [| 128 |]
        "11.weight", [| 1; 512; 4; 4 |]
    ]

    expectEntries "D state" d.State [ "3.running_mean", [| 128 |]; "9.running_var", [| 512 |] ]
    // every bias belongs to a BatchNorm (it has running statistics beside it)
    for v in [ g; d ] do
        for KeyValue(name, _) in v.Params do
            if name.EndsWith ".bias" then
                let prefix = name.Substring(0, name.Length - "bias".Length)
                Assert.True(v.State.ContainsKey(prefix + "running_mean"), sprintf "'%s' is a convolution bias" name)

    // weights N(0, 0.02) and BatchNorm scales N(1, 0.02) (Radford et al.)
    let w = Tensor.toArray64 g.Params.["4.weight"]
    let m = Array.average w
    let s = sqrt (w |> Array.averageBy (fun v -> (v - m) * (v - m)))
    Assert.True(abs m < 1e-3 && abs (s - 0.02) < 1e-3, sprintf "conv weights mean %g std %g" m s)
    let bn = Tensor.toArray64 g.Params.["2.weight"]
    Assert.True(abs (Array.average bn - 1.0) < 0.005, "BatchNorm scale mean 1")

[<Fact>]
let ``mbd28, dcgan28 and valid64 name their special layers like PyTorch`` () =
    let d = varsOf Zoo.mbd28 false
    // minibatch discrimination (module 6) projects 6272 features to B·C = 32·32
    expectEntries "mbd28 D" d.Params [
        "0.weight", [| 64; 1; 4; 4 |]
        "6.lin.weight", [| 1024; 6272 |]
        "6.lin.bias", [| 1024 |]
        "7.weight", [| 1024; 6304 |]
        "10.weight", [| 1; 1024 |]
    ]

    let g = varsOf Zoo.mbd28 true

    expectEntries "mbd28 G" g.Params [
        "0.weight", [| 1024; 62 |]
        "4.bias", [| 6272 |]
        "7.weight", [| 128; 64; 4; 4 |]
    ]

    expectEntries "mbd28 G state" g.State [ "1.running_mean", [| 1024 |]; "4.running_var", [| 6272 |] ]
    // biases start at zero (SEEDS.md S4)
    Assert.True(Tensor.toArray64 g.Params.["0.bias"] |> Array.forall ((=) 0.0))
    let g28 = varsOf Zoo.dcgan28 true

    expectEntries "dcgan28 G" g28.Params [
        "0.weight", [| 6272; 100 |]
        "4.weight", [| 128; 128; 3; 3 |]
        "6.weight", [| 128 |]
    ]

    let d28 = varsOf Zoo.dcgan28 false

    expectEntries "dcgan28 D" d28.Params [
        "3.weight", [| 64; 32; 3; 3 |]
        "5.weight", [| 64 |]
        "17.weight", [| 1; 4096 |]
    ]

    let g5 = varsOf Zoo.valid64 true

    expectEntries "valid64 G" g5.Params [
        "0.weight", [| 4608; 100 |]
        "3.weight", [| 512; 256; 3; 3 |]
        "7.weight", [| 128; 3; 4; 4 |]
        "7.bias", [| 3 |]
    ]

[<Fact>]
let ``Zoo.byName rejects an unknown name with a message listing the known ones`` () =
    let e =
        Assert.Throws<ArgumentException>(Action(fun () -> Zoo.byName "stylegan" 3 |> ignore))

    Assert.Contains("stylegan", e.Message)

    let all = [ "mlp"; "dcgan28"; "dcgan64"; "mbd28"; "valid64"; "toy2d"; "toy2d-mbd" ]

    for name in all do
        Assert.Contains(name, e.Message)

    Assert.Equal<int[]>([| 1; 64; 64 |], (Zoo.byName "dcgan64" 1).ImageShape)
    Assert.Equal<string list>(all, Zoo.names)

    for name in all do
        Assert.Equal(name, (Zoo.byName name 3).Name)

// ------------------------------------------------------------------------------ 2-D models

[<Theory>]
[<InlineData("toy2d")>]
[<InlineData("toy2d-mbd")>]
let ``the 2-D models map z (2) to points [N, 2] and D to one finite logit per point`` (name: string) =
    let model = Zoo.byName name 1
    Assert.Equal<int[]>([| 2 |], model.ImageShape)
    Assert.Equal(2, model.NoiseDim)
    Assert.Equal(100, model.Defaults.BatchSize)
    let g = varsOf model true
    let d = varsOf model false
    let z = Training.noise model (Random.key 4UL) 5
    let x, _ = model.Generator.Apply g trainCtx z
    Assert.Equal<int[]>([| 5; 2 |], Tensor.shape x)
    let y, _ = model.Discriminator.Apply d evalCtx x
    Assert.Equal<int[]>([| 5; 1 |], Tensor.shape y)
    Assert.True(Tensor.toArray64 y |> Array.forall Double.IsFinite)

[<Theory>]
[<InlineData("toy2d", false)>]
[<InlineData("toy2d-mbd", true)>]
let ``only toy2d-mbd's discriminator scores a point by the rest of its batch`` (name: string, coupled: bool) =
    let model = Zoo.byName name 1
    let d = varsOf model false

    let first (rest: float32[]) =
        let x = Tensor.ofArray [| 3; 2 |] (Array.append [| 0.5f; -0.5f |] rest)
        (Tensor.toArray (fst (model.Discriminator.Apply d evalCtx x))).[0]
    // the same first point beside two different companions
    let a = first [| 1.0f; 1.0f; -1.0f; 0.0f |]
    let b = first [| 0.5f; -0.5f; 0.5f; -0.5f |]
    Assert.Equal(coupled, abs (a - b) > 1e-6f)
