/// First-order gradients against central finite differences (GradCheck), in float64, over random
/// shapes: one FsCheck property per differentiable primitive and per public composite, with
/// broadcasting for every binary op; plus fan-out, a 100,000-op chain, detach, independence,
/// float32 against float64, and a self-test that the checker rejects wrong rules.
module GradientTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open GradCheck

/// Cases per property: enough to hit every shape pattern, small enough that the file runs in seconds.
let private cases = 40

let private arb g = Arb.fromGen g

// ------------------------------------------------------------------------------ case types

/// One input of a random shape; `Seed` drives its values and (Seed + 1) the output weighting.
type UnaryCase = { Shape: int[]; Seed: int }

let private unaryGenR minRank maxRank =
    gen {
        let! s = shapeGenR minRank maxRank
        let! seed = seedGen
        return { Shape = s; Seed = seed }
    }

let private unaryArb = arb (unaryGenR 0 4)

/// Checks a tensor-valued f of one input over random shapes with values of `kind`.
let private unaryProp name (kind: Values) (f: Tensor -> Tensor) =
    Prop.forAll unaryArb (fun c -> checkOutput (c.Seed + 1) f (tensor kind c.Seed c.Shape))
    |> Prop.checkN name cases

/// Two broadcast-compatible operands.
type BinaryCase = { A: int[]; B: int[]; Seed: int }

let private binaryArb =
    gen {
        let! a, b = broadcastPairGen
        let! seed = seedGen
        return { A = a; B = b; Seed = seed }
    }
    |> arb

/// Checks f a b in both operands over broadcast-compatible shapes.
let private binaryProp name (ka: Values) (kb: Values) (f: Tensor -> Tensor -> Tensor) =
    Prop.forAll binaryArb (fun c ->
        let ps = Map [ "a", tensor ka c.Seed c.A; "b", tensor kb (c.Seed + 1) c.B ]
        checkOutputs (c.Seed + 2) (fun p -> f p.["a"] p.["b"]) ps)
    |> Prop.checkN name cases

// ------------------------------------------------------------------------------ unary primitives

[<Fact>]
let ``neg matches finite differences`` () = unaryProp "neg" Smooth Tensor.neg

[<Fact>]
let ``exp matches finite differences`` () = unaryProp "exp" Smooth Tensor.exp

[<Fact>]
let ``log matches finite differences on positive inputs`` () = unaryProp "log" Positive Tensor.log

[<Fact>]
let ``sqrt matches finite differences on positive inputs`` () = unaryProp "sqrt" Positive Tensor.sqrt

[<Fact>]
let ``tanh matches finite differences`` () = unaryProp "tanh" Smooth Tensor.tanh

[<Fact>]
let ``sigmoid matches finite differences`` () =
    unaryProp "sigmoid" Smooth Tensor.sigmoid

[<Fact>]
let ``abs matches finite differences away from zero`` () = unaryProp "abs" NonZero Tensor.abs

[<Fact>]
let ``square matches finite differences`` () = unaryProp "square" Smooth Tensor.square

[<Fact>]
let ``relu matches finite differences away from zero`` () = unaryProp "relu" NonZero Tensor.relu

[<Fact>]
let ``leakyRelu matches finite differences away from zero`` () =
    unaryProp "leakyRelu" NonZero (Tensor.leakyRelu 0.2)

[<Fact>]
let ``softplus matches finite differences including large magnitudes`` () =
    // ×10 reaches ±20, where the stable form max(x, 0) + ln(1 + e^−|x|) matters
    unaryProp "softplus" Smooth (fun x -> Tensor.softplus (x * 10.0))

[<Fact>]
let ``logSigmoid matches finite differences including large magnitudes`` () =
    unaryProp "logSigmoid" Smooth (fun x -> Tensor.logSigmoid (x * 10.0))

[<Fact>]
let ``clamp matches finite differences away from its bounds`` () =
    Prop.forAll unaryArb (fun c ->
        let lo, hi = -0.7, 0.9
        let data = values Smooth c.Seed (Shape.numel c.Shape) |> awayFrom [| lo; hi |] 0.05
        checkOutput (c.Seed + 1) (Tensor.clamp lo hi) (Tensor.ofArray64 c.Shape data))
    |> Prop.checkN "clamp" cases

[<Fact>]
let ``pow with scalar exponents matches finite differences`` () =
    Prop.forAll unaryArb (fun c ->
        // fractional and negative exponents on positive bases; integer exponents on any sign
        for p in [ 0.5; -1.5; 2.5 ] do
            checkOutput (c.Seed + 1) (fun x -> x ** p) (tensor Positive c.Seed c.Shape)

        for p in [ 2.0; 3.0 ] do
            checkOutput (c.Seed + 1) (fun x -> x ** p) (tensor Smooth c.Seed c.Shape))
    |> Prop.checkN "pow scalar" cases

[<Fact>]
let ``cast to float32 and back passes the gradient through unchanged`` () =
    // Finite differences cannot see through a float32 rounding, so the rule is checked exactly:
    // d/dx sum(cast64(cast32 x) ⊙ R) = R (as float64), and a float32 input gets a float32 gradient.
    Prop.forAll unaryArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape

        let g =
            Autodiff.grad (weighted (c.Seed + 1) (Tensor.cast Float32 >> Tensor.cast Float64)) x

        let r = weightValues (c.Seed + 1) (Shape.numel c.Shape)
        Assert.Equal(Float64, Tensor.dtype g)
        Assert.Equal<float[]>(r |> Array.map (float32 >> float), Tensor.toArray64 g)
        let x32 = Tensor.cast Float32 x
        let g32 = Autodiff.grad (weighted (c.Seed + 1) (Tensor.cast Float64)) x32
        Assert.Equal(Float32, Tensor.dtype g32)
        Assert.Equal<float32[]>(r |> Array.map float32, Tensor.toArray g32))
    |> Prop.checkN "cast" cases

// ------------------------------------------------------------------------------ binary primitives

[<Fact>]
let ``add matches finite differences with broadcasting`` () = binaryProp "add" Smooth Smooth (+)

[<Fact>]
let ``sub matches finite differences with broadcasting`` () = binaryProp "sub" Smooth Smooth (-)

