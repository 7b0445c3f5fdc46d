/// Laws of the layers in Gan.Functional.Nn: output shapes over random geometries (against the
/// formulas PyTorch and Keras document), parameter naming (torch.nn.Sequential's "i.name"),
/// gradients of every layer against float64 finite differences, and the statistics of
/// BatchNorm, Dropout, minibatch discrimination, spectral normalisation and the initializers.
module LayerTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open Gan.Functional.Nn

// ------------------------------------------------------------------------------ helpers

let private trainCtx (seed: uint64) = {
    Mode = Train
    Key = Random.key seed
    Shard = None
}

let private evalCtx = {
    Mode = Eval
    Key = Random.key 0UL
    Shard = None
}

let private f64 (t: Tensor) = Tensor.cast Float64 t

let private vars64 (v: Variables) = {
    Params = v.Params |> Map.map (fun _ t -> f64 t)
    State = v.State |> Map.map (fun _ t -> f64 t)
}

/// N(0, 1) float64 data of `shape` from `seed`.
let private randn64 (seed: int) (shape: int[]) =
    f64 (Tensor.randn (Random.key (uint64 seed)) shape)

let private ensure (ok: bool) (message: string) =
    if not ok then
        failwith message

let private close (tol: float) (what: string) (expected: float[]) (got: float[]) =
    ensure (expected.Length = got.Length) (sprintf "%s: %d expected vs %d values" what expected.Length got.Length)

    for i in 0 .. expected.Length - 1 do
        if not (abs (expected.[i] - got.[i]) <= tol * (1.0 + abs expected.[i])) then
            failwithf "%s: element %d expected %.12g, got %.12g" what i expected.[i] got.[i]

/// A local finite-difference checker: every reverse-mode gradient of `f` (scalar-valued) against
/// central differences with step 1e-6·max(1, |p|) in float64, within 1e-6 + 1e-5·|numeric|
/// (the rounding error of such a difference is ~1e-10·|f|, the truncation error ~1e-12).
let private gradCheck (what: string) (f: Map<string, Tensor> -> Tensor) (ps: Map<string, Tensor>) =
    let _, analytic = Autodiff.valueAndGrads f ps

    for KeyValue(name, p) in ps do
        let shape = Tensor.shape p
        let data = Tensor.toArray64 p
        let a = Tensor.toArray64 analytic.[name]
        ensure (a.Length = data.Length) (sprintf "%s: gradient of %s has the wrong size" what name)

        for i in 0 .. data.Length - 1 do
            let h = 1e-6 * max 1.0 (abs data.[i])

            let at (v: float) =
                let d = Array.copy data
                d.[i] <- v
                Tensor.item (f (Map.add name (Tensor.ofArray64 shape d) ps))

            let numeric = (at (data.[i] + h) - at (data.[i] - h)) / (2.0 * h)

            if not (abs (a.[i] - numeric) <= 1e-6 + 1e-5 * abs numeric) then
                failwithf "%s: d/d%s[%d] analytic %.10g, numeric %.10g" what name i a.[i] numeric

let private inputName = "<input>"

/// Checks the gradients of ⟨layer(x), r⟩ (r a fixed random cotangent) with respect to every
/// parameter and to the input x, everything cast to float64.
let private checkLayerGrads (what: string) (layer: Layer) (vars: Variables) (ctx: Context) (x: Tensor) =
    let vars = vars64 vars
    let x = f64 x
    let y0, _ = layer.Apply vars ctx x
    let r = randn64 99 (Tensor.shape y0)

    let f (ps: Map<string, Tensor>) =
        let y, _ =
            layer.Apply
                {
                    vars with
                        Params = Map.remove inputName ps
                }
                ctx
                ps.[inputName]

        Tensor.sum (y * r)

    gradCheck what f (Map.add inputName x vars.Params)

/// The output shape of `layer` (freshly initialised) on an input of `shape`.
let private outShape (layer: Layer) (shape: int[]) =
    let vars = layer.Init(Random.key 1UL)
    let y, _ = layer.Apply vars evalCtx (Tensor.zeros shape)
    Tensor.shape y

let private showShape (s: int[]) = Shape.show s

// ------------------------------------------------------------------------------ output shapes

