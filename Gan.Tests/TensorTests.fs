/// Forward semantics of the public Tensor module on small known values. Where each expected
/// number comes from is stated: worked by hand, or the documented behaviour of NumPy / PyTorch
/// (whose conventions the module follows: broadcasting, keepdim, unbiased var, ZeroPad2d order,
/// repeat, gather, conv output-size formulas, align_corners=False bilinear).
module TensorTests

open System
open Xunit
open Gan.Functional

/// Asserts shape and values (compared as float64 within 1e-6, so float32 results of exact
/// binary fractions compare exactly and others within rounding).
let private expectT (shape: int[]) (expected: float[]) (t: Tensor) =
    Assert.Equal<int[]>(shape, Tensor.shape t)
    let got = Tensor.toArray64 t
    Assert.Equal(expected.Length, got.Length)

    for i in 0 .. expected.Length - 1 do
        if abs (expected.[i] - got.[i]) > 1e-6 * (1.0 + abs expected.[i]) then
            failwithf "element %d: expected %.9g, got %.9g (all: %A)" i expected.[i] got.[i] got

let private f64 (shape: int[]) (data: float[]) = Tensor.ofArray64 shape data

/// 0, 1, …, n − 1 in `shape` (float32).
let private iota (shape: int[]) =
    Tensor.arange (Shape.numel shape) |> Tensor.reshape shape