[<Fact>]
let ``mul matches finite differences with broadcasting`` () = binaryProp "mul" Smooth Smooth (*)

[<Fact>]
let ``div matches finite differences with broadcasting`` () = binaryProp "div" Smooth NonZero (/)

[<Fact>]
let ``pow matches finite differences in base and exponent with broadcasting`` () =
    binaryProp "pow" Positive Smooth Tensor.pow

[<Fact>]
let ``maximum matches finite differences with broadcasting`` () =
    binaryProp "maximum" GridA GridB Tensor.maximum

[<Fact>]
let ``minimum matches finite differences with broadcasting`` () =
    binaryProp "minimum" GridA GridB Tensor.minimum

/// A mask and two branches, all three broadcast together.
type WhereCase = {
    Mask: int[]
    A: int[]
    B: int[]
    Seed: int
}

[<Fact>]
let ``where matches finite differences with three-way broadcasting`` () =
    let whereArb =
        gen {
            let! s = broadcastShapesGen 3
            let! seed = seedGen

            return {
                Mask = s.[0]
                A = s.[1]
                B = s.[2]
                Seed = seed
            }
        }
        |> arb

    Prop.forAll whereArb (fun c ->
        let mask =
            values Smooth c.Seed (Shape.numel c.Mask)
            |> Array.map (fun v -> if v > 0.0 then 1.0 else 0.0)
            |> Tensor.ofArray64 c.Mask

        let ps =
            Map [ "a", tensor Smooth (c.Seed + 1) c.A; "b", tensor Smooth (c.Seed + 2) c.B ]

        checkOutputs (c.Seed + 3) (fun p -> Tensor.where mask p.["a"] p.["b"]) ps)
    |> Prop.checkN "where" cases

// ------------------------------------------------------------------------------ reductions

/// A reduction over random axes (positive or negative; none = all).
type ReduceCase = {
    Shape: int[]
    Axes: int[]
    KeepDim: bool
    Unbiased: bool
    Seed: int
}

let private reduceArb =
    gen {
        let! s = shapeGenR 0 4
        let! axes = axesGen s.Length
        let! keep = Gen.elements [ true; false ]
        let! unbiased = Gen.elements [ true; false ]
        let! seed = seedGen

        return {
            Shape = s
            Axes = axes
            KeepDim = keep
            Unbiased = unbiased
            Seed = seed
        }
    }
    |> arb

let private reduceProp name (kind: Values) (f: ReduceCase -> Tensor -> Tensor) =
    Prop.forAll reduceArb (fun c -> checkOutput (c.Seed + 1) (f c) (tensor kind c.Seed c.Shape))
    |> Prop.checkN name cases

[<Fact>]
let ``sum matches finite differences`` () =
    reduceProp "sum" Smooth (fun _ -> Tensor.sum)

[<Fact>]
let ``sumAxes matches finite differences with and without keepDim`` () =
    reduceProp "sumAxes" Smooth (fun c -> Tensor.sumAxes c.Axes c.KeepDim)

[<Fact>]
let ``mean and meanAxes match finite differences`` () =
    reduceProp "mean" Smooth (fun c x -> Tensor.meanAxes c.Axes c.KeepDim x + Tensor.mean x)

[<Fact>]
let ``varAxes matches finite differences biased and unbiased`` () =
    reduceProp "varAxes" Smooth (fun c -> Tensor.varAxes c.Axes c.KeepDim c.Unbiased)

[<Fact>]
let ``var matches finite differences`` () =
    reduceProp "var" Smooth (fun _ -> Tensor.var)

[<Fact>]
let ``max matches finite differences without ties`` () =
    reduceProp "max" Distinct (fun _ -> Tensor.max)

[<Fact>]
let ``maxAxes matches finite differences without ties`` () =
    reduceProp "maxAxes" Distinct (fun c -> Tensor.maxAxes c.Axes c.KeepDim)

[<Fact>]
let ``min and minAxes match finite differences without ties`` () =
    reduceProp "minAxes" Distinct (fun c x -> Tensor.minAxes c.Axes c.KeepDim x + Tensor.min x)

[<Fact>]
let ``logsumexp matches finite differences`` () =
    reduceProp "logsumexp" Smooth (fun c x -> Tensor.logsumexp c.Axes c.KeepDim (x * 3.0))

[<Fact>]
let ``max shares the gradient evenly among ties`` () =
    // max [1; 3; 3; 2]: the two 3s split the unit gradient (documented in Prim.maxKeep)
    let x = Tensor.ofArray64 [| 4 |] [| 1.0; 3.0; 3.0; 2.0 |]
    Assert.Equal<float[]>([| 0.0; 0.5; 0.5; 0.0 |], Tensor.toArray64 (Autodiff.grad Tensor.max x))
    // along axis 1 of [[5, 5, 5], [1, 4, 2]]: thirds in row 0, all to the 4 in row 1
    let m = Tensor.ofArray64 [| 2; 3 |] [| 5.0; 5.0; 5.0; 1.0; 4.0; 2.0 |]

    let g =
        Autodiff.grad (Tensor.maxAxes [| 1 |] false >> Tensor.sum) m |> Tensor.toArray64

    Assert.Equal<float[]>([| 1.0 / 3.0; 1.0 / 3.0; 1.0 / 3.0; 0.0; 1.0; 0.0 |], g)

// ------------------------------------------------------------------------------ structure

/// A reshape target of the same size: the input's dims shuffled, some neighbours merged, one
/// possibly written as −1.
type ReshapeCase = {
    Shape: int[]
    Target: int[]
    Seed: int
}

[<Fact>]
let ``reshape matches finite differences`` () =
    let reshapeArb =
        gen {
            let! s = shapeGen
            let! shuffled = Gen.shuffle s
            let! merges = Gen.arrayOfLength shuffled.Length (Gen.elements [ true; false ])

            let merged =
                (([], 1), Array.zip shuffled merges)
                ||> Array.fold (fun (acc, cur) (d, merge) -> if merge then acc, cur * d else cur :: acc, d)
                |> fun (acc, cur) -> List.rev (cur :: acc) |> Array.ofList

            let! minus = Gen.choose (-1, merged.Length - 1)
            let target = merged |> Array.mapi (fun i d -> if i = minus then -1 else d)
            let! seed = seedGen

            return {
                Shape = s
                Target = target
                Seed = seed
            }
        }
        |> arb

    Prop.forAll reshapeArb (fun c -> checkOutput (c.Seed + 1) (Tensor.reshape c.Target) (tensor Smooth c.Seed c.Shape))
    |> Prop.checkN "reshape" cases