[<Fact>]
let ``Linear maps [N, in] to [N, out] and keeps leading axes`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! lead = Gen.arrayOfLength 2 (Gen.choose (1, 4))
                let! rank = Gen.choose (1, 2)
                let! i = Gen.choose (1, 8)
                let! o = Gen.choose (1, 8)
                return lead.[.. rank - 1], i, o
            }
        ))
        (fun (lead, i, o) ->
            let got = outShape (Layers.linear i o) (Array.append lead [| i |])
            got = Array.append lead [| o |])
    |> Prop.check "linear output shape"

/// A Conv2d geometry: batch, channels in/out, input size, kernel, stride, dilation, padding.
type ConvCase = {
    N: int
    C: int
    O: int
    H: int
    W: int
    K: int
    S: int
    D: int
    Padding: Padding
    OutputPadding: int
}

let private paddingGen =
    Gen.oneof [
        Gen.constant Same
        Gen.constant Valid
        Gen.choose (0, 2) |> Gen.map Pad
        gen {
            let! t = Gen.choose (0, 2)
            let! b = Gen.choose (0, 2)
            let! l = Gen.choose (0, 2)
            let! r = Gen.choose (0, 2)
            return PadAsym(t, b, l, r)
        }
    ]

/// Sizes 1..12, kernel 1..5, stride 1..3, dilation 1..2; inputs too small for the kernel are grown.
let private convCaseGen =
    gen {
        let! n = Gen.choose (1, 2)
        let! c = Gen.choose (1, 3)
        let! o = Gen.choose (1, 3)
        let! h = Gen.choose (1, 12)
        let! w = Gen.choose (1, 12)
        let! k = Gen.choose (1, 5)
        let! s = Gen.choose (1, 3)
        let! d = Gen.choose (1, 2)
        let! padding = paddingGen
        let span = d * (k - 1) + 1

        return {
            N = n
            C = c
            O = o
            H = max h span
            W = max w span
            K = k
            S = s
            D = d
            Padding = padding
            OutputPadding = 0
        }
    }

let private convLayer (c: ConvCase) =
    Layers.conv2dWith {
        Layers.convConfig c.C c.O c.K with
            Stride = c.S
            Dilation = c.D
            Padding = c.Padding
    }

/// PyTorch's documented Conv2d size ⌊(n + pads − d(k − 1) − 1)/s⌋ + 1; Keras 'same' ⌈n/s⌉.
let private expectedConvSize (n: int) (padA: int) (padB: int) (c: ConvCase) =
    match c.Padding with
    | Same -> (n + c.S - 1) / c.S
    | _ -> (n + padA + padB - c.D * (c.K - 1) - 1) / c.S + 1

[<Fact>]
let ``Conv2d output size follows PyTorch's formula, and 'same' gives ceil(n over s)`` () =
    Prop.forAll (Arb.fromGen convCaseGen) (fun c ->
        let (pt, pb), (pl, pr) =
            match c.Padding with
            | Same
            | Valid -> (0, 0), (0, 0)
            | Pad p -> (p, p), (p, p)
            | PadAsym(t, b, l, r) -> (t, b), (l, r)

        let expected = [| c.N; c.O; expectedConvSize c.H pt pb c; expectedConvSize c.W pl pr c |]

        let got = outShape (convLayer c) [| c.N; c.C; c.H; c.W |]
        ensure (got = expected) (sprintf "%A: expected %s, got %s" c (showShape expected) (showShape got)))
    |> Prop.check "conv2d output shape"

[<Fact>]
let ``Conv2d 'same' pads symmetrically and puts the odd pixel at the bottom and right (TensorFlow)`` () =
    // n = 5, k = 4, s = 1: total padding 3 → 1 on top/left, 2 at the bottom/right (TF's rule)
    let c =
        Layers.convSpec
            {
                Layers.convConfig 1 1 4 with
                    Padding = Same
            }
            5
            5

    Assert.Equal((1, 2, 1, 2), (c.PadTop, c.PadBottom, c.PadLeft, c.PadRight))
    // n = 28, k = 3, s = 2: output 14 needs (14 − 1)·2 + 3 − 28 = 1 pixel, at the bottom/right
    let c2 =
        Layers.convSpec
            {
                Layers.convConfig 1 1 3 with
                    Padding = Same
                    Stride = 2
            }
            28
            28

    Assert.Equal((0, 1, 0, 1), (c2.PadTop, c2.PadBottom, c2.PadLeft, c2.PadRight))

let private convTLayer (c: ConvCase) =
    Layers.convTranspose2dWith {
        Layers.convConfig c.C c.O c.K with
            Stride = c.S
            Dilation = c.D
            Padding = c.Padding
            OutputPadding = c.OutputPadding
    }

/// Transposed geometries: 'valid', 'same', or padding p ≤ d(k − 1)/2 with output padding
/// below max(s, d) (PyTorch's constraint).
let private convTCaseGen =
    gen {
        let! c = convCaseGen
        let! h = Gen.choose (1, 6)
        let! w = Gen.choose (1, 6)
        let! kind = Gen.choose (0, 2)
        let! p = Gen.choose (0, c.D * (c.K - 1) / 2)
        let! op = Gen.choose (0, max c.S c.D - 1)

        let padding, op =
            match kind with
            | 0 -> Valid, 0
            | 1 -> Same, 0
            | _ -> Pad p, op

        return {
            c with
                H = h
                W = w
                Padding = padding
                OutputPadding = op
        }
    }

[<Fact>]
let ``ConvTranspose2d output size is (n-1)s+k for valid, n·s for same, and PyTorch's formula with padding`` () =
    Prop.forAll (Arb.fromGen convTCaseGen) (fun c ->
        // PyTorch's ConvTranspose2d: (n − 1)·s − 2p + d·(k − 1) + output_padding + 1
        let size n =
            match c.Padding with
            | Valid -> (n - 1) * c.S + c.D * (c.K - 1) + 1
            | Same -> n * c.S
            | Pad p -> (n - 1) * c.S - 2 * p + c.D * (c.K - 1) + c.OutputPadding + 1
            | PadAsym _ -> failwith "not generated"

        let expected = [| c.N; c.O; size c.H; size c.W |]
        let got = outShape (convTLayer c) [| c.N; c.C; c.H; c.W |]
        ensure (got = expected) (sprintf "%A: expected %s, got %s" c (showShape expected) (showShape got)))
    |> Prop.check "conv_transpose2d output shape"

[<Fact>]
let ``ConvTranspose2d is the adjoint of Conv2d with the same weight and padding (TensorFlow's and PyTorch's definition)``
    ()
    =
    // ⟨convT(x; W), y⟩ = ⟨x, conv(y; W)⟩ for W [a, b, k, k] read as ConvT [in a, out b] and
    // Conv [out a, in b]: for 'same' this pins down where TensorFlow puts the odd padding and the
    // output padding; for 'pad p' with output padding, PyTorch's extra bottom/right rows.
    Prop.forAll (Arb.fromGen (convTCaseGen |> Gen.filter (fun c -> c.D = 1))) (fun c ->
        let convT = convTLayer c

        let conv =
            Layers.conv2dWith {
                Layers.convConfig c.O c.C c.K with
                    Stride = c.S
                    Padding = c.Padding
                    Bias = false
            }

        let w = randn64 (c.K * 7 + c.S) [| c.C; c.O; c.K; c.K |]

        let v = {
            Params = Map.ofList [ "weight", w; "bias", Tensor.zerosLike (randn64 0 [| c.O |]) ]
            State = Map.empty
        }

        let x = randn64 (c.H * 13 + c.W) [| c.N; c.C; c.H; c.W |]
        let tx, _ = convT.Apply v evalCtx x
        let y = randn64 (c.H + 5 * c.W) (Tensor.shape tx)

        let cy, _ =
            conv.Apply
                {
                    v with
                        Params = Map.ofList [ "weight", w ]
                }
                evalCtx
                y

        ensure (Tensor.shape cy = Tensor.shape x) (sprintf "%A: conv of the output has shape %A" c (Tensor.shape cy))
        let lhs = Tensor.item (Tensor.sum (tx * y))
        let rhs = Tensor.item (Tensor.sum (x * cy))

        ensure
            (abs (lhs - rhs) <= 1e-9 * (1.0 + abs lhs))
            (sprintf "%A: ⟨convT x, y⟩ = %g, ⟨x, conv y⟩ = %g" c lhs rhs))
    |> Prop.check "conv transpose adjoint"

[<Fact>]
let ``ConvTranspose2d valid with k = s and no overlap places one scaled kernel per input pixel`` () =
    // k = s = 2: output block (2i..2i+1, 2j..2j+1) = x[i, j]·w, a hand-checkable identity
    let layer =
        Layers.convTranspose2dWith {
            Layers.convConfig 1 1 2 with
                Stride = 2
                Bias = false
        }

    let vars = {
        Params = Map.ofList [ "weight", Tensor.ofArray [| 1; 1; 2; 2 |] [| 1.0f; 2.0f; 3.0f; 4.0f |] ]
        State = Map.empty
    }

    let y, _ =
        layer.Apply vars evalCtx (Tensor.ofArray [| 1; 1; 1; 2 |] [| 1.0f; 10.0f |])

    Assert.Equal<int[]>([| 1; 1; 2; 4 |], Tensor.shape y)
    close 0.0 "convT" [| 1.0; 2.0; 10.0; 20.0; 3.0; 4.0; 30.0; 40.0 |] (Tensor.toArray64 y)

[<Fact>]
let ``upsampleNearest repeats every pixel s×s times`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! n = Gen.choose (1, 2)
                let! c = Gen.choose (1, 3)
                let! h = Gen.choose (1, 5)
                let! w = Gen.choose (1, 5)
                let! s = Gen.choose (1, 3)
                let! seed = Gen.choose (0, 10000)
                return n, c, h, w, s, seed
            }
        ))
        (fun (n, c, h, w, s, seed) ->
            let x = randn64 seed [| n; c; h; w |]
            let y, _ = (Layers.upsampleNearest s).Apply Layer.emptyVariables evalCtx x
            ensure (Tensor.shape y = [| n; c; h * s; w * s |]) "shape"
            let xs, ys = Tensor.toArray64 x, Tensor.toArray64 y

            for b in 0 .. n * c - 1 do
                for i in 0 .. h * s - 1 do
                    for j in 0 .. w * s - 1 do
                        let expected = xs.[(b * h + i / s) * w + j / s]
                        ensure (ys.[(b * h * s + i) * w * s + j] = expected) "value")
    |> Prop.check "upsample nearest"