/// Runs `f`, which must throw ShapeMismatchException; checks the message contains every fragment.
let private expectShapeError (fragments: string list) (f: unit -> 'a) =
    let e = Assert.Throws<ShapeMismatchException>(Action(fun () -> f () |> ignore))

    for s in fragments do
        Assert.True(e.Message.Contains s, sprintf "message %A does not contain %A" e.Message s)

// ------------------------------------------------------------------------------ creation

[<Fact>]
let ``create reads the shape off nested lists, arrays and 2-D arrays`` () =
    Tensor.create [ [ 1.0; 2.0; 3.0 ]; [ 4.0; 5.0; 6.0 ] ]
    |> expectT [| 2; 3 |] [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0 |]

    Tensor.create [| [| 1; 2 |]; [| 3; 4 |]; [| 5; 6 |] |]
    |> expectT [| 3; 2 |] [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0 |]

    Tensor.create (array2D [ [ 1.0f; 2.0f ]; [ 3.0f; 4.0f ] ])
    |> expectT [| 2; 2 |] [| 1.0; 2.0; 3.0; 4.0 |]

    // a list of 2-D arrays: [2] ++ [2x2]
    Tensor.create [ array2D [ [ 1; 2 ]; [ 3; 4 ] ]; array2D [ [ 5; 6 ]; [ 7; 8 ] ] ]
    |> expectT [| 2; 2; 2 |] [| 1.0 .. 8.0 |]

    // .NET 3-D array, row-major
    Tensor.create (Array3D.init 2 1 3 (fun i _ k -> float (10 * i + k)))
    |> expectT [| 2; 1; 3 |] [| 0.0; 1.0; 2.0; 10.0; 11.0; 12.0 |]

    let s = Tensor.create 2.5
    expectT [||] [| 2.5 |] s
    Assert.Equal(Float32, Tensor.dtype s)
    Assert.Equal(Float64, Tensor.dtype (Tensor.createAs Float64 [ 1.0 ]))
    // 0.1 is kept exactly in float64 (not routed through float32)
    Assert.Equal(0.1, (Tensor.createAs Float64 [ 0.1 ] |> Tensor.toArray64).[0])
    expectT [| 0 |] [||] (Tensor.create ([]: float list))

[<Fact>]
let ``create rejects ragged data and unsupported element types`` () =
    expectShapeError [ "create"; "ragged" ] (fun () -> Tensor.create [ [ 1.0; 2.0 ]; [ 3.0 ] ])
    expectShapeError [ "create" ] (fun () -> Tensor.create [ "a"; "b" ])

[<Fact>]
let ``zeros ones full arange and eye`` () =
    expectT [| 2; 3 |] (Array.zeroCreate 6) (Tensor.zeros [| 2; 3 |])
    expectT [| 3 |] [| 1.0; 1.0; 1.0 |] (Tensor.ones [| 3 |])
    expectT [| 2; 2 |] [| 7.5; 7.5; 7.5; 7.5 |] (Tensor.full [| 2; 2 |] 7.5)
    Assert.Equal(Float64, Tensor.dtype (Tensor.fullAs Float64 [| 1 |] 0.0))
    expectT [| 2 |] [| -1.0; -1.0 |] (Tensor.fullLike (f64 [| 2 |] [| 3.0; 4.0 |]) -1.0)
    Assert.Equal(Float64, Tensor.dtype (Tensor.zerosLike (f64 [| 2 |] [| 3.0; 4.0 |])))
    // NumPy arange: [start, stop) by step, length ceil((stop − start) / step)
    expectT [| 5 |] [| 0.0; 1.0; 2.0; 3.0; 4.0 |] (Tensor.arange 5)
    expectT [| 4 |] [| 1.0; 1.25; 1.5; 1.75 |] (Tensor.arangeFrom 1.0 2.0 0.25)
    expectT [| 3 |] [| 5.0; 3.0; 1.0 |] (Tensor.arangeFrom 5.0 0.0 -2.0)
    expectT [| 0 |] [||] (Tensor.arange 0)
    expectT [| 3; 3 |] [| 1.0; 0.0; 0.0; 0.0; 1.0; 0.0; 0.0; 0.0; 1.0 |] (Tensor.eye 3)
    expectShapeError [ "arange"; "step" ] (fun () -> Tensor.arangeFrom 0.0 1.0 0.0)

// ------------------------------------------------------------------------------ elementwise

[<Fact>]
let ``binary ops broadcast as NumPy`` () =
    // [2x1] + [3] → [2x3]: a column plus a row
    let col = Tensor.create [ [ 10.0 ]; [ 20.0 ] ]
    let row = Tensor.create [ 1.0; 2.0; 3.0 ]
    expectT [| 2; 3 |] [| 11.0; 12.0; 13.0; 21.0; 22.0; 23.0 |] (col + row)
    expectT [| 2; 3 |] [| 9.0; 8.0; 7.0; 19.0; 18.0; 17.0 |] (col - row)
    expectT [| 2; 3 |] [| 10.0; 20.0; 30.0; 20.0; 40.0; 60.0 |] (col * row)
    expectT [| 2; 3 |] [| 10.0; 5.0; 10.0 / 3.0; 20.0; 10.0; 20.0 / 3.0 |] (col / row)
    // missing leading axes: [2x1x3] with [2x3] → [2x2x3]
    let a = iota [| 2; 1; 3 |]
    let b = Tensor.create [ [ 0.0; 0.0; 0.0 ]; [ 100.0; 100.0; 100.0 ] ]

    expectT [| 2; 2; 3 |] [| 0.0; 1.0; 2.0; 100.0; 101.0; 102.0; 3.0; 4.0; 5.0; 103.0; 104.0; 105.0 |] (a + b)
    // scalars on either side
    expectT [| 3 |] [| 0.0; -1.0; -2.0 |] (1.0 - row)
    expectT [| 3 |] [| 2.0; 1.0; 2.0 / 3.0 |] (2.0 / row)
    expectT [| 3 |] [| 1.0; 8.0; 27.0 |] (row ** 3.0)
    expectT [| 3 |] [| 1.0; 4.0; 27.0 |] (Tensor.pow row row)
    expectShapeError [ "add"; "[2x3]"; "[2]" ] (fun () -> Tensor.zeros [| 2; 3 |] + Tensor.zeros [| 2 |])

[<Fact>]
let ``elementwise functions on known values`` () =
    let x = f64 [| 5 |] [| -2.0; -0.5; 0.0; 0.5; 2.0 |]
    expectT [| 5 |] [| 0.0; 0.0; 0.0; 0.5; 2.0 |] (Tensor.relu x)
    expectT [| 5 |] [| -0.2; -0.05; 0.0; 0.5; 2.0 |] (Tensor.leakyRelu 0.1 x)
    expectT [| 5 |] [| -1.0; -0.5; 0.0; 0.5; 1.0 |] (Tensor.clamp -1.0 1.0 x)
    expectT [| 5 |] [| -1.0; -1.0; 0.0; 1.0; 1.0 |] (Tensor.sign x)
    expectT [| 5 |] [| 2.0; 0.5; 0.0; 0.5; 2.0 |] (Tensor.abs x)
    expectT [| 5 |] [| 4.0; 0.25; 0.0; 0.25; 4.0 |] (Tensor.square x)
    expectT [| 5 |] (Array.map tanh [| -2.0; -0.5; 0.0; 0.5; 2.0 |]) (Tensor.tanh x)
    expectT [| 5 |] (Array.map (fun v -> 1.0 / (1.0 + exp -v)) [| -2.0; -0.5; 0.0; 0.5; 2.0 |]) (Tensor.sigmoid x)
    expectT [| 5 |] (Array.map (fun v -> log (1.0 + exp v)) [| -2.0; -0.5; 0.0; 0.5; 2.0 |]) (Tensor.softplus x)
    expectT [| 5 |] (Array.map (fun v -> -log(1.0 + exp -v)) [| -2.0; -0.5; 0.0; 0.5; 2.0 |]) (Tensor.logSigmoid x)
    let y = f64 [| 5 |] [| 0.0; 0.0; 0.0; 1.0; 1.0 |]
    expectT [| 5 |] [| 0.0; 0.0; 0.0; 1.0; 2.0 |] (Tensor.maximum x y)
    expectT [| 5 |] [| -2.0; -0.5; 0.0; 0.5; 1.0 |] (Tensor.minimum x y)
    expectT [| 5 |] [| 0.0; 0.0; 1.0; 0.0; 0.0 |] (Tensor.eq x y)
    expectT [| 5 |] [| 1.0; 1.0; 0.0; 1.0; 0.0 |] (Tensor.lt x y)
    expectT [| 5 |] [| 1.0; 1.0; 1.0; 1.0; 0.0 |] (Tensor.le x y)
    expectT [| 5 |] [| 0.0; 0.0; 0.0; 0.0; 1.0 |] (Tensor.gt x y)
    expectT [| 5 |] [| 0.0; 0.0; 1.0; 0.0; 1.0 |] (Tensor.ge x y)
    // where broadcasts all three: a [2x1] mask, a [3] branch and a scalar branch
    let mask = Tensor.create [ [ 1.0 ]; [ 0.0 ] ]

    expectT
        [| 2; 3 |]
        [| 1.0; 2.0; 3.0; -1.0; -1.0; -1.0 |]
        (Tensor.where mask (Tensor.create [ 1.0; 2.0; 3.0 ]) (Tensor.scalar -1.0))

[<Fact>]
let ``sigmoid softplus and logSigmoid stay finite at plus and minus 100`` () =
    // σ(100) = 1 to double precision, σ(−100) = e^−100/(1 + e^−100) ≈ 3.72e−44 (not 0/0 or NaN);
    // softplus(100) = 100 + ln(1 + e^−100) = 100, softplus(−100) = ln(1 + e^−100) ≈ 3.72e−44 ≈ 0
    let x = f64 [| 2 |] [| 100.0; -100.0 |]
    let s = Tensor.sigmoid x |> Tensor.toArray64
    Assert.Equal(1.0, s.[0])
    Assert.True(abs (s.[1] - exp -100.0) <= 1e-6 * exp -100.0, sprintf "sigmoid(-100) = %g" s.[1])
    let sp = Tensor.softplus x |> Tensor.toArray64
    Assert.Equal(100.0, sp.[0])
    Assert.True(sp.[1] >= 0.0 && sp.[1] <= 1e-40, sprintf "softplus(-100) = %g" sp.[1])
    let ls = Tensor.logSigmoid x |> Tensor.toArray64
    Assert.True(ls.[0] <= 0.0 && ls.[0] >= -1e-40, sprintf "logSigmoid(100) = %g" ls.[0])
    Assert.Equal(-100.0, ls.[1])
    // float32: the same, and no inf/NaN anywhere (e^100 overflows float32)
    for t in [ Tensor.sigmoid; Tensor.softplus; Tensor.logSigmoid ] do
        let v = t (Tensor.create [ 100.0; -100.0 ]) |> Tensor.toArray
        Assert.True(v |> Array.forall Single.IsFinite, sprintf "%A" v)

// ------------------------------------------------------------------------------ reductions

[<Fact>]
let ``sum mean max and min over axes with keepDim`` () =
    // x = [[0, 1, 2], [3, 4, 5]]
    let x = iota [| 2; 3 |]
    expectT [||] [| 15.0 |] (Tensor.sum x)
    expectT [| 3 |] [| 3.0; 5.0; 7.0 |] (Tensor.sumAxes [| 0 |] false x)
    expectT [| 1; 3 |] [| 3.0; 5.0; 7.0 |] (Tensor.sumAxes [| 0 |] true x)
    expectT [| 2; 1 |] [| 3.0; 12.0 |] (Tensor.sumAxes [| -1 |] true x)
    expectT [| 1; 1 |] [| 15.0 |] (Tensor.sumAxes [| 0; 1 |] true x)
    expectT [||] [| 2.5 |] (Tensor.mean x)
    expectT [| 2 |] [| 1.0; 4.0 |] (Tensor.meanAxes [| 1 |] false x)
    expectT [| 1; 3 |] [| 1.5; 2.5; 3.5 |] (Tensor.meanAxes [| 0 |] true x)
    expectT [||] [| 5.0 |] (Tensor.max x)
    expectT [||] [| 0.0 |] (Tensor.min x)
    expectT [| 2 |] [| 2.0; 5.0 |] (Tensor.maxAxes [| 1 |] false x)
    expectT [| 1; 3 |] [| 0.0; 1.0; 2.0 |] (Tensor.minAxes [| 0 |] true x)
    expectShapeError [ "sum"; "axis 2" ] (fun () -> Tensor.sumAxes [| 2 |] false x)

[<Fact>]
let ``var is unbiased by default and biased on request`` () =
    // [1, 2, 3, 4]: mean 2.5, Σ(x − mean)² = 2.25 + 0.25 + 0.25 + 2.25 = 5
    // unbiased 5 / 3 (PyTorch's default, NumPy ddof=1), biased 5 / 4 = 1.25 (NumPy's default)
    let x = f64 [| 4 |] [| 1.0; 2.0; 3.0; 4.0 |]
    expectT [||] [| 5.0 / 3.0 |] (Tensor.var x)
    expectT [||] [| 1.25 |] (Tensor.varAxes [||] false false x)
    // per row of [[1, 2, 3], [2, 4, 6]]: unbiased 1 and 4; biased 2/3 and 8/3
    let m = f64 [| 2; 3 |] [| 1.0; 2.0; 3.0; 2.0; 4.0; 6.0 |]
    expectT [| 2 |] [| 1.0; 4.0 |] (Tensor.varAxes [| 1 |] false true m)
    expectT [| 2; 1 |] [| 2.0 / 3.0; 8.0 / 3.0 |] (Tensor.varAxes [| 1 |] true false m)

[<Fact>]
let ``argmax returns the first maximum along an axis`` () =
    // [[1, 5, 5], [7, 0, 2]]: along axis 1 → [1, 0] (the first of the tied 5s, as NumPy);
    // along axis 0 → [1, 0, 0]
    let x = Tensor.create [ [ 1.0; 5.0; 5.0 ]; [ 7.0; 0.0; 2.0 ] ]
    Assert.Equal<int[]>([| 1; 0 |], Tensor.argmax 1 x)
    Assert.Equal<int[]>([| 1; 0 |], Tensor.argmax -1 x)
    Assert.Equal<int[]>([| 1; 0; 0 |], Tensor.argmax 0 x)

[<Fact>]
let ``logsumexp of large values does not overflow`` () =
    // ln(e¹⁰⁰⁰ + e¹⁰⁰⁰) = 1000 + ln 2, though e¹⁰⁰⁰ itself overflows; likewise −1000 + ln 2
    let x = f64 [| 2 |] [| 1000.0; 1000.0 |]
    expectT [||] [| 1000.0 + log 2.0 |] (Tensor.logsumexp [||] false x)
    expectT [||] [| -1000.0 + log 2.0 |] (Tensor.logsumexp [||] false (-x))
    // and its gradient is the softmax, (0.5, 0.5)
    expectT [| 2 |] [| 0.5; 0.5 |] (Autodiff.grad (Tensor.logsumexp [||] false) x)
    // per row with keepDim: [[0, ln 3], [1000, 1000]] → [[ln 4], [1000 + ln 2]]
    let m = f64 [| 2; 2 |] [| 0.0; log 3.0; 1000.0; 1000.0 |]
    expectT [| 2; 1 |] [| log 4.0; 1000.0 + log 2.0 |] (Tensor.logsumexp [| 1 |] true m)
    // float32 too (e^1000 is inf there as well)
    expectT [||] [| 1000.0 + log 2.0 |] (Tensor.logsumexp [||] false (Tensor.create [ 1000.0; 1000.0 ]))

// ------------------------------------------------------------------------------ structure

[<Fact>]
let ``reshape infers one -1 dimension`` () =
    let x = iota [| 2; 3; 4 |]
    Assert.Equal<int[]>([| 6; 4 |], Tensor.shape (Tensor.reshape [| -1; 4 |] x))
    Assert.Equal<int[]>([| 2; 12 |], Tensor.shape (Tensor.reshape [| 2; -1 |] x))
    expectT [| 24 |] [| 0.0 .. 23.0 |] (Tensor.reshape [| -1 |] x)
    Assert.Equal<int[]>([| 2; 12 |], Tensor.shape (Tensor.flatten 1 x))
    Assert.Equal<int[]>([| 2; 1; 3; 4 |], Tensor.shape (Tensor.unsqueeze 1 x))
    Assert.Equal<int[]>([| 2; 3; 4; 1 |], Tensor.shape (Tensor.unsqueeze -1 x))
    Assert.Equal<int[]>([| 3; 8 |], Tensor.shape (Tensor.squeeze 0 (Tensor.reshape [| 1; 3; 8 |] x)))
    expectShapeError [ "reshape"; "-1" ] (fun () -> Tensor.reshape [| -1; -1 |] x)
    expectShapeError [ "reshape"; "[2x3x4]"; "[5x5]" ] (fun () -> Tensor.reshape [| 5; 5 |] x)
    expectShapeError [ "reshape"; "[2x3x4]"; "[5x-1]" ] (fun () -> Tensor.reshape [| 5; -1 |] x)
    expectShapeError [ "squeeze"; "[2x3x4]" ] (fun () -> Tensor.squeeze 1 x)

[<Fact>]
let ``permute and transpose move elements as PyTorch`` () =
    // [[0, 1, 2], [3, 4, 5]]ᵀ = [[0, 3], [1, 4], [2, 5]]
    let x = iota [| 2; 3 |]
    expectT [| 3; 2 |] [| 0.0; 3.0; 1.0; 4.0; 2.0; 5.0 |] (Tensor.transpose 0 1 x)
    expectT [| 3; 2 |] [| 0.0; 3.0; 1.0; 4.0; 2.0; 5.0 |] (Tensor.t x)
    // permute [2, 0, 1] of a [2x3x4]: y[k, i, j] = x[i, j, k] = 12i + 4j + k
    let y = Tensor.permute [| 2; 0; 1 |] (iota [| 2; 3; 4 |])
    Assert.Equal<int[]>([| 4; 2; 3 |], Tensor.shape y)
    let ys = Tensor.toArray64 y

    for k in 0..3 do
        for i in 0..1 do
            for j in 0..2 do
                Assert.Equal(float (12 * i + 4 * j + k), ys.[k * 6 + i * 3 + j])

    expectShapeError [ "permute"; "[2x3]" ] (fun () -> Tensor.permute [| 0; 0 |] x)

[<Fact>]
let ``narrow select and slice take boxes`` () =
    // x = [[0..3], [4..7], [8..11]]
    let x = iota [| 3; 4 |]
    expectT [| 3; 2 |] [| 1.0; 2.0; 5.0; 6.0; 9.0; 10.0 |] (Tensor.narrow 1 1 2 x)
    expectT [| 4 |] [| 4.0; 5.0; 6.0; 7.0 |] (Tensor.select 0 1 x)
    expectT [| 3 |] [| 3.0; 7.0; 11.0 |] (Tensor.select 1 -1 x)
    expectT [| 2; 2 |] [| 5.0; 6.0; 9.0; 10.0 |] (Tensor.slice [| 1; 1 |] [| 3; 3 |] x)
    expectShapeError [ "slice"; "[3x4]" ] (fun () -> Tensor.narrow 1 3 2 x)
    expectShapeError [ "select"; "axis 2" ] (fun () -> Tensor.select 2 0 x)

[<Fact>]
let ``pad2d pads left right top bottom as ZeroPad2d`` () =
    // ZeroPad2d((left 1, right 0, top 0, bottom 1)) of [[1, 2], [3, 4]]
    let x = Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ]
    expectT [| 3; 3 |] [| 0.0; 1.0; 2.0; 0.0; 3.0; 4.0; 0.0; 0.0; 0.0 |] (Tensor.pad2d 1 0 0 1 x)
    // on NCHW only the last two axes are padded
    Assert.Equal<int[]>([| 2; 3; 7; 6 |], Tensor.shape (Tensor.pad2d 2 1 3 1 (Tensor.zeros [| 2; 3; 3; 3 |])))
    expectT [| 4 |] [| 0.0; 0.0; 5.0; 0.0 |] (Tensor.pad [| 2 |] [| 1 |] (Tensor.create [ 5.0 ]))
    expectShapeError [ "pad2d"; "[3]" ] (fun () -> Tensor.pad2d 1 1 1 1 (Tensor.zeros [| 3 |]))