/// A permutation of the axes and a pair of (possibly negative) axes to swap.
type PermuteCase = {
    Shape: int[]
    Perm: int[]
    SwapA: int
    SwapB: int
    Seed: int
}

[<Fact>]
let ``permute and transpose match finite differences`` () =
    let permuteArb =
        gen {
            let! s = shapeGenR 1 4
            let! perm = Gen.shuffle (Array.init s.Length id)
            let! a = Gen.choose (-s.Length, s.Length - 1)
            let! b = Gen.choose (-s.Length, s.Length - 1)
            let! seed = seedGen

            return {
                Shape = s
                Perm = perm
                SwapA = a
                SwapB = b
                Seed = seed
            }
        }
        |> arb

    Prop.forAll permuteArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape
        checkOutput (c.Seed + 1) (Tensor.permute c.Perm) x
        checkOutput (c.Seed + 1) (Tensor.transpose c.SwapA c.SwapB) x)
    |> Prop.checkN "permute" cases

[<Fact>]
let ``expand matches finite differences`` () =
    Prop.forAll binaryArb (fun c ->
        let target = Shape.broadcast "test" c.A c.B
        checkOutput (c.Seed + 1) (Tensor.expand target) (tensor Smooth c.Seed c.A))
    |> Prop.checkN "expand" cases

/// A box inside the shape, and one axis with a start, a length and an index (possibly negative).
type SliceCase = {
    Shape: int[]
    Starts: int[]
    Stops: int[]
    Axis: int
    Start: int
    Length: int
    Index: int
    Seed: int
}

[<Fact>]
let ``slice narrow and select match finite differences`` () =
    let sliceArb =
        gen {
            let! s = shapeGenR 1 4
            let! starts = s |> Array.map (fun d -> Gen.choose (0, d - 1)) |> Gen.sequenceToArray

            let! stops =
                Array.map2 (fun st d -> Gen.choose (st + 1, d)) starts s |> Gen.sequenceToArray

            let! axis = Gen.choose (-s.Length, s.Length - 1)
            let d = s.[(axis + s.Length) % s.Length]
            let! start = Gen.choose (0, d - 1)
            let! length = Gen.choose (1, d - start)
            let! index = Gen.choose (-d, d - 1)
            let! seed = seedGen

            return {
                Shape = s
                Starts = starts
                Stops = stops
                Axis = axis
                Start = start
                Length = length
                Index = index
                Seed = seed
            }
        }
        |> arb

    Prop.forAll sliceArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape
        checkOutput (c.Seed + 1) (Tensor.slice c.Starts c.Stops) x
        checkOutput (c.Seed + 1) (Tensor.narrow c.Axis c.Start c.Length) x
        checkOutput (c.Seed + 1) (Tensor.select c.Axis c.Index) x)
    |> Prop.checkN "slice" cases

/// Zero padding per axis, and ZeroPad2d amounts (left, right, top, bottom).
type PadCase = {
    Shape: int[]
    Before: int[]
    After: int[]
    Pad2d: int[]
    Seed: int
}

[<Fact>]
let ``pad and pad2d match finite differences`` () =
    let padArb =
        gen {
            let! s = shapeGenR 2 4
            let! before = Gen.arrayOfLength s.Length (Gen.choose (0, 2))
            let! after = Gen.arrayOfLength s.Length (Gen.choose (0, 2))
            let! p2 = Gen.arrayOfLength 4 (Gen.choose (0, 2))
            let! seed = seedGen

            return {
                Shape = s
                Before = before
                After = after
                Pad2d = p2
                Seed = seed
            }
        }
        |> arb

    Prop.forAll padArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape
        checkOutput (c.Seed + 1) (Tensor.pad c.Before c.After) x
        checkOutput (c.Seed + 1) (Tensor.pad2d c.Pad2d.[0] c.Pad2d.[1] c.Pad2d.[2] c.Pad2d.[3]) x)
    |> Prop.checkN "pad" cases

/// Several tensors that agree on every axis but `Axis`.
type ConcatCase = {
    Shapes: int[][]
    Axis: int
    Seed: int
}

let private named (xs: Tensor[]) =
    xs |> Array.mapi (fun i x -> sprintf "x%d" i, x) |> Map.ofArray

let private unnamed (n: int) (p: Map<string, Tensor>) =
    Array.init n (fun i -> p.[sprintf "x%d" i])

[<Fact>]
let ``concat matches finite differences for every operand`` () =
    let concatArb =
        gen {
            let! s = shapeGenR 1 3
            let! axis = Gen.choose (-s.Length, s.Length - 1)
            let! count = Gen.choose (1, 3)
            let! sizes = Gen.arrayOfLength count (Gen.choose (1, 3))

            let shapes =
                sizes
                |> Array.map (fun k -> s |> Array.mapi (fun i d -> if i = (axis + s.Length) % s.Length then k else d))

            let! seed = seedGen

            return {
                Shapes = shapes
                Axis = axis
                Seed = seed
            }
        }
        |> arb

    Prop.forAll concatArb (fun c ->
        let xs = c.Shapes |> Array.mapi (fun i s -> tensor Smooth (c.Seed + i) s)
        checkOutputs (c.Seed + 7) (fun p -> Tensor.concat c.Axis (unnamed xs.Length p)) (named xs))
    |> Prop.checkN "concat" cases

[<Fact>]
let ``stack matches finite differences for every operand`` () =
    let stackArb =
        gen {
            let! s = shapeGenR 0 3
            let! axis = Gen.choose (-(s.Length + 1), s.Length)
            let! count = Gen.choose (1, 3)
            let! seed = seedGen

            return {
                Shapes = Array.create count s
                Axis = axis
                Seed = seed
            }
        }
        |> arb

    Prop.forAll stackArb (fun c ->
        let xs = c.Shapes |> Array.mapi (fun i s -> tensor Smooth (c.Seed + i) s)
        checkOutputs (c.Seed + 7) (fun p -> Tensor.stack c.Axis (unnamed xs.Length p)) (named xs))
    |> Prop.checkN "stack" cases