[<Fact>]
let ``zeroPad2d takes (left, right, top, bottom) like PyTorch's ZeroPad2d and pads with zeros`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! h = Gen.choose (1, 5)
                let! w = Gen.choose (1, 5)
                let! pads = Gen.arrayOfLength 4 (Gen.choose (0, 3))
                let! seed = Gen.choose (0, 10000)
                return h, w, pads, seed
            }
        ))
        (fun (h, w, pads, seed) ->
            let l, r, t, b = pads.[0], pads.[1], pads.[2], pads.[3]
            let x = randn64 seed [| 2; 1; h; w |]
            let y, _ = (Layers.zeroPad2d l r t b).Apply Layer.emptyVariables evalCtx x
            let oh, ow = h + t + b, w + l + r
            ensure (Tensor.shape y = [| 2; 1; oh; ow |]) "shape"
            let xs, ys = Tensor.toArray64 x, Tensor.toArray64 y

            for n in 0..1 do
                for i in 0 .. oh - 1 do
                    for j in 0 .. ow - 1 do
                        let inside = i >= t && i < t + h && j >= l && j < l + w

                        let expected = if inside then xs.[(n * h + i - t) * w + j - l] else 0.0

                        ensure (ys.[(n * oh + i) * ow + j] = expected) (sprintf "value at %d,%d,%d" n i j))
    |> Prop.check "zero pad 2d"

[<Fact>]
let ``flatten keeps the batch axis and unflatten inverts it`` () =
    Prop.forAll (Arb.fromGen (Gen.arrayOfLength 4 (Gen.choose (1, 4)))) (fun s ->
        let x = randn64 7 s
        let flat, _ = Layers.flatten.Apply Layer.emptyVariables evalCtx x
        ensure (Tensor.shape flat = [| s.[0]; s.[1] * s.[2] * s.[3] |]) "flatten shape"
        ensure (Tensor.toArray64 flat = Tensor.toArray64 x) "flatten keeps row-major order"
        let back, _ = (Layers.unflatten s.[1..]).Apply Layer.emptyVariables evalCtx flat
        ensure (Tensor.shape back = s) "unflatten shape"
        ensure (Tensor.toArray64 back = Tensor.toArray64 x) "unflatten values")
    |> Prop.check "flatten/unflatten"

// ------------------------------------------------------------------------------ naming

let private shapesOf (m: Map<string, Tensor>) =
    m |> Map.toList |> List.map (fun (k, v) -> k, Tensor.shape v)

[<Fact>]
let ``sequential names child i's variables "i.name" as torch.nn.Sequential does`` () =
    let net = Layer.sequential [ Layers.linear 3 4; Layers.relu; Layers.linear 4 2 ]

    let v = net.Init(Random.key 0UL)

    Assert.Equal<(string * int[]) list>(
        [
            "0.bias", [| 4 |]
            "0.weight", [| 4; 3 |]
            "2.bias", [| 2 |]
            "2.weight", [| 2; 4 |]
        ],
        shapesOf v.Params
    )

    Assert.True(v.State.IsEmpty)
    Assert.Equal(3 * 4 + 4 + 4 * 2 + 2, Layer.parameterCount v)

[<Fact>]
let ``nested sequentials, BatchNorm state and Layer.named compose their prefixes`` () =
    let net =
        Layer.sequential [
            Layer.sequential [ Layers.linear 2 3 ]
            Normalization.batchNorm 3
            Layer.named "lin" (Layers.linear 3 1)
        ]

    let v = net.Init(Random.key 0UL)

    Assert.Equal<string list>(
        [ "0.0.bias"; "0.0.weight"; "1.bias"; "1.weight"; "2.lin.bias"; "2.lin.weight" ],
        v.Params |> Map.keys |> List.ofSeq
    )

    Assert.Equal<string list>([ "1.running_mean"; "1.running_var" ], v.State |> Map.keys |> List.ofSeq)
    // train mode returns the updated BatchNorm statistics under the same names
    let _, s = net.Apply v (trainCtx 1UL) (Tensor.randn (Random.key 3UL) [| 4; 2 |])
    Assert.Equal<string list>([ "1.running_mean"; "1.running_var" ], s |> Map.keys |> List.ofSeq)