[<Fact>]
let ``concat and stack join along existing and new axes`` () =
    let a = Tensor.create [ [ 1.0; 2.0 ] ]
    let b = Tensor.create [ [ 3.0; 4.0 ]; [ 5.0; 6.0 ] ]
    expectT [| 3; 2 |] [| 1.0 .. 6.0 |] (Tensor.concat 0 [ a; b ])

    expectT
        [| 2; 3 |]
        [| 1.0; 2.0; 5.0; 3.0; 4.0; 6.0 |]
        (Tensor.concat -1 [
            Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ]
            Tensor.create [ [ 5.0 ]; [ 6.0 ] ]
        ])

    let u, v = Tensor.create [ 1.0; 2.0 ], Tensor.create [ 3.0; 4.0 ]
    expectT [| 2; 2 |] [| 1.0; 2.0; 3.0; 4.0 |] (Tensor.stack 0 [ u; v ])
    expectT [| 2; 2 |] [| 1.0; 3.0; 2.0; 4.0 |] (Tensor.stack 1 [ u; v ])
    expectT [| 2; 2 |] [| 1.0; 3.0; 2.0; 4.0 |] (Tensor.stack -1 [ u; v ])
    expectShapeError [ "concat"; "[1x2]"; "[2x3]" ] (fun () -> Tensor.concat 0 [ a; Tensor.zeros [| 2; 3 |] ])