/// Repeat counts: one per axis plus up to two new leading axes.
type RepeatCase = {
    Shape: int[]
    Counts: int[]
    Seed: int
}

[<Fact>]
let ``repeat matches finite differences`` () =
    let repeatArb =
        gen {
            let! s = shapeGenR 0 3
            let! extra = Gen.choose (0, 2)
            let! counts = Gen.arrayOfLength (s.Length + extra) (Gen.choose (1, 3))
            let! seed = seedGen

            return {
                Shape = s
                Counts = counts
                Seed = seed
            }
        }
        |> arb

    Prop.forAll repeatArb (fun c -> checkOutput (c.Seed + 1) (Tensor.repeat c.Counts) (tensor Smooth c.Seed c.Shape))
    |> Prop.checkN "repeat" cases

// ------------------------------------------------------------------------------ take and scatter

/// Indices along one axis (duplicates allowed) for index_select, and a gather index tensor.
type IndexCase = {
    Shape: int[]
    Axis: int
    Indices: int[]
    GatherShape: int[]
    Gather: int[]
    Seed: int
}

[<Fact>]
let ``indexSelect and gather match finite differences with repeated indices`` () =
    let indexArb =
        gen {
            let! s = shapeGenR 1 3
            let! axis = Gen.choose (-s.Length, s.Length - 1)
            let a = (axis + s.Length) % s.Length
            let! count = Gen.choose (1, 4)
            let! indices = Gen.arrayOfLength count (Gen.choose (0, s.[a] - 1))

            let! gshape =
                s
                |> Array.mapi (fun i d -> if i = a then Gen.choose (1, 4) else Gen.choose (1, d))
                |> Gen.sequenceToArray

            let! gather = Gen.arrayOfLength (Shape.numel gshape) (Gen.choose (0, s.[a] - 1))
            let! seed = seedGen

            return {
                Shape = s
                Axis = axis
                Indices = indices
                GatherShape = gshape
                Gather = gather
                Seed = seed
            }
        }
        |> arb

    Prop.forAll indexArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape
        checkOutput (c.Seed + 1) (Tensor.indexSelect c.Axis c.Indices) x
        checkOutput (c.Seed + 1) (Tensor.gather c.Axis c.GatherShape c.Gather) x)
    |> Prop.checkN "indexSelect/gather" cases

/// Flat indices into a source of `Shape` (take) and into a target of `Target` (scatter-add).
type TakeCase = {
    Shape: int[]
    Target: int[]
    Index: int[]
    Seed: int
}

[<Fact>]
let ``take and scatterAdd primitives match finite differences with repeated indices`` () =
    let takeArb =
        gen {
            let! s = shapeGenR 0 3
            let! t = shapeGenR 0 3
            let! index = Gen.arrayOfLength (Shape.numel s) (Gen.choose (0, Shape.numel t - 1))
            let! seed = seedGen

            return {
                Shape = s
                Target = t
                Index = index
                Seed = seed
            }
        }
        |> arb

    Prop.forAll takeArb (fun c ->
        // scatterAdd x: [Shape] → [Target]; take: [Target] → [Shape] (its adjoint)
        checkOutput (c.Seed + 1) (Prim.scatterAdd c.Index c.Target) (tensor Smooth c.Seed c.Shape)
        checkOutput (c.Seed + 1) (Prim.take c.Index c.Shape) (tensor Smooth c.Seed c.Target))
    |> Prop.checkN "take/scatterAdd" cases

/// A max-pooling geometry (padding at most half the window, as PyTorch requires).
type PoolCase = {
    Shape: int[]
    KH: int
    KW: int
    Spec: ConvSpec
    Seed: int
}

/// True when every output row and column of the pooling window sees at least one input position.
let private poolFits (c: PoolCase) =
    let fits n k s d padA padB =
        let o = ConvSpec.outSize n padA padB k s d

        let sees i =
            List.exists (fun t -> i * s - padA + t * d >= 0 && i * s - padA + t * d < n) [ 0 .. k - 1 ]

        o >= 1 && List.forall sees [ 0 .. o - 1 ]

    fits c.Shape.[2] c.KH c.Spec.StrideH c.Spec.DilationH c.Spec.PadTop c.Spec.PadBottom
    && fits c.Shape.[3] c.KW c.Spec.StrideW c.Spec.DilationW c.Spec.PadLeft c.Spec.PadRight

let private poolArb (dilation: bool) =
    gen {
        let! n = Gen.choose (1, 2)
        let! ch = Gen.choose (1, 2)
        let! h = Gen.choose (1, 5)
        let! w = Gen.choose (1, 5)
        let! kh = Gen.choose (1, 3)
        let! kw = Gen.choose (1, 3)
        let! sh = Gen.choose (1, 3)
        let! sw = Gen.choose (1, 3)
        let! pads = Gen.arrayOfLength 4 (Gen.choose (0, 1))
        let! dh = Gen.choose (1, (if dilation then 2 else 1))
        let! dw = Gen.choose (1, (if dilation then 2 else 1))
        let! seed = seedGen

        return {
            Shape = [| n; ch; h; w |]
            KH = kh
            KW = kw
            Spec = {
                StrideH = sh
                StrideW = sw
                PadTop = min pads.[0] (kh / 2)
                PadBottom = min pads.[1] (kh / 2)
                PadLeft = min pads.[2] (kw / 2)
                PadRight = min pads.[3] (kw / 2)
                DilationH = dh
                DilationW = dw
                Groups = 1
            }
            Seed = seed
        }
    }
    |> Gen.filter poolFits
    |> arb

[<Fact>]
let ``maxPool2d matches finite differences without ties`` () =
    Prop.forAll (poolArb true) (fun c ->
        checkOutput (c.Seed + 1) (Tensor.maxPool2d c.KH c.KW c.Spec) (tensor Distinct c.Seed c.Shape))
    |> Prop.checkN "maxPool2d" cases

[<Fact>]
let ``avgPool2d matches finite differences`` () =
    Prop.forAll (poolArb true) (fun c ->
        checkOutput (c.Seed + 1) (Tensor.avgPool2d c.KH c.KW c.Spec) (tensor Smooth c.Seed c.Shape))
    |> Prop.checkN "avgPool2d" cases