[<Fact>]
let ``Layer.named puts a layer's variables under "name." and applies them`` () =
    let lin = Layers.linear 2 3
    let named = Layer.named "lin" lin
    let v = named.Init(Random.key 5UL)
    Assert.Equal<string list>([ "lin.bias"; "lin.weight" ], v.Params |> Map.keys |> List.ofSeq)
    let x = Tensor.randn (Random.key 6UL) [| 4; 2 |]
    let y, _ = named.Apply v evalCtx x
    let direct, _ = lin.Apply (Layer.child "lin" v) evalCtx x
    Assert.Equal<float[]>(Tensor.toArray64 direct, Tensor.toArray64 y)
    // the same key draws the same values as the unnamed layer
    Assert.Equal<float[]>(
        Tensor.toArray64 (lin.Init(Random.key 5UL)).Params.["weight"],
        Tensor.toArray64 v.Params.["lin.weight"]
    )

[<Fact>]
let ``sequential applies its children in order, child i with key foldIn key i`` () =
    let net = Layer.sequential [ Layers.linear 3 5; Layers.tanh; Layers.dropout 0.5 ]
    let v = net.Init(Random.key 11UL)
    let x = Tensor.randn (Random.key 12UL) [| 6; 3 |]
    let ctx = trainCtx 13UL
    let y, _ = net.Apply v ctx x
    let h1, _ = (Layers.linear 3 5).Apply (Layer.child "0" v) ctx x
    let h2 = Tensor.tanh h1

    let h3, _ =
        (Layers.dropout 0.5).Apply
            Layer.emptyVariables
            {
                ctx with
                    Key = Random.foldIn ctx.Key 2
            }
            h2

    Assert.Equal<float[]>(Tensor.toArray64 h3, Tensor.toArray64 y)

[<Fact>]
let ``Layer.run replaces updated state entries and keeps the others`` () =
    let net = Layer.sequential [ Normalization.batchNorm 2; Layers.linear 2 2 ]
    let v = net.Init(Random.key 0UL)
    let x = Tensor.ofArray [| 2; 2 |] [| 1.0f; 2.0f; 3.0f; 6.0f |]
    let _, v2 = Layer.run net v (trainCtx 0UL) x
    // batch means 2 and 4; running_mean = 0.9·0 + 0.1·mean (PyTorch's momentum 0.1)
    close 1e-7 "running_mean" [| 0.2; 0.4 |] (Tensor.toArray64 v2.State.["0.running_mean"])
    Assert.Equal<string list>(v.Params |> Map.keys |> List.ofSeq, v2.Params |> Map.keys |> List.ofSeq)

// ------------------------------------------------------------------------------ gradients

[<Fact>]
let ``Linear gradients match finite differences in float64`` () =
    for (i, o, bias, lead) in [ 3, 2, true, [| 4 |]; 4, 3, false, [| 2; 3 |]; 1, 1, true, [| 1 |] ] do
        let layer =
            Layers.linearWith {
                Layers.linearConfig i o with
                    Bias = bias
            }

        let x = randn64 (i + o) (Array.append lead [| i |])
        checkLayerGrads (sprintf "linear %d→%d" i o) layer (layer.Init(Random.key 3UL)) evalCtx x

[<Fact>]
let ``Conv2d gradients match finite differences over random geometries`` () =
    let small =
        convCaseGen
        |> Gen.map (fun c -> {
            c with
                H = min c.H 6
                W = min c.W 6
                K = min c.K 3
                N = 1
        })
        |> Gen.map (fun c -> {
            c with
                H = max c.H (c.D * (c.K - 1) + 1)
                W = max c.W (c.D * (c.K - 1) + 1)
        })

    Prop.forAll (Arb.fromGen small) (fun c ->
        let layer = convLayer c
        let x = randn64 (c.H * 31 + c.W) [| c.N; c.C; c.H; c.W |]
        checkLayerGrads (sprintf "%A" c) layer (layer.Init(Random.key 4UL)) evalCtx x)
    |> Prop.checkN "conv2d gradients" 12

[<Fact>]
let ``ConvTranspose2d gradients match finite differences over random geometries`` () =
    let small =
        convTCaseGen
        |> Gen.map (fun c -> {
            c with
                H = min c.H 4
                W = min c.W 4
                N = 1
        })

    Prop.forAll (Arb.fromGen small) (fun c ->
        let layer = convTLayer c
        let x = randn64 (c.H * 17 + c.W) [| c.N; c.C; c.H; c.W |]
        checkLayerGrads (sprintf "%A" c) layer (layer.Init(Random.key 5UL)) evalCtx x)
    |> Prop.checkN "conv_transpose2d gradients" 12

[<Fact>]
let ``BatchNorm gradients in train mode (batch statistics) and eval mode match finite differences`` () =
    let bn = Normalization.batchNorm 3

    let v =
        let v0 = bn.Init(Random.key 0UL)

        {
            v0 with
                Params =
                    Map.ofList [
                        "weight", Tensor.ofArray [| 3 |] [| 1.5f; -0.5f; 2.0f |]
                        "bias", Tensor.ofArray [| 3 |] [| 0.1f; 0.2f; -0.3f |]
                    ]
                State =
                    Map.ofList [
                        "running_mean", Tensor.ofArray [| 3 |] [| 0.5f; -1.0f; 0.0f |]
                        "running_var", Tensor.ofArray [| 3 |] [| 2.0f; 0.5f; 1.0f |]
                    ]
        }

    checkLayerGrads "bn1d train" bn v (trainCtx 0UL) (randn64 1 [| 5; 3 |])
    checkLayerGrads "bn2d train" bn v (trainCtx 0UL) (randn64 2 [| 2; 3; 2; 3 |])
    checkLayerGrads "bn2d eval" bn v evalCtx (randn64 3 [| 2; 3; 2; 2 |])