[<Fact>]
let ``stack of unequal shapes names stack and the given shapes`` () =
    expectShapeError [ "stack"; "[2]"; "[3]" ] (fun () -> Tensor.stack 0 [ Tensor.zeros [| 2 |]; Tensor.zeros [| 3 |] ])

[<Fact>]
let ``repeat tiles as PyTorch`` () =
    // torch.tensor([1, 2]).repeat(2, 2) = [[1, 2, 1, 2], [1, 2, 1, 2]]
    expectT
        [| 2; 4 |]
        [| 1.0; 2.0; 1.0; 2.0; 1.0; 2.0; 1.0; 2.0 |]
        (Tensor.repeat [| 2; 2 |] (Tensor.create [ 1.0; 2.0 ]))
    // [[1], [2]].repeat(1, 3) = [[1, 1, 1], [2, 2, 2]]
    expectT
        [| 2; 3 |]
        [| 1.0; 1.0; 1.0; 2.0; 2.0; 2.0 |]
        (Tensor.repeat [| 1; 3 |] (Tensor.create [ [ 1.0 ]; [ 2.0 ] ]))
    // [[1, 2], [3, 4]].repeat(2, 1) stacks the whole matrix twice
    expectT
        [| 4; 2 |]
        [| 1.0; 2.0; 3.0; 4.0; 1.0; 2.0; 3.0; 4.0 |]
        (Tensor.repeat [| 2; 1 |] (Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ]))

    expectShapeError [ "repeat" ] (fun () -> Tensor.repeat [| 2 |] (Tensor.zeros [| 2; 2 |]))

