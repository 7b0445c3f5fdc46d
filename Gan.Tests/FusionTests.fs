/// Fused primitives the tape builds on its own: a LeakyReLU or ReLU of a BatchNorm's output is
/// one node (the tape keeps less), with the gradients of the two separate nodes, and only at
/// first order (a gradient of a gradient needs the normalised values).
module FusionTests

open System
open Xunit
open Gan.Functional
open GradCheck

let private bnAct (fuse: bool) (alpha: float) (seen: (bool -> unit)) (ps: Map<string, Tensor>) =
    let x, gamma, beta, w = ps.["x"], ps.["gamma"], ps.["beta"], ps.["w"]
    let y, _, _ = Prim.batchNorm 1e-5 x gamma beta
    // a multiply by one in between keeps the two nodes apart
    let a = Tensor.leakyRelu alpha (if fuse then y else y * 1.0)

    match a with
    | TRev n ->
        seen (
            match n.Op with
            | BatchNormAct _ -> true
            | _ -> false
        )
    | TConst _ -> seen false

    Tensor.sum (a * w) + Tensor.sum (Tensor.square a)

[<Fact>]
let ``leakyRelu of a batchNorm output is one fused node with the unfused gradients`` () =
    let ks = Random.splitN 4 (Random.key 21UL)

    let ps =
        Map [
            "x", Tensor.randn ks.[0] [| 8; 5; 6; 7 |] * 2.0 + 0.5
            "gamma", Tensor.randn ks.[1] [| 5 |]
            "beta", Tensor.randn ks.[2] [| 5 |]
            "w", Tensor.randn ks.[3] [| 8; 5; 6; 7 |]
        ]
        |> Map.map (fun _ t -> Tensor.cast Float64 t)

    for alpha in [ 0.0; 0.2 ] do
        let mutable fused = false
        let mutable split = true
        let got = Autodiff.grads (bnAct true alpha (fun f -> fused <- f)) ps
        let expected = Autodiff.grads (bnAct false alpha (fun f -> split <- f)) ps
        Assert.True(fused, "leakyRelu after batchNorm was not fused")
        Assert.False(split, "the multiply by one did not keep the nodes apart")

        assertGradsClose tolerance (sprintf "α %g" alpha) got expected

[<Fact>]
let ``leakyRelu of a batchNorm output is not fused inside a nested differentiation`` () =
    // the gradient of a gradient needs the normalised values at the outer level
    let ks = Random.splitN 3 (Random.key 22UL)
    let x = Tensor.randn ks.[0] [| 6; 3; 4 |]
    let gamma = Tensor.randn ks.[1] [| 3 |]
    let beta = Tensor.randn ks.[2] [| 3 |]
    let mutable fusedInside = true

    let inner (x: Tensor) =
        let y, _, _ = Prim.batchNorm 1e-5 x gamma beta
        let a = Tensor.leakyRelu 0.2 y

        match a with
        | TRev n ->
            match n.Op with
            | BatchNormAct _ -> ()
            | _ -> fusedInside <- false
        | TConst _ -> ()

        Tensor.sum (Tensor.square a)

    let h = Autodiff.hvp inner x (Tensor.onesLike x)
    Assert.False(fusedInside, "fused under an outer level")
    Assert.True(Tensor.toArray64 h |> Array.forall Double.IsFinite)

// ------------------------------------------------------------------------------ upsample + conv

/// Σ r ⊙ conv2d(upsample×2(x), w) (3×3, padding 1); `fuse` false puts a multiply by one between
/// the two so the convolution sees a plain tensor. Reports whether the sub-pixel form ran (its
/// output is a reshape of a strided view).
let private upConv (fuse: bool) (seen: bool -> unit) (ps: Map<string, Tensor>) =
    let up = Tensor.upsampleNearest 2 2 ps.["x"]

    let y =
        Tensor.conv2d (ConvSpec.create 1 1 1 1) (if fuse then up else up * 1.0) ps.["w"]

    match y with
    | TRev n ->
        seen (
            match n.Op with
            | Reshape(TRev v) ->
                match v.Op with
                | StridedView _ -> true
                | _ -> false
            | _ -> false
        )
    | TConst _ -> seen false

    Tensor.sum (y * ps.["r"]) + Tensor.sum (Tensor.square y)

let private upConvParams (seed: uint64) (n: int) (c: int) (h: int) (w: int) (o: int) =
    let ks = Random.splitN 3 (Random.key seed)

    Map [
        "x", Tensor.randn ks.[0] [| n; c; h; w |]
        "w", Tensor.randn ks.[1] [| o; c; 3; 3 |]
        "r", Tensor.randn ks.[2] [| n; o; 2 * h; 2 * w |]
    ]
    |> Map.map (fun _ t -> Tensor.cast Float64 t)

[<Fact>]
let ``conv2d of a nearest upsampling runs in the sub-pixel form with the plain values and gradients`` () =
    // non-square images, more output than input channels and the reverse; border pixels
    // exercise the padding taps
    for (seed, n, c, h, w, o) in [ (31UL, 2, 3, 4, 5, 2); (32UL, 1, 2, 3, 3, 5); (33UL, 3, 1, 1, 2, 1) ] do
        let ps = upConvParams seed n c h w o
        let mutable fused = false
        let mutable split = true
        let valueFused, got = Autodiff.valueAndGrads (upConv true (fun f -> fused <- f)) ps

        let valuePlain, expected =
            Autodiff.valueAndGrads (upConv false (fun f -> split <- f)) ps

        Assert.True(fused, "conv2d after upsampleNearest 2 did not take the sub-pixel form")
        Assert.False(split, "the multiply by one did not keep the upsampling apart")
        let what = sprintf "%A" (n, c, h, w, o)

        match compareArrays tolerance what (Tensor.toArray64 valueFused) (Tensor.toArray64 valuePlain) with
        | Some msg -> failwith msg
        | None -> ()

        assertGradsClose tolerance what got expected

[<Fact>]
let ``the sub-pixel convolution matches finite differences to second order`` () =
    let ps = upConvParams 34UL 2 2 3 4 3
    checkGrads (upConv true ignore) ps
    // the gradient's norm as a function of x: a gradient penalty through the sub-pixel form
    let penalty (x: Tensor) =
        let g = Autodiff.grad (fun x -> upConv true ignore (Map.add "x" x ps)) x
        Tensor.sum (Tensor.square g)

    checkGradWith looseTolerance penalty ps.["x"]