[<Fact>]
let ``activation, padding, upsampling and dropout layers pass gradients that match finite differences`` () =
    let net =
        Layer.sequential [
            Layers.zeroPad2d 1 0 2 1
            Layers.leakyRelu 0.2
            Layers.upsampleNearest 2
            Layers.dropout 0.3
            Layers.tanh
            Layers.flatten
            Layers.sigmoid
            Layers.unflatten [| 2; 10; 8 |]
            Layers.relu
        ]

    checkLayerGrads "elementwise stack" net (net.Init(Random.key 0UL)) (trainCtx 8UL) (randn64 4 [| 2; 2; 2; 3 |])

[<Fact>]
let ``minibatch discrimination and embedding gradients match finite differences`` () =
    let mbd = MinibatchDiscrimination.layer 4 3 2
    checkLayerGrads "mbd" mbd (mbd.Init(Random.key 9UL)) evalCtx (randn64 5 [| 3; 4 |])
    let emb = Layers.embedding 4 3
    let v = vars64 (emb.Init(Random.key 10UL))
    let idx = Tensor.ofArray64 [| 5 |] [| 2.0; 0.0; 2.0; 3.0; 2.0 |]
    let r = randn64 11 [| 5; 3 |]
    gradCheck "embedding" (fun ps -> Tensor.sum (fst (emb.Apply { v with Params = ps } evalCtx idx) * r)) v.Params

[<Fact>]
let ``spectral norm's gradient (u held as PyTorch does) matches finite differences of W ↦ W over σ(W)`` () =
    // With u fixed and v = Wᵀu/‖Wᵀu‖ (both treated as constants, as in PyTorch), σ = uᵀWv =
    // ‖Wᵀu‖ exactly, whose true gradient is u·vᵀ, so the check is exact even before convergence.
    let sn = Normalization.spectralNorm (Layers.linear 4 3)
    checkLayerGrads "spectral norm" sn (sn.Init(Random.key 12UL)) evalCtx (randn64 6 [| 2; 4 |])

// ------------------------------------------------------------------------------ BatchNorm

/// Per-channel values of x [N, C, …] (channel axis 1).
let private channelValues (x: float[]) (shape: int[]) (c: int) =
    let n, ch = shape.[0], shape.[1]
    let inner = x.Length / (n * ch)

    [|
        for b in 0 .. n - 1 do
            for i in 0 .. inner - 1 -> x.[(b * ch + c) * inner + i]
    |]

let private meanOf (xs: float[]) = Array.average xs

let private biasedVar (xs: float[]) =
    let m = meanOf xs
    xs |> Array.averageBy (fun v -> (v - m) * (v - m))

let private bnShapeGen =
    gen {
        let! n = Gen.choose (2, 5)
        let! c = Gen.choose (1, 4)
        let! rank = Gen.choose (2, 4)
        let! spatial = Gen.arrayOfLength (rank - 2) (Gen.choose (1, 3))
        let! seed = Gen.choose (0, 100000)
        let! scale = Gen.elements [ 0.5; 1.0; 3.0 ]
        let! shift = Gen.elements [ -2.0; 0.0; 5.0 ]
        return Array.append [| n; c |] spatial, seed, scale, shift
    }

[<Fact>]
let ``BatchNorm in train mode gives every channel mean 0 and variance 1 (1d and 2d)`` () =
    Prop.forAll (Arb.fromGen bnShapeGen) (fun (shape, seed, scale, shift) ->
        let c = shape.[1]
        let bn = Normalization.batchNorm c
        let x = randn64 seed shape * scale + shift
        let y, _ = bn.Apply (vars64 (bn.Init(Random.key 0UL))) (trainCtx 0UL) x
        let xs, ys = Tensor.toArray64 x, Tensor.toArray64 y

        for ch in 0 .. c - 1 do
            let v = biasedVar (channelValues xs shape ch)
            let yc = channelValues ys shape ch
            ensure (abs (meanOf yc) < 1e-9) (sprintf "channel %d mean %g" ch (meanOf yc))
            // the biased variance of (x − μ)/√(σ² + ε) is σ²/(σ² + ε) (ε = 1e-5, PyTorch)
            let expected = v / (v + 1e-5)
            ensure (abs (biasedVar yc - expected) < 1e-9) (sprintf "channel %d variance %g" ch (biasedVar yc))
            ensure (abs (biasedVar yc - 1.0) < 1e-2 || v < 1e-3) "variance ≈ 1")
    |> Prop.check "batch norm normalises"

[<Fact>]
let ``BatchNorm running statistics follow the momentum rule (PyTorch unbiased, Keras biased)`` () =
    Prop.forAll (Arb.fromGen bnShapeGen) (fun (shape, seed, scale, shift) ->
        let c = shape.[1]
        let count = Shape.numel shape / c
        // PyTorch: momentum 0.1, running_var updated with the unbiased variance (n/(n − 1));
        // Keras momentum 0.8 = PyTorch 0.2 with the biased variance.
        for config, m, unbiased in
            [
                Normalization.batchNormConfig c, 0.1, true
                Normalization.kerasBatchNormConfig c 0.8 1e-3, 0.2, false
            ] do
            let bn = Normalization.batchNormWith config
            let v0 = vars64 (bn.Init(Random.key 0UL))
            let x1 = randn64 seed shape * scale + shift
            let x2 = randn64 (seed + 1) shape * (scale * 2.0) - shift
            let _, v1 = Layer.run bn v0 (trainCtx 0UL) x1
            let _, v2 = Layer.run bn v1 (trainCtx 0UL) x2

            let batchStats (x: Tensor) =
                let xs = Tensor.toArray64 x

                Array.init c (fun ch ->
                    let vals = channelValues xs shape ch
                    let bv = biasedVar vals

                    meanOf vals,
                    (if unbiased then
                         bv * float count / float (count - 1)
                     else
                         bv))

            let s1, s2 = batchStats x1, batchStats x2
            let rm1 = s1 |> Array.map (fun (mu, _) -> (1.0 - m) * 0.0 + m * mu)
            let rv1 = s1 |> Array.map (fun (_, v) -> (1.0 - m) * 1.0 + m * v)
            let rm2 = Array.map2 (fun r (mu, _) -> (1.0 - m) * r + m * mu) rm1 s2
            let rv2 = Array.map2 (fun r (_, v) -> (1.0 - m) * r + m * v) rv1 s2
            close 1e-12 "running_mean 1" rm1 (Tensor.toArray64 v1.State.["running_mean"])
            close 1e-12 "running_var 1" rv1 (Tensor.toArray64 v1.State.["running_var"])
            close 1e-12 "running_mean 2" rm2 (Tensor.toArray64 v2.State.["running_mean"])
            close 1e-12 "running_var 2" rv2 (Tensor.toArray64 v2.State.["running_var"]))
    |> Prop.checkN "batch norm running statistics" 50