// ------------------------------------------------------------------------------ matmul

/// op(A) · op(B) with broadcast batch axes: A [batchA…, m, k] (or k, m when TransA), B likewise.
type MatMulCase = {
    BatchA: int[]
    BatchB: int[]
    M: int
    K: int
    N: int
    TransA: bool
    TransB: bool
    Seed: int
}

let private matmulArb =
    gen {
        let! ba, bb =
            broadcastPairGen |> Gen.filter (fun (a, b) -> a.Length <= 2 && b.Length <= 2)

        let! m = Gen.choose (1, 3)
        let! k = Gen.choose (1, 3)
        let! n = Gen.choose (1, 3)
        let! ta = Gen.elements [ true; false ]
        let! tb = Gen.elements [ true; false ]
        let! seed = seedGen

        return {
            BatchA = ba
            BatchB = bb
            M = m
            K = k
            N = n
            TransA = ta
            TransB = tb
            Seed = seed
        }
    }
    |> arb

let private matmulCheck (c: MatMulCase) (aShape: int[]) (bShape: int[]) (f: Tensor -> Tensor -> Tensor) =
    let ps =
        Map [ "a", tensor Smooth c.Seed aShape; "b", tensor Smooth (c.Seed + 1) bShape ]

    checkOutputs (c.Seed + 2) (fun p -> f p.["a"] p.["b"]) ps

[<Fact>]
let ``matmul of matrices matches finite differences`` () =
    Prop.forAll matmulArb (fun c -> matmulCheck c [| c.M; c.K |] [| c.K; c.N |] Tensor.matmul)
    |> Prop.checkN "matmul 2-D" cases

[<Fact>]
let ``batched matmul with broadcast batch axes matches finite differences`` () =
    Prop.forAll matmulArb (fun c ->
        matmulCheck c (Array.append c.BatchA [| c.M; c.K |]) (Array.append c.BatchB [| c.K; c.N |]) Tensor.matmul)
    |> Prop.checkN "matmul batched" cases

[<Fact>]
let ``matmul with 1-D operands matches finite differences`` () =
    Prop.forAll matmulArb (fun c ->
        let batch = Array.append c.BatchA [| c.M; c.K |]
        matmulCheck c [| c.K |] [| c.K |] Tensor.matmul // dot → []
        matmulCheck c [| c.K |] [| c.K; c.N |] Tensor.matmul // → [n]
        matmulCheck c [| c.M; c.K |] [| c.K |] Tensor.matmul // → [m]
        matmulCheck c [| c.K |] (Array.append c.BatchB [| c.K; c.N |]) Tensor.matmul // → [batch, n]
        matmulCheck c batch [| c.K |] Tensor.matmul // → [batch, m]
        matmulCheck c [| c.K |] [| c.K |] Tensor.dot)
    |> Prop.checkN "matmul 1-D" cases

[<Fact>]
let ``matmul primitive with transposed operands matches finite differences`` () =
    // Prim.matmulT is the MatMul primitive itself: all four (transA, transB) backward arms
    Prop.forAll matmulArb (fun c ->
        let a = Array.append c.BatchA (if c.TransA then [| c.K; c.M |] else [| c.M; c.K |])
        let b = Array.append c.BatchB (if c.TransB then [| c.N; c.K |] else [| c.K; c.N |])
        matmulCheck c a b (fun x y -> Prim.matmulT x c.TransA y c.TransB))
    |> Prop.checkN "matmulT" cases

[<Fact>]
let ``stridedView and stridedEmbed match finite differences`` () =
    // x [2, 3, 4]: a transposed window with an offset, and the interleaving of two 2×2 planes
    // (the sub-pixel convolution's kind of window); each primitive is the other's adjoint
    let x = tensor Smooth 5 [| 2; 3; 4 |]
    checkOutput 6 (Prim.stridedView 1 [| 12; 1; 4 |] [| 2; 3; 2 |]) x
    checkOutput 7 (Prim.stridedView 0 [| 12; 4; 6; 1; 2 |] [| 2; 2; 2; 2; 1 |]) x
    let small = tensor Smooth 8 [| 2; 3; 2 |]
    checkOutput 9 (Prim.stridedEmbed [| 2; 3; 4 |] 1 [| 12; 1; 4 |]) small

[<Fact>]
let ``stridedView rejects windows that repeat or leave their tensor`` () =
    let x = tensor Smooth 10 [| 2; 3 |]

    let throws f =
        Assert.Throws<ShapeMismatchException>(Action(fun () -> f () |> ignore))
        |> ignore

    // stride 1 over three columns and two rows: position 1 twice
    throws (fun () -> Prim.stridedView 0 [| 1; 1 |] [| 2; 3 |] x)
    // the window's last position is 6, past the 6 elements
    throws (fun () -> Prim.stridedView 1 [| 3; 1 |] [| 2; 3 |] x)
    throws (fun () -> Prim.stridedEmbed [| 2; 2 |] 0 [| 2; 1 |] x)

/// Random [G, P, C] and [G, R, C] operands of cdistL1.
type PairwiseCase = {
    G: int
    P: int
    R: int
    C: int
    Seed: int
}

let private pairwiseArb =
    gen {
        let! g = Gen.choose (1, 3)
        let! p = Gen.choose (1, 4)
        let! r = Gen.choose (1, 4)
        let! c = Gen.choose (1, 5)
        let! seed = seedGen

        return {
            G = g
            P = p
            R = r
            C = c
            Seed = seed
        }
    }
    |> arb

/// Uniform values in [−2, 2] with row p of every group shifted by 5·(p + first): rows of
/// different shifts differ by at least 1 in every column, so no |a − b| of two of them sits
/// within a finite-difference step of its kink at 0 (which made a drawn case fail).
let private separatedRows (seed: int) (first: int) (shape: int[]) =
    let t = tensor Smooth seed shape
    let rows, cols = shape.[1], shape.[2]

    let shift =
        Tensor.ofArray64 [| 1; rows; cols |] (Array.init (rows * cols) (fun i -> 5.0 * float (i / cols + first)))

    Tensor.detach (t + shift)