[<Fact>]
let ``gather and indexSelect pick elements as PyTorch`` () =
    // PyTorch's documented example: torch.gather([[1, 2], [3, 4]], 1, [[0, 0], [1, 0]]) = [[1, 1], [4, 3]]
    let t = Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ]
    expectT [| 2; 2 |] [| 1.0; 1.0; 4.0; 3.0 |] (Tensor.gather 1 [| 2; 2 |] [| 0; 0; 1; 0 |] t)
    // along axis 0: out[i][j] = t[index[i][j]][j]; index [[1, 0, ]] (1x2) → [[3, 2]]
    expectT [| 1; 2 |] [| 3.0; 2.0 |] (Tensor.gather 0 [| 1; 2 |] [| 1; 0 |] t)
    // index_select of rows [2, 0] and of columns [3, 3, 1] of [[0..3], [4..7], [8..11]]
    let x = iota [| 3; 4 |]
    expectT [| 2; 4 |] [| 8.0; 9.0; 10.0; 11.0; 0.0; 1.0; 2.0; 3.0 |] (Tensor.indexSelect 0 [| 2; 0 |] x)
    expectT [| 3; 3 |] [| 3.0; 3.0; 1.0; 7.0; 7.0; 5.0; 11.0; 11.0; 9.0 |] (Tensor.indexSelect 1 [| 3; 3; 1 |] x)
    expectShapeError [ "index_select"; "[3x4]" ] (fun () -> Tensor.indexSelect 0 [| 3 |] x)
    expectShapeError [ "gather"; "[3x4]" ] (fun () -> Tensor.gather 1 [| 1; 1 |] [| 4 |] x)

// ------------------------------------------------------------------------------ matmul

[<Fact>]
let ``matmul follows PyTorch's rules for 1-D, 2-D and batched operands`` () =
    // [[1, 2], [3, 4]] · [[5, 6], [7, 8]] = [[19, 22], [43, 50]] (by hand)
    let a = Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ]
    let b = Tensor.create [ [ 5.0; 6.0 ]; [ 7.0; 8.0 ] ]
    expectT [| 2; 2 |] [| 19.0; 22.0; 43.0; 50.0 |] (Tensor.matmul a b)
    // vector · vector → scalar; matrix · vector → vector; vector · matrix → vector
    let v = Tensor.create [ 1.0; -1.0 ]
    expectT [||] [| 2.0 |] (Tensor.matmul v v)
    expectT [| 2 |] [| -1.0; -1.0 |] (Tensor.matmul a v)
    expectT [| 2 |] [| -2.0; -2.0 |] (Tensor.matmul v b)
    expectT [||] [| 2.0 |] (Tensor.dot v v)

    let shape x y =
        Tensor.shape (Tensor.matmul (Tensor.zeros x) (Tensor.zeros y))

    Assert.Equal<int[]>([| 5; 2; 4 |], shape [| 5; 2; 3 |] [| 3; 4 |])
    Assert.Equal<int[]>([| 2; 4; 2; 5 |], shape [| 2; 1; 2; 3 |] [| 4; 3; 5 |])
    Assert.Equal<int[]>([| 5; 2 |], shape [| 5; 2; 3 |] [| 3 |])
    Assert.Equal<int[]>([| 5; 4 |], shape [| 3 |] [| 5; 3; 4 |])
    // batched values: each batch is its own product
    let batch = Tensor.stack 0 [ a; b ]
    expectT [| 2; 2 |] [| -1.0; -1.0; -1.0; -1.0 |] (Tensor.matmul batch v)
    // linear: x Wᵀ + b
    let w = Tensor.create [ [ 1.0; 0.0 ]; [ 0.0; 2.0 ]; [ 1.0; 1.0 ] ]
    expectT [| 3 |] [| 11.0; -2.0; 10.0 |] (Tensor.linear v w (Some(Tensor.create [ 10.0; 0.0; 10.0 ])))
    expectT [| 2; 3 |] [| 1.0; 4.0; 3.0; 3.0; 8.0; 7.0 |] (Tensor.linear a w None)

[<Fact>]
let ``matmul shape errors name matmul and both shapes`` () =
    expectShapeError [ "matmul"; "[2x3]"; "[4x5]" ] (fun () ->
        Tensor.matmul (Tensor.zeros [| 2; 3 |]) (Tensor.zeros [| 4; 5 |]))

    expectShapeError [ "matmul" ] (fun () -> Tensor.matmul (Tensor.scalar 1.0) (Tensor.zeros [| 2 |]))
    expectShapeError [ "dot"; "[2]"; "[3]" ] (fun () -> Tensor.dot (Tensor.zeros [| 2 |]) (Tensor.zeros [| 3 |]))

    expectShapeError [ "[4x3]"; "[2x5]" ] (fun () ->
        Tensor.linear (Tensor.zeros [| 4; 3 |]) (Tensor.zeros [| 2; 5 |]) None)

[<Fact>]
let ``batched matmul with incompatible batch axes names both operand shapes`` () =
    // [2x3x4] · [5x4x2]: the inner dimensions agree (4), the batch axes [2] and [5] do not
    // broadcast; the message should name the operands as they were given
    expectShapeError [ "matmul"; "[2x3x4]"; "[5x4x2]" ] (fun () ->
        Tensor.matmul (Tensor.zeros [| 2; 3; 4 |]) (Tensor.zeros [| 5; 4; 2 |]))