[<Fact>]
let ``BatchNorm in eval mode normalises with the running statistics and leaves them alone`` () =
    let bn =
        Normalization.kerasBatchNormConfig 2 0.99 1e-3 |> Normalization.batchNormWith

    let rm, rv, w, b = [| 1.0; -2.0 |], [| 4.0; 0.25 |], [| 2.0; 0.5 |], [| 0.5; -1.0 |]

    let v = {
        Params = Map.ofList [ "weight", Tensor.ofArray64 [| 2 |] w; "bias", Tensor.ofArray64 [| 2 |] b ]
        State =
            Map.ofList [
                "running_mean", Tensor.ofArray64 [| 2 |] rm
                "running_var", Tensor.ofArray64 [| 2 |] rv
            ]
    }

    let shape = [| 3; 2; 2; 2 |]
    let x = randn64 21 shape
    let y, s = bn.Apply v evalCtx x
    Assert.True(s.IsEmpty, "eval mode returns no state")
    let xs, ys = Tensor.toArray64 x, Tensor.toArray64 y

    for ch in 0..1 do
        let expected =
            channelValues xs shape ch
            |> Array.map (fun xv -> (xv - rm.[ch]) / sqrt (rv.[ch] + 1e-3) * w.[ch] + b.[ch])

        close 1e-12 (sprintf "channel %d" ch) expected (channelValues ys shape ch)
    // a single example is fine in eval mode (no batch statistics), an error in train mode
    let one, _ = bn.Apply v evalCtx (randn64 22 [| 1; 2 |])
    Assert.Equal<int[]>([| 1; 2 |], Tensor.shape one)

    Assert.Throws<ShapeMismatchException>(Action(fun () -> bn.Apply v (trainCtx 0UL) (randn64 22 [| 1; 2 |]) |> ignore))
    |> ignore

// ------------------------------------------------------------------------------ Dropout

[<Fact>]
let ``Dropout is the identity in eval mode and with p = 0`` () =
    let x = randn64 30 [| 4; 5 |]
    let y, _ = (Layers.dropout 0.5).Apply Layer.emptyVariables evalCtx x
    Assert.Equal<float[]>(Tensor.toArray64 x, Tensor.toArray64 y)
    let y0, _ = (Layers.dropout 0.0).Apply Layer.emptyVariables (trainCtx 1UL) x
    Assert.Equal<float[]>(Tensor.toArray64 x, Tensor.toArray64 y0)

    Assert.Throws<ArgumentException>(Action(fun () -> Layers.dropout 1.0 |> ignore))
    |> ignore

    Assert.Throws<ArgumentException>(Action(fun () -> Layers.dropout -0.1 |> ignore))
    |> ignore

[<Fact>]
let ``Dropout in train mode zeroes a fraction p and scales the rest by 1 over (1 - p), keeping the mean`` () =
    let n = 100_000
    let x = Tensor.ones [| 100; 1000 |]

    for p in [ 0.1; 0.25; 0.5; 0.8 ] do
        let y, _ =
            (Layers.dropout p).Apply Layer.emptyVariables (trainCtx (uint64 (p * 100.0))) x

        let ys = Tensor.toArray64 y
        let zeros = ys |> Array.filter (fun v -> v = 0.0) |> Array.length
        let frac = float zeros / float n
        // binomial standard deviation √(p(1 − p)/n) ≤ 0.0016: allow ~6σ
        Assert.True(abs (frac - p) < 0.01, sprintf "p = %g: zero fraction %g" p frac)
        let kept = 1.0 / (1.0 - p)

        for v in ys do
            if v <> 0.0 && abs (v - kept) > 1e-6 * kept then
                failwithf "p = %g: kept value %g, expected %g" p v kept

        let mean = Array.average ys
        // E = 1; standard deviation of the mean √(p/(1 − p)/n) ≤ 0.0064 at p = 0.8
        Assert.True(abs (mean - 1.0) < 0.03, sprintf "p = %g: mean %g" p mean)

[<Fact>]
let ``Dropout masks are a function of the key`` () =
    let x = randn64 31 [| 8; 8 |]
    let d = Layers.dropout 0.5
    let a, _ = d.Apply Layer.emptyVariables (trainCtx 1UL) x
    let b, _ = d.Apply Layer.emptyVariables (trainCtx 1UL) x
    let c, _ = d.Apply Layer.emptyVariables (trainCtx 2UL) x
    Assert.Equal<float[]>(Tensor.toArray64 a, Tensor.toArray64 b)
    Assert.NotEqual<float[]>(Tensor.toArray64 a, Tensor.toArray64 c)

// ------------------------------------------------------------------------------ minibatch discrimination