[<Fact>]
let ``cdistL1 matches finite differences in both operands`` () =
    Prop.forAll pairwiseArb (fun c ->
        let ps =
            Map [
                "x", separatedRows c.Seed 0 [| c.G; c.P; c.C |]
                "y", separatedRows (c.Seed + 1) c.P [| c.G; c.R; c.C |]
            ]

        checkOutputs (c.Seed + 2) (fun p -> Tensor.cdistL1 p.["x"] p.["y"]) ps)
    |> Prop.checkN "cdistL1" cases

[<Fact>]
let ``cdistL1 of a tensor with itself matches finite differences, zero diagonal included`` () =
    // minibatch discrimination's use: the diagonal |xᵢ − xᵢ| is 0 under any perturbation, so its
    // derivative is 0, which the kernel's sign 0 = 0 gives
    Prop.forAll pairwiseArb (fun c ->
        checkOutput (c.Seed + 2) (fun x -> Tensor.cdistL1 x x) (separatedRows c.Seed 0 [| c.G; c.P; c.C |]))
    |> Prop.checkN "cdistL1 self" cases

[<Fact>]
let ``cdistL1 known values and gradients`` () =
    // worked by hand: x = [[0, 0], [1, 2]], y = [[1, 1]] → d = [[2], [1]];
    // with ḡ = 1: dx = [sign(0−1), sign(0−1); sign(1−1), sign(2−1)] = [[−1, −1], [0, 1]],
    // dy = −Σ_p sign(x_p − y) = −([−1, −1] + [0, 1]) = [1, 0]
    let x = Tensor.ofArray64 [| 1; 2; 2 |] [| 0.0; 0.0; 1.0; 2.0 |]
    let y = Tensor.ofArray64 [| 1; 1; 2 |] [| 1.0; 1.0 |]
    Assert.Equal<float[]>([| 2.0; 1.0 |], Tensor.toArray64 (Tensor.cdistL1 x y))

    let _, grads =
        Autodiff.valueAndGrads (fun p -> Tensor.sum (Tensor.cdistL1 p.["x"] p.["y"])) (Map [ "x", x; "y", y ])

    Assert.Equal<float[]>([| -1.0; -1.0; 0.0; 1.0 |], Tensor.toArray64 grads.["x"])
    Assert.Equal<float[]>([| 1.0; 0.0 |], Tensor.toArray64 grads.["y"])

[<Fact>]
let ``cdistL1 is symmetric under swapping its operands`` () =
    Prop.forAll pairwiseArb (fun c ->
        let x = tensor Smooth c.Seed [| c.G; c.P; c.C |]
        let y = tensor Smooth (c.Seed + 1) [| c.G; c.R; c.C |]
        let a = Tensor.toArray64 (Tensor.cdistL1 x y)
        let b = Tensor.toArray64 (Tensor.permute [| 0; 2; 1 |] (Tensor.cdistL1 y x))
        a = b)
    |> Prop.checkN "cdistL1 symmetry" cases

[<Fact>]
let ``linear matches finite differences with and without bias`` () =
    Prop.forAll matmulArb (fun c ->
        // x [batchA…, k] (or [k]), W [n, k], b [n]
        let x = Array.append c.BatchA [| c.K |]

        let ps =
            Map [
                "x", tensor Smooth c.Seed x
                "w", tensor Smooth (c.Seed + 1) [| c.N; c.K |]
                "b", tensor Smooth (c.Seed + 2) [| c.N |]
            ]

        checkOutputs (c.Seed + 3) (fun p -> Tensor.linear p.["x"] p.["w"] (Some p.["b"])) ps
        checkOutputs (c.Seed + 3) (fun p -> Tensor.linear p.["x"] p.["w"] None) (Map.remove "b" ps))
    |> Prop.checkN "linear" cases

// ------------------------------------------------------------------------------ convolution

/// A grouped convolution: x [N, G·Cg, H, W], w [G·Og, Cg, KH, KW].
type ConvCase = {
    N: int
    G: int
    Cg: int
    Og: int
    H: int
    W: int
    KH: int
    KW: int
    Spec: ConvSpec
    OutPadH: int
    OutPadW: int
    Seed: int
} with

    member c.XShape = [| c.N; c.G * c.Cg; c.H; c.W |]
    member c.WShape = [| c.G * c.Og; c.Cg; c.KH; c.KW |]
    /// The transposed convolution's weight [G·Cg, Og, KH, KW] for input x [N, G·Cg, H, W].
    member c.WTShape = [| c.G * c.Cg; c.Og; c.KH; c.KW |]

let private convGen =
    gen {
        let! n = Gen.choose (1, 2)
        let! g = Gen.choose (1, 2)
        let! cg = Gen.choose (1, 2)
        let! og = Gen.choose (1, 2)
        let! h = Gen.choose (1, 5)
        let! w = Gen.choose (1, 5)
        let! kh = Gen.choose (1, 3)
        let! kw = Gen.choose (1, 3)
        let! s = Gen.arrayOfLength 2 (Gen.choose (1, 2))
        let! pads = Gen.arrayOfLength 4 (Gen.choose (0, 2))
        let! d = Gen.arrayOfLength 2 (Gen.choose (1, 2))
        let! oph = Gen.choose (0, max s.[0] d.[0] - 1)
        let! opw = Gen.choose (0, max s.[1] d.[1] - 1)
        let! seed = seedGen

        return {
            N = n
            G = g
            Cg = cg
            Og = og
            H = h
            W = w
            KH = kh
            KW = kw
            Spec = {
                StrideH = s.[0]
                StrideW = s.[1]
                PadTop = pads.[0]
                PadBottom = pads.[1]
                PadLeft = pads.[2]
                PadRight = pads.[3]
                DilationH = d.[0]
                DilationW = d.[1]
                Groups = g
            }
            OutPadH = oph
            OutPadW = opw
            Seed = seed
        }
    }
    |> Gen.filter (fun c ->
        Shape.numel c.XShape <= 60
        && ConvSpec.outSize c.H c.Spec.PadTop c.Spec.PadBottom c.KH c.Spec.StrideH c.Spec.DilationH
           >= 1
        && ConvSpec.outSize c.W c.Spec.PadLeft c.Spec.PadRight c.KW c.Spec.StrideW c.Spec.DilationW
           >= 1)