// ------------------------------------------------------------------------------ convolution

[<Fact>]
let ``conv2d computes cross-correlation on a hand example`` () =
    // x = [[1, 2, 3], [4, 5, 6], [7, 8, 9]], w = [[1, 2], [3, 4]] (no kernel flip):
    // y00 = 1·1 + 2·2 + 4·3 + 5·4 = 37, y01 = 2 + 6 + 15 + 24 = 47, y10 = 67, y11 = 77
    let x = Tensor.create [ 1.0 .. 9.0 ] |> Tensor.reshape [| 1; 1; 3; 3 |]
    let w = Tensor.create [ 1.0; 2.0; 3.0; 4.0 ] |> Tensor.reshape [| 1; 1; 2; 2 |]
    expectT [| 1; 1; 2; 2 |] [| 37.0; 47.0; 67.0; 77.0 |] (Tensor.conv2d ConvSpec.unit x w)
    // padding 1, stride 2 (windows start at padded rows/cols 0 and 2, i.e. x rows/cols −1 and 1):
    // y00 = x00·w11 = 4, y01 = x01·w10 + x02·w11 = 6 + 12 = 18, y10 = x10·w01 + x20·w11 = 8 + 28 = 36,
    // y11 = x11·w00 + x12·w01 + x21·w10 + x22·w11 = 5 + 12 + 24 + 36 = 77
    expectT [| 1; 1; 2; 2 |] [| 4.0; 18.0; 36.0; 77.0 |] (Tensor.conv2d (ConvSpec.create 2 1 1 1) x w)

[<Fact>]
let ``conv2d output shapes follow PyTorch's formula`` () =
    // H_out = ⌊(H + padTop + padBottom − d(k − 1) − 1) / s⌋ + 1 (torch.nn.Conv2d docs)
    let shape spec (x: int[]) (w: int[]) =
        Tensor.shape (Tensor.conv2d spec (Tensor.zeros x) (Tensor.zeros w))

    // 32×32, k5, s2, p2 → 16×16
    Assert.Equal<int[]>([| 1; 8; 16; 16 |], shape (ConvSpec.create 2 2 1 1) [| 1; 3; 32; 32 |] [| 8; 3; 5; 5 |])
    // dilation 2, k3, no padding: 10 − 4 − 1 + 1 = 6
    Assert.Equal<int[]>([| 1; 1; 6; 6 |], shape (ConvSpec.create 1 0 2 1) [| 1; 1; 10; 10 |] [| 1; 1; 3; 3 |])
    // groups 2: [2, 4, 7, 9] with [6, 2, 3, 3] → [2, 6, 5, 7]
    Assert.Equal<int[]>([| 2; 6; 5; 7 |], shape (ConvSpec.create 1 0 1 2) [| 2; 4; 7; 9 |] [| 6; 2; 3; 3 |])
    // asymmetric "same" padding for k4 s2 (Keras): pads (1, 2): ⌊(8 + 3 − 3 − 1)/2⌋ + 1 = 4
    let same = {
        ConvSpec.create 2 0 1 1 with
            PadTop = 1
            PadBottom = 2
            PadLeft = 1
            PadRight = 2
    }

    Assert.Equal<int[]>([| 1; 1; 4; 4 |], shape same [| 1; 1; 8; 8 |] [| 1; 1; 4; 4 |])
    // stride 3 leaving a remainder: ⌊(7 − 2 − 1)/3⌋ + 1 = 2
    Assert.Equal<int[]>([| 1; 1; 2; 2 |], shape (ConvSpec.create 3 0 1 1) [| 1; 1; 7; 7 |] [| 1; 1; 2; 2 |])

[<Fact>]
let ``conv2d shape errors name conv2d and both shapes`` () =
    expectShapeError [ "conv2d"; "[1x3x8x8]"; "[4x2x3x3]" ] (fun () ->
        Tensor.conv2d ConvSpec.unit (Tensor.zeros [| 1; 3; 8; 8 |]) (Tensor.zeros [| 4; 2; 3; 3 |]))

    expectShapeError [ "conv2d"; "[1x1x2x2]"; "[1x1x3x3]" ] (fun () ->
        Tensor.conv2d ConvSpec.unit (Tensor.zeros [| 1; 1; 2; 2 |]) (Tensor.zeros [| 1; 1; 3; 3 |]))

    expectShapeError [ "conv2d"; "[3x8x8]" ] (fun () ->
        Tensor.conv2d ConvSpec.unit (Tensor.zeros [| 3; 8; 8 |]) (Tensor.zeros [| 1; 3; 3; 3 |]))

    expectShapeError [ "conv2d"; "dtypes" ] (fun () ->
        Tensor.conv2d ConvSpec.unit (Tensor.zeros [| 1; 1; 3; 3 |]) (Tensor.fullAs Float64 [| 1; 1; 1; 1 |] 1.0))

[<Fact>]
let ``convTranspose2d computes the transposed convolution on hand examples`` () =
    // stride 1, ones 2×2 kernel: every input is added into a 2×2 block of a 3×3 output
    // [[1, 2], [3, 4]] → [[1, 3, 2], [4, 10, 6], [3, 7, 4]]
    let x = Tensor.create [ 1.0; 2.0; 3.0; 4.0 ] |> Tensor.reshape [| 1; 1; 2; 2 |]
    let ones = Tensor.ones [| 1; 1; 2; 2 |]

    expectT
        [| 1; 1; 3; 3 |]
        [| 1.0; 3.0; 2.0; 4.0; 10.0; 6.0; 3.0; 7.0; 4.0 |]
        (Tensor.convTranspose2d ConvSpec.unit 0 0 x ones)
    // stride 2: the blocks no longer overlap (nearest-neighbour-like upsampling)
    expectT
        [| 1; 1; 4; 4 |]
        [|
            1.0
            1.0
            2.0
            2.0
            1.0
            1.0
            2.0
            2.0
            3.0
            3.0
            4.0
            4.0
            3.0
            3.0
            4.0
            4.0
        |]
        (Tensor.convTranspose2d (ConvSpec.create 2 0 1 1) 0 0 x ones)
    // output padding adds a row/column at the bottom/right that receives nothing here
    expectT
        [| 1; 1; 5; 4 |]
        [|
            1.0
            1.0
            2.0
            2.0
            1.0
            1.0
            2.0
            2.0
            3.0
            3.0
            4.0
            4.0
            3.0
            3.0
            4.0
            4.0
            0.0
            0.0
            0.0
            0.0
        |]
        (Tensor.convTranspose2d (ConvSpec.create 2 0 1 1) 1 0 x ones)