[<Fact>]
let ``minibatch discrimination equals a direct loop over Salimans et al.'s o_b(x_i)`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! n = Gen.choose (1, 5)
                let! i = Gen.choose (1, 6)
                let! b = Gen.choose (1, 4)
                let! c = Gen.choose (1, 4)
                let! seed = Gen.choose (0, 100000)
                return n, i, b, c, seed
            }
        ))
        (fun (n, inF, kernels, dim, seed) ->
            let layer = MinibatchDiscrimination.layer inF kernels dim
            let v = vars64 (layer.Init(Random.key (uint64 seed)))

            ensure
                (shapesOf v.Params = [ "lin.bias", [| kernels * dim |]; "lin.weight", [| kernels * dim; inF |] ])
                "names"

            let x = randn64 (seed + 1) [| n; inF |] * 0.5
            let y, s = layer.Apply v (trainCtx 0UL) x
            ensure s.IsEmpty "no state"
            ensure (Tensor.shape y = [| n; kernels + inF |]) "shape"
            let xs = Tensor.toArray64 x
            let w = Tensor.toArray64 v.Params.["lin.weight"]
            let bias = Tensor.toArray64 v.Params.["lin.bias"]
            // M_i = x_i·Wᵀ + b, rows of B kernels × C dims
            let m =
                Array.init n (fun r ->
                    Array.init (kernels * dim) (fun o ->
                        bias.[o]
                        + Array.sum (Array.init inF (fun k -> xs.[r * inF + k] * w.[o * inF + k]))))

            let expected = [|
                for r in 0 .. n - 1 do
                    for b in 0 .. kernels - 1 do
                        let l1 j =
                            Array.sum (Array.init dim (fun k -> abs (m.[r].[b * dim + k] - m.[j].[b * dim + k])))

                        yield
                            Array.sum [|
                                for j in 0 .. n - 1 do
                                    if j <> r then
                                        yield exp (-(l1 j))
                            |]

                    yield! xs.[r * inF .. r * inF + inF - 1]
            |]

            close 1e-12 "mbd" expected (Tensor.toArray64 y))
    |> Prop.check "minibatch discrimination"

// ------------------------------------------------------------------------------ embedding

[<Fact>]
let ``embedding looks up rows of its weight for indices of any shape`` () =
    let emb = Layers.embedding 5 3
    let v = emb.Init(Random.key 40UL)
    let w = Tensor.toArray64 v.Params.["weight"]
    Assert.Equal<int[]>([| 5; 3 |], Tensor.shape v.Params.["weight"])
    let idx = [| 4; 0; 4; 2 |]

    let y, _ =
        emb.Apply v evalCtx (Tensor.ofArray [| 2; 2 |] (idx |> Array.map float32))

    Assert.Equal<int[]>([| 2; 2; 3 |], Tensor.shape y)
    let expected = idx |> Array.collect (fun i -> w.[3 * i .. 3 * i + 2])
    Assert.Equal<float[]>(expected, Tensor.toArray64 y)
    // PyTorch's Embedding draws its weight from N(0, 1)
    let big =
        Tensor.toArray64 ((Layers.embedding 1000 20).Init(Random.key 41UL)).Params.["weight"]

    let m = Array.average big
    let sd = sqrt (big |> Array.averageBy (fun v -> (v - m) * (v - m)))
    Assert.True(abs m < 0.03 && abs (sd - 1.0) < 0.03, sprintf "mean %g std %g" m sd)

    Assert.Throws<ShapeMismatchException>(
        Action(fun () -> emb.Apply v evalCtx (Tensor.ofArray [| 1 |] [| 5.0f |]) |> ignore)
    )
    |> ignore

// ------------------------------------------------------------------------------ spectral norm

/// The largest singular value of a rows×cols matrix (row-major): power iteration on AᵀA.
let private largestSingularValue (rows: int) (cols: int) (a: float[]) =
    let mutable v = Array.init cols (fun i -> 1.0 + 0.1 * float i)

    for _ in 1..5000 do
        let av =
            Array.init rows (fun r -> Array.sum (Array.init cols (fun c -> a.[r * cols + c] * v.[c])))

        let atav =
            Array.init cols (fun c -> Array.sum (Array.init rows (fun r -> a.[r * cols + c] * av.[r])))

        let norm = sqrt (Array.sumBy (fun x -> x * x) atav)
        v <- atav |> Array.map (fun x -> x / norm)

    let av =
        Array.init rows (fun r -> Array.sum (Array.init cols (fun c -> a.[r * cols + c] * v.[c])))

    sqrt (Array.sumBy (fun x -> x * x) av)

/// The effective weight [out, in] a spectrally normalised bias-free Linear uses, read off its
/// output on the identity (y = I·(W/σ)ᵀ) in eval mode.
let private effectiveWeight (layer: Layer) (v: Variables) (inF: int) =
    let y, _ = layer.Apply v evalCtx (f64 (Tensor.eye inF))
    Tensor.toArray64 (Tensor.t y), (Tensor.shape y).[1]

[<Fact>]
let ``spectral norm keeps PyTorch's names and a unit vector u as state`` () =
    let sn = Normalization.spectralNorm (Layers.linear 4 3)
    let v = sn.Init(Random.key 50UL)
    Assert.Equal<string list>([ "bias"; "weight_orig" ], v.Params |> Map.keys |> List.ofSeq)
    Assert.Equal<string list>([ "weight_u" ], v.State |> Map.keys |> List.ofSeq)
    let u = Tensor.toArray64 v.State.["weight_u"]
    Assert.Equal(3, u.Length)
    Assert.True(abs (sqrt (Array.sumBy (fun x -> x * x) u) - 1.0) < 1e-6)
    // eval mode neither updates nor returns u
    let _, s = sn.Apply v evalCtx (Tensor.zeros [| 1; 4 |])
    Assert.True(s.IsEmpty)

[<Fact>]
let ``spectral norm of diag(3, 2, 1) converges to diag(1, 2 over 3, 1 over 3)`` () =
    let sn =
        Normalization.spectralNorm (
            Layers.linearWith {
                Layers.linearConfig 3 3 with
                    Bias = false
            }
        )

    let v0 = vars64 (sn.Init(Random.key 51UL))

    let v0 = {
        v0 with
            Params =
                Map.ofList [
                    "weight_orig", Tensor.ofArray64 [| 3; 3 |] [| 3.0; 0.0; 0.0; 0.0; 2.0; 0.0; 0.0; 0.0; 1.0 |]
                ]
    }

    let mutable v = v0

    for i in 1..60 do
        let _, next = Layer.run sn v (trainCtx (uint64 i)) (randn64 i [| 2; 3 |])
        v <- next

    let w, _ = effectiveWeight sn v 3
    // σ₂/σ₁ = 2/3: the iteration error shrinks by (2/3)² per call, ~1e-21 after 60 calls
    close 1e-9 "W/σ" [| 1.0; 0.0; 0.0; 0.0; 2.0 / 3.0; 0.0; 0.0; 0.0; 1.0 / 3.0 |] w