[<Fact>]
let ``conv2d matches finite differences in input and weight`` () =
    Prop.forAll (arb convGen) (fun c ->
        let ps =
            Map [ "x", tensor Smooth c.Seed c.XShape; "w", tensor Smooth (c.Seed + 1) c.WShape ]

        checkOutputs (c.Seed + 2) (fun p -> Tensor.conv2d c.Spec p.["x"] p.["w"]) ps)
    |> Prop.checkN "conv2d" cases

[<Fact>]
let ``conv2d weight-gradient primitive matches finite differences in both operands`` () =
    // Prim.conv2dWeightGrad (the ConvWeightGrad primitive, reached by second-order differentiation)
    Prop.forAll (arb convGen) (fun c ->
        let gShape = ConvSpec.outputShape "test" c.Spec c.XShape c.WShape

        let ps =
            Map [ "x", tensor Smooth c.Seed c.XShape; "g", tensor Smooth (c.Seed + 1) gShape ]

        checkOutputs (c.Seed + 2) (fun p -> Prim.conv2dWeightGrad c.Spec c.WShape p.["x"] p.["g"]) ps)
    |> Prop.checkN "conv2dWeightGrad" cases

/// The transposed-convolution geometry of a case: its output height and width (PyTorch's formula).
let private transposedSize (c: ConvCase) =
    let s = c.Spec

    (c.H - 1) * s.StrideH - s.PadTop - s.PadBottom
    + s.DilationH * (c.KH - 1)
    + c.OutPadH
    + 1,
    (c.W - 1) * s.StrideW - s.PadLeft - s.PadRight
    + s.DilationW * (c.KW - 1)
    + c.OutPadW
    + 1

[<Fact>]
let ``convTranspose2d matches finite differences in input and weight with output padding`` () =
    // output padding below the stride (PyTorch accepts up to max(stride, dilation) − 1; the case
    // stride < output padding < dilation is a separate test in TensorTests)
    let gen' =
        convGen
        |> Gen.filter (fun c ->
            let h, w = transposedSize c

            c.OutPadH < c.Spec.StrideH
            && c.OutPadW < c.Spec.StrideW
            && h >= 1
            && w >= 1
            && Shape.numel c.XShape <= 40)

    Prop.forAll (arb gen') (fun c ->
        let ps =
            Map [
                "x", tensor Smooth c.Seed c.XShape
                "w", tensor Smooth (c.Seed + 1) c.WTShape
            ]

        checkOutputs (c.Seed + 2) (fun p -> Tensor.convTranspose2d c.Spec c.OutPadH c.OutPadW p.["x"] p.["w"]) ps)
    |> Prop.checkN "convTranspose2d" cases

// ------------------------------------------------------------------------------ upsampling

/// Nearest factors and a bilinear target size for the last two axes.
type UpsampleCase = {
    Shape: int[]
    ScaleH: int
    ScaleW: int
    OutH: int
    OutW: int
    Seed: int
}

let private upsampleArb =
    gen {
        let! s = shapeGenR 2 4 |> Gen.filter (fun s -> Shape.numel s <= 24)
        let! sh = Gen.choose (1, 3)
        let! sw = Gen.choose (1, 3)
        let! oh = Gen.choose (1, 7)
        let! ow = Gen.choose (1, 7)
        let! seed = seedGen

        return {
            Shape = s
            ScaleH = sh
            ScaleW = sw
            OutH = oh
            OutW = ow
            Seed = seed
        }
    }
    |> arb

[<Fact>]
let ``upsampleNearest matches finite differences`` () =
    Prop.forAll upsampleArb (fun c ->
        checkOutput (c.Seed + 1) (Tensor.upsampleNearest c.ScaleH c.ScaleW) (tensor Smooth c.Seed c.Shape))
    |> Prop.checkN "upsampleNearest" cases

[<Fact>]
let ``upsampleBilinear matches finite differences when enlarging and shrinking`` () =
    Prop.forAll upsampleArb (fun c ->
        checkOutput (c.Seed + 1) (Tensor.upsampleBilinear c.OutH c.OutW) (tensor Smooth c.Seed c.Shape))
    |> Prop.checkN "upsampleBilinear" cases

// ------------------------------------------------------------------------------ graph structure

[<Fact>]
let ``fan-out sums the gradient of every use`` () =
    // f(x) = Σ x·x + x + eˣ·x + x/(1+x²): f'(x) = 2x + 1 + eˣ(1+x) + (1−x²)/(1+x²)²
    Prop.forAll unaryArb (fun c ->
        let f (x: Tensor) =
            Tensor.sum (x * x + x + Tensor.exp x * x + x / (1.0 + x * x))

        let x = tensor Smooth c.Seed c.Shape
        checkGrad f x

        let expected =
            Tensor.toArray64 x
            |> Array.map (fun v -> 2.0 * v + 1.0 + exp v * (1.0 + v) + (1.0 - v * v) / ((1.0 + v * v) ** 2.0))

        match compareArrays tolerance "closed form" (Tensor.toArray64 (Autodiff.grad f x)) expected with
        | Some msg -> failwith msg
        | None -> ())
    |> Prop.checkN "fan-out" cases

[<Fact>]
let ``a chain of 100000 additions differentiates without stack overflow`` () =
    let x = Tensor.ofArray64 [| 3 |] [| 1.0; -2.0; 0.5 |]

    let f (x: Tensor) =
        let mutable y = x

        for _ in 1..100_000 do
            y <- y + 0.0

        Tensor.sum (y * y)

    Assert.Equal<float[]>([| 2.0; -4.0; 1.0 |], Tensor.toArray64 (Autodiff.grad f x))

[<Fact>]
let ``a chain of 100000 tanh differentiates to the product of local derivatives`` () =
    // y₀ = x, yₖ = tanh yₖ₋₁: dy/dx = Πₖ (1 − yₖ²), accumulated here in plain floats
    let n = 100_000

    let f (x: Tensor) =
        let mutable y = x

        for _ in 1..n do
            y <- Tensor.tanh y

        Tensor.sum y

    let mutable y = 0.8
    let mutable d = 1.0

    for _ in 1..n do
        y <- Math.Tanh y
        d <- d * (1.0 - y * y)

    let g = Autodiff.grad f (Tensor.scalarAs Float64 0.8) |> Tensor.item
    Assert.True(abs (g - d) <= 1e-9 * abs d, sprintf "got %g, expected %g" g d)