[<Fact>]
let ``convTranspose2d output shapes follow PyTorch's formula`` () =
    // H_out = (H − 1)s − padTop − padBottom + d(k − 1) + output_padding + 1 (torch.nn.ConvTranspose2d docs)
    let shape spec oph opw (x: int[]) (w: int[]) =
        Tensor.shape (Tensor.convTranspose2d spec oph opw (Tensor.zeros x) (Tensor.zeros w))

    // DCGAN generator: 1×1 → 4×4 (k4 s1 p0), then 4 → 8 (k4 s2 p1)
    Assert.Equal<int[]>([| 2; 64; 4; 4 |], shape ConvSpec.unit 0 0 [| 2; 100; 1; 1 |] [| 100; 64; 4; 4 |])
    Assert.Equal<int[]>([| 2; 32; 8; 8 |], shape (ConvSpec.create 2 1 1 1) 0 0 [| 2; 64; 4; 4 |] [| 64; 32; 4; 4 |])
    // k3 s2 p1 with output padding 1 doubles: (5 − 1)·2 − 2 + 2 + 1 + 1 = 10
    Assert.Equal<int[]>([| 1; 2; 10; 9 |], shape (ConvSpec.create 2 1 1 1) 1 0 [| 1; 4; 5; 5 |] [| 4; 2; 3; 3 |])
    // groups 2: weight [Cin, Cout/groups, k, k] → Cout = 2·3
    Assert.Equal<int[]>([| 1; 6; 4; 4 |], shape (ConvSpec.create 1 0 1 2) 0 0 [| 1; 4; 2; 2 |] [| 4; 3; 3; 3 |])
    // dilation 2: (3 − 1) + 2·2 + 1 = 7
    Assert.Equal<int[]>([| 1; 1; 7; 7 |], shape (ConvSpec.create 1 0 2 1) 0 0 [| 1; 1; 3; 3 |] [| 1; 1; 3; 3 |])

    expectShapeError [ "conv_transpose2d"; "[1x3x4x4]"; "[2x1x3x3]" ] (fun () ->
        shape ConvSpec.unit 0 0 [| 1; 3; 4; 4 |] [| 2; 1; 3; 3 |])

    expectShapeError [ "conv_transpose2d"; "output padding" ] (fun () ->
        shape (ConvSpec.create 2 0 1 1) 2 0 [| 1; 1; 3; 3 |] [| 1; 1; 3; 3 |])

[<Fact>]
let ``convTranspose2d accepts output padding below the dilation as PyTorch does`` () =
    // PyTorch allows output_padding < max(stride, dilation) (and so does this module's check):
    // stride 1, dilation 2, k3, output padding 1 on 3×3: (3 − 1)·1 + 2·2 + 1 + 1 = 8
    let y =
        Tensor.convTranspose2d
            (ConvSpec.create 1 0 2 1)
            1
            1
            (Tensor.ones [| 1; 1; 3; 3 |])
            (Tensor.ones [| 1; 1; 3; 3 |])

    Assert.Equal<int[]>([| 1; 1; 8; 8 |], Tensor.shape y)
    // the extra row and column receive no contribution
    let v = Tensor.toArray64 y
    Assert.Equal(0.0, v.[63])
    Assert.Equal(1.0, v.[0])

[<Fact>]
let ``maxPool2d and avgPool2d on a small hand example`` () =
    // x = [[1..4], [5..8], [9..12], [13..16]], 2×2 windows, stride 2:
    // max → [[6, 8], [14, 16]]; mean → [[3.5, 5.5], [11.5, 13.5]]
    let x = Tensor.create [ 1.0 .. 16.0 ] |> Tensor.reshape [| 1; 1; 4; 4 |]
    let s2 = ConvSpec.create 2 0 1 1
    expectT [| 1; 1; 2; 2 |] [| 6.0; 8.0; 14.0; 16.0 |] (Tensor.maxPool2d 2 2 s2 x)
    expectT [| 1; 1; 2; 2 |] [| 3.5; 5.5; 11.5; 13.5 |] (Tensor.avgPool2d 2 2 s2 x)
    // channels pool independently
    let two = Tensor.concat 1 [ x; -x ]
    expectT [| 1; 2; 2; 2 |] [| 6.0; 8.0; 14.0; 16.0; -1.0; -3.0; -9.0; -11.0 |] (Tensor.maxPool2d 2 2 s2 two)
    // padding never wins the max (PyTorch pads with −inf): [[−1, −2], [−3, −4]], k2 s1 p1 → 3×3
    let n = Tensor.create [ -1.0; -2.0; -3.0; -4.0 ] |> Tensor.reshape [| 1; 1; 2; 2 |]

    expectT
        [| 1; 1; 3; 3 |]
        [| -1.0; -1.0; -2.0; -1.0; -1.0; -2.0; -3.0; -3.0; -4.0 |]
        (Tensor.maxPool2d 2 2 (ConvSpec.create 1 1 1 1) n)

    // avg pooling counts padded zeros (count_include_pad=True): k3 p1 on [[1, 2], [3, 4]]
    // every window covers all four values: 10 / 9
    let p = Tensor.create [ 1.0; 2.0; 3.0; 4.0 ] |> Tensor.reshape [| 1; 1; 2; 2 |]
    expectT [| 1; 1; 2; 2 |] (Array.create 4 (10.0 / 9.0)) (Tensor.avgPool2d 3 3 (ConvSpec.create 1 1 1 1) p)
    // non-square window 1×2 stride (1, 2)
    expectT [| 1; 1; 2; 1 |] [| 1.5; 3.5 |] (Tensor.avgPool2d 1 2 { ConvSpec.unit with StrideW = 2 } p)
    expectShapeError [ "max_pool2d"; "[2x2]" ] (fun () -> Tensor.maxPool2d 2 2 s2 (Tensor.zeros [| 2; 2 |]))
    expectShapeError [ "avg_pool2d"; "[4]" ] (fun () -> Tensor.avgPool2d 2 2 s2 (Tensor.zeros [| 4 |]))