[<Fact>]
let ``after many train-mode calls a spectrally normalised weight has largest singular value 1`` () =
    Prop.forAll
        (Arb.fromGen (
            gen {
                let! o = Gen.choose (1, 5)
                let! i = Gen.choose (1, 6)
                let! seed = Gen.choose (0, 10000)
                return o, i, seed
            }
        ))
        (fun (outF, inF, seed) ->
            let sn =
                Normalization.spectralNorm (
                    Layers.linearWith {
                        Layers.linearConfig inF outF with
                            Bias = false
                    }
                )

            let v0 = vars64 (sn.Init(Random.key (uint64 seed)))
            let raw = Tensor.toArray64 v0.Params.["weight_orig"]
            let sigma = largestSingularValue outF inF raw
            let mutable v = v0

            for _ in 1..300 do
                let _, next = Layer.run sn v (trainCtx 0UL) (randn64 1 [| 1; inF |])
                v <- next

            let w, _ = effectiveWeight sn v inF
            let s = largestSingularValue outF inF w
            ensure (abs (s - 1.0) < 1e-3) (sprintf "σ(W/σ̂) = %g (σ(W) = %g)" s sigma)
            // and the effective weight is W scaled by one factor
            close 1e-3 "W/σ" (raw |> Array.map (fun x -> x / sigma)) w)
    |> Prop.checkN "spectral norm converges" 30

// ------------------------------------------------------------------------------ initializers

let private stats (xs: float[]) =
    let m = Array.average xs
    m, sqrt (xs |> Array.averageBy (fun v -> (v - m) * (v - m)))

[<Fact>]
let ``TorchDefault draws U(-1 over √fanIn, 1 over √fanIn) and the layers use PyTorch's fan-in`` () =
    let xs =
        Tensor.toArray64 (Init.draw TorchDefault (Random.key 60UL) 48 [| 100; 200 |])

    let bound = 1.0 / sqrt 48.0
    Assert.True(xs |> Array.forall (fun v -> abs v <= bound), "within the bound")
    Assert.True(Array.max xs > 0.99 * bound && Array.min xs < -0.99 * bound, "fills the interval")
    let m, s = stats xs
    // U(−b, b): mean 0, standard deviation b/√3
    Assert.True(abs m < 0.01 * bound, sprintf "mean %g" m)
    Assert.True(abs (s / (bound / sqrt 3.0) - 1.0) < 0.02, sprintf "std %g" s)

    let within (what: string) (fanIn: int) (t: Tensor) =
        let b = 1.0 / sqrt (float fanIn)
        let vs = Tensor.toArray64 t
        Assert.True(vs |> Array.forall (fun v -> abs v <= b), sprintf "%s within ±1/√%d" what fanIn)
        vs

    let lin = (Layers.linear 20 30).Init(Random.key 61UL)
    within "linear weight" 20 lin.Params.["weight"] |> ignore
    within "linear bias" 20 lin.Params.["bias"] |> ignore
    let conv = (Layers.conv2d 3 8 5 1 Valid).Init(Random.key 62UL)
    within "conv weight" 75 conv.Params.["weight"] |> ignore
    within "conv bias" 75 conv.Params.["bias"] |> ignore
    // PyTorch's ConvTranspose2d computes fan-in from weight.size(1)·k·k = out·k·k = 4·9
    let convT = (Layers.convTranspose2d 6 4 3 1 Valid).Init(Random.key 63UL)
    let ws = within "conv transpose weight" 36 convT.Params.["weight"]
    // 216 draws from U(±1/6) all inside ±1/√54 would have probability ~1e-19
    Assert.True(ws |> Array.exists (fun v -> abs v > 1.0 / sqrt 54.0), "fan-in is out·k·k, not in·k·k")

[<Fact>]
let ``Normal(0, 0.02) has standard deviation 0.02 and TruncatedNormal stays within two sigma`` () =
    let n =
        Tensor.toArray64 (Init.draw (Normal(0.0, 0.02)) (Random.key 70UL) 0 [| 200; 100 |])

    let m, s = stats n
    // 20,000 draws: the mean's standard error is 1.4e-4, the std's relative error 0.5%
    Assert.True(abs m < 1e-3, sprintf "mean %g" m)
    Assert.True(abs (s / 0.02 - 1.0) < 0.03, sprintf "std %g" s)

    let t =
        Tensor.toArray64 (Init.draw (TruncatedNormal 0.02) (Random.key 71UL) 0 [| 200; 100 |])

    Assert.True(t |> Array.forall (fun v -> abs v <= 0.04 + 1e-9), "within ±2σ")
    let tm, ts = stats t
    // N(0, 1) truncated to ±2 has std √(1 − 4φ(2)/(2Φ(2) − 1)) = 0.8796
    Assert.True(abs tm < 1e-3, sprintf "truncated mean %g" tm)
    Assert.True(abs (ts / (0.02 * 0.8796) - 1.0) < 0.03, sprintf "truncated std %g" ts)
    let c = Tensor.toArray64 (Init.draw (Constant 0.25) (Random.key 72UL) 0 [| 3; 2 |])
    Assert.Equal<float[]>(Array.create 6 0.25, c)

[<Fact>]
let ``BatchNorm initialises weight from its ScaleInit (DCGAN's N(1, 0.02)), bias 0 and running stats 0 and 1`` () =
    let bn =
        Normalization.batchNormWith {
            Normalization.batchNormConfig 4096 with
                ScaleInit = Normal(1.0, 0.02)
        }

    let v = bn.Init(Random.key 80UL)
    let m, s = stats (Tensor.toArray64 v.Params.["weight"])
    Assert.True(abs (m - 1.0) < 0.002, sprintf "mean %g" m)
    Assert.True(abs (s / 0.02 - 1.0) < 0.06, sprintf "std %g" s)
    Assert.True(Tensor.toArray64 v.Params.["bias"] |> Array.forall ((=) 0.0))
    Assert.True(Tensor.toArray64 v.State.["running_mean"] |> Array.forall ((=) 0.0))
    Assert.True(Tensor.toArray64 v.State.["running_var"] |> Array.forall ((=) 1.0))
    // PyTorch's default: weight 1
    let d = (Normalization.batchNorm 3).Init(Random.key 81UL)
    Assert.Equal<float[]>([| 1.0; 1.0; 1.0 |], Tensor.toArray64 d.Params.["weight"])