[<Fact>]
let ``detach stops the gradient`` () =
    // d/dx Σ x·detach(x) = detach(x) = x (not 2x); d/dx Σ detach(x)² = 0
    let x = Tensor.ofArray64 [| 2; 2 |] [| 1.0; -2.0; 3.0; 0.5 |]

    Assert.Equal<float[]>(
        Tensor.toArray64 x,
        Autodiff.grad (fun x -> Tensor.sum (x * Tensor.detach x)) x |> Tensor.toArray64
    )

    Assert.Equal<float[]>(
        Array.zeroCreate 4,
        Autodiff.grad (fun x -> Tensor.sum (Tensor.square (Tensor.detach x))) x
        |> Tensor.toArray64
    )

[<Fact>]
let ``a function that does not depend on x has a zero gradient of x's shape`` () =
    let x = Tensor.ofArray64 [| 2; 3 |] [| 1.0; 2.0; 3.0; 4.0; 5.0; 6.0 |]
    let c = Tensor.ofArray64 [| 2 |] [| 7.0; 8.0 |]

    for f in [ (fun (_: Tensor) -> Tensor.sum c); (fun _ -> Tensor.scalarAs Float64 3.0) ] do
        let v, g = Autodiff.valueAndGrad f x
        Assert.True(Tensor.item v > 0.0)
        Assert.Equal<int[]>([| 2; 3 |], Tensor.shape g)
        Assert.Equal(Float64, Tensor.dtype g)
        Assert.Equal<float[]>(Array.zeroCreate 6, Tensor.toArray64 g)

    // only one of two parameters used: the other gets zeros
    let gs =
        Autodiff.grads (fun p -> Tensor.sum (p.["a"] * 2.0)) (Map [ "a", c; "b", x ])

    Assert.Equal<float[]>([| 2.0; 2.0 |], Tensor.toArray64 gs.["a"])
    Assert.Equal<float[]>(Array.zeroCreate 6, Tensor.toArray64 gs.["b"])

[<Fact>]
let ``vjp equals the gradient of the cotangent-weighted output`` () =
    Prop.forAll unaryArb (fun c ->
        let f (x: Tensor) = Tensor.tanh x * Tensor.exp (x * 0.5)
        let x = tensor Smooth c.Seed c.Shape
        let y0 = f x
        let v = weightsFor (c.Seed + 1) y0
        let y, g = Autodiff.vjp f x v
        Assert.Equal<float[]>(Tensor.toArray64 y0, Tensor.toArray64 y)
        let expected = Autodiff.grad (weighted (c.Seed + 1) f) x

        match compareArrays tolerance "vjp" (Tensor.toArray64 g) (Tensor.toArray64 expected) with
        | Some msg -> failwith msg
        | None -> ())
    |> Prop.checkN "vjp" cases

// ------------------------------------------------------------------------------ float32

[<Fact>]
let ``float32 gradients agree with float64 gradients`` () =
    // a small conv net: conv2d → leakyRelu → avgPool → flatten → linear → logsumexp, plus a
    // softplus/sigmoid/sqrt side branch; the same constants in both precisions
    let x64 = tensor Smooth 1 [| 2; 2; 5; 5 |]
    let w64 = tensor Smooth 2 [| 3; 2; 3; 3 |] * 0.3
    let l64 = tensor Smooth 3 [| 4; 12 |] * 0.3

    let f (w: Tensor) (l: Tensor) (x: Tensor) =
        let h = Tensor.conv2d (ConvSpec.create 1 1 1 1) x w |> Tensor.leakyRelu 0.1
        let p = Tensor.avgPool2d 2 2 (ConvSpec.create 2 0 1 1) h |> Tensor.flatten 1
        let z = Tensor.linear p l None
        let side = Tensor.sqrt (Tensor.softplus x + 1.0) * Tensor.sigmoid x
        Tensor.sum (Tensor.logsumexp [| 1 |] false z) + Tensor.mean side

    let g64 = Autodiff.grad (f w64 l64) x64 |> Tensor.toArray64

    let g32 =
        Autodiff.grad (f (Tensor.cast Float32 w64) (Tensor.cast Float32 l64)) (Tensor.cast Float32 x64)

    Assert.Equal(Float32, Tensor.dtype g32)

    match compareArrays { Atol = 1e-5; Rtol = 1e-4 } "float32 vs float64" (Tensor.toArray64 g32) g64 with
    | Some msg -> failwith msg
    | None -> ()

// ------------------------------------------------------------------------------ the checker itself

[<Fact>]
let ``the checker rejects wrong derivative rules`` () =
    // The analytic side replaced by plausible mistakes, computed by hand from the values:
    // tanh with (1 − y) instead of (1 − y²), div with a flipped sign, a sum-to-shape that forgot to sum.
    let x = tensor Smooth 5 [| 3; 4 |]
    let xs = Tensor.toArray64 x
    let numericTanh = numericGrad (Tensor.tanh >> Tensor.sum) x
    let wrongTanh = xs |> Array.map (fun v -> 1.0 - tanh v)
    let rightTanh = xs |> Array.map (fun v -> 1.0 - tanh v * tanh v)
    Assert.True((compareArrays tolerance "tanh" wrongTanh numericTanh).IsSome)
    Assert.True((compareArrays tolerance "tanh" rightTanh numericTanh).IsNone)

    let b = tensor NonZero 6 [| 3; 4 |]
    let numericDiv = numericGrad (fun b -> Tensor.sum (x / b)) b
    let flipped = Array.map2 (fun a d -> a / (d * d)) xs (Tensor.toArray64 b)
    Assert.True((compareArrays tolerance "div" flipped numericDiv).IsSome)

    let row = tensor Smooth 7 [| 4 |]
    let numericBroadcast = numericGrad (fun r -> Tensor.sum (x * r)) row
    let unsummed = xs.[0..3] // only the first row's contribution
    Assert.True((compareArrays tolerance "broadcast" unsummed numericBroadcast).IsSome)

    // and a small relative error (1e-3) is caught too
    Assert.True((compareArrays tolerance "tanh" (rightTanh |> Array.map (fun v -> v * 1.001)) numericTanh).IsSome)