// ------------------------------------------------------------------------------ upsampling

[<Fact>]
let ``upsampleNearest repeats pixels`` () =
    let x = Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ]

    expectT
        [| 4; 4 |]
        [|
            1.0
            1.0
            2.0
            2.0
            1.0
            1.0
            2.0
            2.0
            3.0
            3.0
            4.0
            4.0
            3.0
            3.0
            4.0
            4.0
        |]
        (Tensor.upsampleNearest 2 2 x)

    expectT [| 2; 6 |] [| 1.0; 1.0; 1.0; 2.0; 2.0; 2.0; 3.0; 3.0; 3.0; 4.0; 4.0; 4.0 |] (Tensor.upsampleNearest 1 3 x)
    Assert.Equal<int[]>([| 2; 3; 8; 10 |], Tensor.shape (Tensor.upsampleNearest 2 2 (Tensor.zeros [| 2; 3; 4; 5 |])))
    expectShapeError [ "upsample_nearest" ] (fun () -> Tensor.upsampleNearest 0 2 x)

[<Fact>]
let ``upsampleBilinear matches PyTorch with align_corners False`` () =
    // F.interpolate([[1, 2], [3, 4]], size=(4, 4), mode='bilinear', align_corners=False):
    // source coordinate (i + 0.5)/2 − 0.5 = −0.25 (clamped to 0), 0.25, 0.75, 1.25 (→ last)
    // [[1, 1.25, 1.75, 2], [1.5, 1.75, 2.25, 2.5], [2.5, 2.75, 3.25, 3.5], [3, 3.25, 3.75, 4]]
    let x =
        Tensor.create [ [ 1.0; 2.0 ]; [ 3.0; 4.0 ] ] |> Tensor.reshape [| 1; 1; 2; 2 |]

    expectT
        [| 1; 1; 4; 4 |]
        [|
            1.0
            1.25
            1.75
            2.0
            1.5
            1.75
            2.25
            2.5
            2.5
            2.75
            3.25
            3.5
            3.0
            3.25
            3.75
            4.0
        |]
        (Tensor.upsampleBilinear 4 4 x)

    // the same size is the identity; shrinking 4×4 by 2 averages 2×2 blocks (source 0.5 and 2.5):
    // of [[0..3], [4..7], [8..11], [12..15]] → [[2.5, 4.5], [10.5, 12.5]]
    expectT [| 1; 1; 2; 2 |] [| 1.0; 2.0; 3.0; 4.0 |] (Tensor.upsampleBilinear 2 2 x)
    expectT [| 2; 2 |] [| 2.5; 4.5; 10.5; 12.5 |] (Tensor.upsampleBilinear 2 2 (iota [| 4; 4 |]))
    // [1, 2] along a row to width 3: sources 1/6 − 0.5 → 0 (clamped), 0.5, 1.1667 → [1, 1.5, 2]
    expectT [| 1; 3 |] [| 1.0; 1.5; 2.0 |] (Tensor.upsampleBilinear 1 3 (Tensor.create [ [ 1.0; 2.0 ] ]))
    expectShapeError [ "upsample_bilinear" ] (fun () -> Tensor.upsampleBilinear 0 2 x)

// ------------------------------------------------------------------------------ other errors

[<Fact>]
let ``shape errors name the op and the shapes`` () =
    let z23 = Tensor.zeros [| 2; 3 |]
    expectShapeError [ "sub"; "[2x3]"; "[3x2]" ] (fun () -> z23 - Tensor.zeros [| 3; 2 |])
    expectShapeError [ "mul"; "[2x3]"; "[4]" ] (fun () -> z23 * Tensor.zeros [| 4 |])
    expectShapeError [ "div"; "[2x3]"; "[2x2]" ] (fun () -> z23 / Tensor.zeros [| 2; 2 |])
    expectShapeError [ "where"; "[2x3]"; "[5]" ] (fun () -> Tensor.where z23 z23 (Tensor.zeros [| 5 |]))
    expectShapeError [ "expand"; "[2x3]"; "[4x3]" ] (fun () -> Tensor.expand [| 4; 3 |] z23)
    expectShapeError [ "add"; "dtypes"; "Float32"; "Float64" ] (fun () -> z23 + Tensor.fullAs Float64 [| 2; 3 |] 0.0)
    expectShapeError [ "item"; "[2x3]" ] (fun () -> Tensor.item z23)
    expectShapeError [ "transpose"; "axis 2" ] (fun () -> Tensor.transpose 0 2 z23)
    expectShapeError [ "grad"; "[2x3]" ] (fun () -> Autodiff.grad id z23)
    expectShapeError [ "vjp"; "[2]"; "[2x3]" ] (fun () -> Autodiff.vjp id z23 (Tensor.zeros [| 2 |]))

[<Fact>]
let ``cast converts between float32 and float64`` () =
    let x = Tensor.create [ 0.1; 2.0 ]
    let y = Tensor.cast Float64 x
    Assert.Equal(Float64, Tensor.dtype y)
    // float32's 0.1 widened exactly, not re-rounded to float64's 0.1
    Assert.Equal(float 0.1f, (Tensor.toArray64 y).[0])
    Assert.Equal(Float32, Tensor.dtype (Tensor.cast Float32 y))
    Assert.Equal<float32[]>([| 0.1f; 2.0f |], Tensor.toArray (Tensor.cast Float32 y))
