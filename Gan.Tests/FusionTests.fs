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
