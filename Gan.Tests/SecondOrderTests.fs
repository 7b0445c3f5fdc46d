/// Higher-order differentiation: Hessian-vector products of functions with known Hessians, HVPs
/// of composites against finite differences of the gradient, the WGAN-GP gradient penalty (the
/// gradient of a gradient norm) through dense and conv critics, perturbation confusion, third
/// derivatives and mixed partials.
module SecondOrderTests

open System
open Xunit
open FsCheck
open FsCheck.FSharp
open Gan.Functional
open GradCheck

let private cases = 30

let private assertClose (tol: Tolerance) (what: string) (expected: float[]) (actual: Tensor) =
    match compareArrays tol what (Tensor.toArray64 actual) expected with
    | Some msg -> failwith msg
    | None -> ()

let private vec (xs: float list) =
    Tensor.ofArray64 [| xs.Length |] (Array.ofList xs)

let private s64 (v: float) = Tensor.scalarAs Float64 v

/// A point and a direction of one random shape.
type HvpCase = { Shape: int[]; Seed: int }

let private hvpArb =
    gen {
        let! s = shapeGenR 0 3
        let! seed = seedGen
        return { Shape = s; Seed = seed }
    }
    |> Arb.fromGen

// ------------------------------------------------------------------------------ known Hessians

[<Fact>]
let ``hvp of sum of cubes is 6 x times v`` () =
    // f = Σ xᵢ³: ∇f = 3x², ∇²f = diag(6x), so H v = 6 x ⊙ v
    Prop.forAll hvpArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape
        let v = tensor Smooth (c.Seed + 1) c.Shape
        let hv = Autodiff.hvp (fun x -> Tensor.sum (x ** 3.0)) x v

        let expected =
            Array.map2 (fun x v -> 6.0 * x * v) (Tensor.toArray64 x) (Tensor.toArray64 v)

        assertClose tolerance "H v" expected hv)
    |> Prop.checkN "hvp cubes" cases

[<Fact>]
let ``hvp through leakyRelu is 2 slope squared times v`` () =
    // f = Σ leakyRelu(x)²: ∇f = 2·s(x)²·x with s = 1 (x > 0) or α, piecewise constant, so
    // H v = 2 s² ⊙ v: the inner gradient carries the primitive's slope as a constant factor
    let alpha = 0.2

    Prop.forAll hvpArb (fun c ->
        let x = tensor NonZero c.Seed c.Shape
        let v = tensor Smooth (c.Seed + 1) c.Shape

        let hv =
            Autodiff.hvp (fun x -> Tensor.sum (Tensor.square (Tensor.leakyRelu alpha x))) x v

        let expected =
            Array.map2
                (fun x v -> 2.0 * (if x > 0.0 then 1.0 else alpha * alpha) * v)
                (Tensor.toArray64 x)
                (Tensor.toArray64 v)

        assertClose tolerance "H v" expected hv)
    |> Prop.checkN "hvp leakyRelu" cases

[<Fact>]
let ``hvp through cdistL1 is 2 J transposed J v`` () =
    // f = Σ d², d = cdistL1(x, y) with y fixed: ∂d[p, r]/∂x[p, c] = s[p, r, c] = sign(x_pc − y_rc),
    // piecewise constant, so H v [p, c] = Σ_r 2·s[p, r, c]·Σ_c' s[p, r, c']·v[p, c'] (one group).
    // The inner gradient is tracked, so this runs the rule's composed (nested) form.
    Prop.forAll hvpArb (fun c ->
        let shape = [| 1; 3; 4 |]
        let x = tensor Smooth c.Seed shape
        let y = tensor Smooth (c.Seed + 1) [| 1; 2; 4 |]
        let v = tensor Smooth (c.Seed + 2) shape
        let hv = Autodiff.hvp (fun x -> Tensor.sum (Tensor.square (Tensor.cdistL1 x y))) x v
        let xs, ys, vs = Tensor.toArray64 x, Tensor.toArray64 y, Tensor.toArray64 v

        let s p r k =
            float (sign (xs.[p * 4 + k] - ys.[r * 4 + k]))

        let expected =
            Array.init 12 (fun i ->
                let p, k = i / 4, i % 4

                List.sum [
                    for r in 0..1 -> 2.0 * s p r k * List.sum [ for k' in 0..3 -> s p r k' * vs.[p * 4 + k'] ]
                ])

        assertClose tolerance "H v" expected hv)
    |> Prop.checkN "hvp cdistL1" cases

[<Fact>]
let ``hvp of a quadratic form is the symmetrised matrix times v`` () =
    // f = ½ xᵀAx: ∇f = ½(A + Aᵀ)x, H = ½(A + Aᵀ), so H v = ½(A + Aᵀ)v for any x.
    // A = [[1, 2], [0, 3]], v = [1, −1]: ½(A + Aᵀ) = [[1, 1], [1, 3]], H v = [0, −2].
    let a = Tensor.ofArray64 [| 2; 2 |] [| 1.0; 2.0; 0.0; 3.0 |]
    let f (x: Tensor) = 0.5 * Tensor.dot x (Tensor.matmul a x)
    let hv = Autodiff.hvp f (vec [ 0.3; -1.7 ]) (vec [ 1.0; -1.0 ])
    Assert.Equal<float[]>([| 0.0; -2.0 |], Tensor.toArray64 hv)

    // and for random A, x, v of size 4
    Prop.forAll hvpArb (fun c ->
        let a = tensor Smooth c.Seed [| 4; 4 |]
        let x = tensor Smooth (c.Seed + 1) [| 4 |]
        let v = tensor Smooth (c.Seed + 2) [| 4 |]
        let f (x: Tensor) = 0.5 * Tensor.dot x (Tensor.matmul a x)
        let am = Tensor.toArray64 a
        let vs = Tensor.toArray64 v

        let expected =
            Array.init 4 (fun i -> Seq.sum (seq { for j in 0..3 -> 0.5 * (am.[i * 4 + j] + am.[j * 4 + i]) * vs.[j] }))

        assertClose tolerance "H v" expected (Autodiff.hvp f x v))
    |> Prop.checkN "hvp quadratic" cases

[<Fact>]
let ``hvp of elementwise functions is the second derivative times v`` () =
    // Σ eˣ: eˣ ⊙ v;  Σ tanh x: −2 tanh x (1 − tanh² x) ⊙ v;  Σ ln x: −v / x²;  Σ √x: −v / (4 x^1.5);
    // Σ σ(x): σ(1−σ)(1−2σ) ⊙ v
    Prop.forAll hvpArb (fun c ->
        let x = tensor Smooth c.Seed c.Shape
        let xp = tensor Positive c.Seed c.Shape
        let v = tensor Smooth (c.Seed + 1) c.Shape
        let vs = Tensor.toArray64 v

        let on (x: Tensor) (d2: float -> float) =
            Array.map2 (fun x v -> d2 x * v) (Tensor.toArray64 x) vs

        let sigma z = 1.0 / (1.0 + exp -z)
        assertClose tolerance "exp" (on x exp) (Autodiff.hvp (Tensor.exp >> Tensor.sum) x v)

        assertClose
            tolerance
            "tanh"
            (on x (fun z -> -2.0 * tanh z * (1.0 - tanh z * tanh z)))
            (Autodiff.hvp (Tensor.tanh >> Tensor.sum) x v)

        assertClose tolerance "log" (on xp (fun z -> -1.0 / (z * z))) (Autodiff.hvp (Tensor.log >> Tensor.sum) xp v)

        assertClose
            tolerance
            "sqrt"
            (on xp (fun z -> -0.25 * z ** -1.5))
            (Autodiff.hvp (Tensor.sqrt >> Tensor.sum) xp v)

        assertClose
            tolerance
            "sigmoid"
            (on x (fun z -> sigma z * (1.0 - sigma z) * (1.0 - 2.0 * sigma z)))
            (Autodiff.hvp (Tensor.sigmoid >> Tensor.sum) x v))
    |> Prop.checkN "hvp elementwise" cases

/// A scalar function of one input of fixed shape, with the kind of values to draw for it.
type Composite = {
    Name: string
    Shape: int[]
    Kind: Values
    F: Tensor -> Tensor
}

let private composite name shape kind f = {
    Name = name
    Shape = shape
    Kind = kind
    F = f
}

/// Composites whose Hessian-vector products are checked against central differences of the exact
/// first-order gradient, (∇f(x + hv) − ∇f(x − hv)) / 2h: together they exercise the derivative of
/// every backward rule (cast aside: a float32 round trip is not finite-differentiable).
let private composites: Composite list =
    let w = tensor Smooth 11 [| 4; 3 |]
    let k = tensor Smooth 12 [| 3; 2; 2; 2 |]
    let kg = tensor Smooth 13 [| 4; 1; 2; 2 |]
    let kt = tensor Smooth 14 [| 2; 1; 2; 2 |]

    [
        composite "softplus and logSigmoid" [| 3; 4 |] Smooth (fun x ->
            Tensor.sum (Tensor.softplus x * x + Tensor.logSigmoid (x * 3.0)))
        composite "logsumexp" [| 3; 4 |] Smooth (fun x -> Tensor.sum (Tensor.logsumexp [| -1 |] false (x * 2.0)))
        composite "div, pow, sqrt, log" [| 3; 4 |] Positive (fun x ->
            Tensor.sum (x / (1.0 + x * x) + Tensor.pow x (x * 0.5) + Tensor.sqrt x * Tensor.log x))
        composite "var and mean" [| 3; 4 |] Smooth (fun x ->
            Tensor.var x * Tensor.mean (Tensor.exp x)
            + Tensor.sum (Tensor.varAxes [| 0 |] false false x ** 2.0))
        composite "tanh(x W)" [| 2; 4 |] Smooth (fun x -> Tensor.sum (Tensor.tanh (Tensor.matmul x w) ** 2.0))
        composite "batched matmul" [| 2; 2; 2 |] Smooth (fun x ->
            Tensor.sum (Tensor.sigmoid (Tensor.matmul x (Tensor.transpose 1 2 x)))
            + Tensor.sum (Tensor.linear x (Tensor.select 0 0 x) None ** 2.0))
        composite "conv2d" [| 1; 2; 4; 4 |] Smooth (fun x ->
            Tensor.sum (Tensor.tanh (Tensor.conv2d (ConvSpec.create 1 1 1 1) x k) ** 2.0))
        composite "grouped strided dilated conv2d with x as weight" [| 1; 2; 4; 4 |] Smooth (fun x ->
            let spec = {
                ConvSpec.create 2 1 2 2 with
                    PadTop = 0
                    PadRight = 2
            }

            let y = Tensor.conv2d spec x kg
            // x also as the weight: second order in both conv operands
            let z =
                Tensor.conv2d ConvSpec.unit y (Tensor.reshape [| 2; 4; 1; 2 |] (Tensor.narrow 2 0 2 x))

            Tensor.sum (Tensor.tanh y ** 2.0) + Tensor.sum (z ** 2.0))
        composite "convTranspose2d" [| 1; 2; 3; 3 |] Smooth (fun x ->
            Tensor.sum (Tensor.tanh (Tensor.convTranspose2d (ConvSpec.create 2 1 1 1) 1 0 x kt) ** 2.0))
        composite "abs, relu, leakyRelu, clamp" [| 3; 4 |] NonZero (fun x ->
            Tensor.sum (
                Tensor.abs x * x * x
                + Tensor.relu x ** 3.0
                + Tensor.leakyRelu 0.3 x ** 2.0
                + Tensor.clamp -0.1 0.1 x * x
            ))
        composite "structure" [| 2; 3 |] Distinct (fun x ->
            let y =
                x
                |> Tensor.pad [| 1; 0 |] [| 0; 2 |]
                |> Tensor.transpose 0 1
                |> Tensor.expand [| 2; 5; 3 |]
                |> Tensor.narrow 1 1 3
                |> Tensor.indexSelect 2 [| 0; 2; 2 |]

            let s = Tensor.stack 0 [ x; x * x ] |> Tensor.repeat [| 1; 2; 1 |]

            Tensor.sum (y ** 3.0)
            + Tensor.sum (Tensor.maxAxes [| 1 |] false (x ** 3.0))
            + Tensor.sum (Tensor.upsampleBilinear 3 5 x ** 2.0)
            + Tensor.sum (Tensor.upsampleNearest 2 1 x ** 3.0)
            + Tensor.sum (Tensor.gather 1 [| 2; 2 |] [| 0; 2; 1; 1 |] x ** 3.0)
            + Tensor.sum (s ** 3.0))
        composite "pooling" [| 1; 2; 4; 4 |] Distinct (fun x ->
            Tensor.sum (Tensor.maxPool2d 2 2 (ConvSpec.create 2 0 1 1) x ** 3.0)
            + Tensor.sum (Tensor.avgPool2d 3 3 (ConvSpec.create 1 1 1 1) x ** 2.0))
        composite "where, maximum, minimum" [| 3; 4 |] GridA (fun x ->
            let c = Tensor.fullLike x 0.1

            Tensor.sum (
                Tensor.maximum x c ** 3.0
                + Tensor.minimum x c ** 2.0 * x
                + Tensor.where (Tensor.gt x c) (x * x) (x * 3.0)
            ))
    ]

[<Fact>]
let ``hvp of composites matches finite differences of the gradient`` () =
    let caseArb =
        gen {
            let! i = Gen.choose (0, composites.Length - 1)
            let! seed = seedGen
            return i, seed
        }
        |> Arb.fromGen

    let check (i, seed) =
        let {
                Name = name
                Shape = shape
                Kind = kind
                F = f
            } =
            composites.[i]

        let x = tensor kind seed shape
        let v = tensor Smooth (seed + 1) shape
        let hv = Autodiff.hvp f x v
        let h = 1e-6
        let xs, vs = Tensor.toArray64 x, Tensor.toArray64 v

        let at sign =
            Tensor.ofArray64 shape (Array.map2 (fun x v -> x + sign * h * v) xs vs)

        let gp, gm =
            Tensor.toArray64 (Autodiff.grad f (at 1.0)), Tensor.toArray64 (Autodiff.grad f (at -1.0))

        let numeric = Array.map2 (fun p m -> (p - m) / (2.0 * h)) gp gm
        assertClose tolerance ("H v of " + name) numeric hv

    // every composite at a fixed seed, then random ones
    for i in 0 .. composites.Length - 1 do
        check (i, 1000 + i)

    Prop.forAll caseArb check |> Prop.checkN "hvp composites" 60

[<Fact>]
let ``the Hessian assembled from hvp columns is symmetric`` () =
    // H e_j for each basis vector; a wrong second-order rule typically breaks Hᵢⱼ = Hⱼᵢ
    let { Shape = shape; Kind = kind; F = f } =
        composites |> List.find (fun c -> c.Name = "conv2d")

    let x = tensor kind 3 shape
    let n = Shape.numel shape

    let columns =
        Array.init n (fun j ->
            let e = Array.init n (fun i -> if i = j then 1.0 else 0.0) |> Tensor.ofArray64 shape
            Autodiff.hvp f x e |> Tensor.toArray64)

    for i in 0 .. n - 1 do
        for j in 0 .. i - 1 do
            let a, b = columns.[j].[i], columns.[i].[j]
            Assert.True(abs (a - b) <= 1e-10 * (1.0 + abs a), sprintf "H[%d,%d] = %g but H[%d,%d] = %g" i j a j i b)

// ------------------------------------------------------------------------------ WGAN-GP

/// WGAN-GP's penalty: mean over samples of (‖∇ₓD(x)ᵢ‖₂ − 1)², the gradient taken inside.
let private penalty (critic: Map<string, Tensor> -> Tensor -> Tensor) (p: Map<string, Tensor>) =
    let x = p.["x"]
    let g = Autodiff.grad (critic p) x
    let n = (Tensor.shape x).[0]

    let norms =
        Tensor.sqrt (Tensor.sumAxes [| 1 |] false (Tensor.square (Tensor.reshape [| n; -1 |] g)))

    Tensor.mean (Tensor.square (norms - 1.0))

[<Fact>]
let ``gradient penalty of a linear critic has the closed form`` () =
    // D(x) = Σ x w: ∇ₓD = w for every sample, penalty = (‖w‖ − 1)², d/dw = 2(‖w‖ − 1) w/‖w‖.
    // w = [3, 4]: ‖w‖ = 5, penalty = 16, d/dw = 2·4·[0.6, 0.8] = [4.8, 6.4]; d/dx = 0.
    let critic (p: Map<string, Tensor>) (x: Tensor) = Tensor.sum (Tensor.matmul x p.["w"])

    let p =
        Map [
            "w", vec [ 3.0; 4.0 ]
            "x", Tensor.ofArray64 [| 3; 2 |] [| 1.0; 2.0; -1.0; 0.5; 0.0; 7.0 |]
        ]

    let value, grads = Autodiff.valueAndGrads (penalty critic) p
    Assert.Equal(16.0, Tensor.item value, 12)
    assertClose tolerance "d/dw" [| 4.8; 6.4 |] grads.["w"]
    assertClose tolerance "d/dx" (Array.zeroCreate 6) grads.["x"]

[<Fact>]
let ``gradient penalty of a dense critic matches finite differences in every parameter and the input`` () =
    // D(x) = Σ tanh(x W + b) ⊙ u, x [4, 3], W [3, 5], b [5], u [5]
    let critic (p: Map<string, Tensor>) (x: Tensor) =
        Tensor.sum (Tensor.tanh (Tensor.matmul x p.["W"] + p.["b"]) * p.["u"])

    Prop.forAll (Arb.fromGen seedGen) (fun seed ->
        let p =
            Map [
                "W", tensor Smooth seed [| 3; 5 |]
                "b", tensor Smooth (seed + 1) [| 5 |]
                "u", tensor Smooth (seed + 2) [| 5 |]
                "x", tensor Smooth (seed + 3) [| 4; 3 |]
            ]

        checkGradsWith looseTolerance (penalty critic) p)
    |> Prop.checkN "WGAN-GP dense" 20

/// A conv critic: softplus(conv2d x W1) → conv2d W2 (grouped) → tanh, weighted by u.
type ConvCriticCase = { Spec: ConvSpec; Seed: int }

[<Fact>]
let ``gradient penalty of a conv critic matches finite differences in conv weights and the input`` () =
    let caseArb =
        gen {
            let! s = Gen.choose (1, 2)
            let! pads = Gen.arrayOfLength 4 (Gen.choose (0, 1))
            let! d = Gen.choose (1, 2)
            let! seed = seedGen

            return {
                Spec = {
                    StrideH = s
                    StrideW = 3 - s
                    PadTop = pads.[0]
                    PadBottom = pads.[1]
                    PadLeft = pads.[2]
                    PadRight = pads.[3]
                    DilationH = d
                    DilationW = 1
                    Groups = 1
                }
                Seed = seed
            }
        }
        |> Arb.fromGen

    Prop.forAll caseArb (fun c ->
        // x [2, 2, 5, 5], W1 [4, 2, 2, 2], then a grouped 1×1 conv W2 [2, 2, 1, 1] (groups 2)
        let critic (p: Map<string, Tensor>) (x: Tensor) =
            let h = Tensor.softplus (Tensor.conv2d c.Spec x p.["W1"])
            let y = Tensor.tanh (Tensor.conv2d { ConvSpec.unit with Groups = 2 } h p.["W2"])
            Tensor.sum (y * weightsFor c.Seed y)

        let p =
            Map [
                "W1", tensor Smooth c.Seed [| 4; 2; 2; 2 |] * 0.5
                "W2", tensor Smooth (c.Seed + 1) [| 2; 2; 1; 1 |]
                "x", tensor Smooth (c.Seed + 2) [| 2; 2; 5; 5 |]
            ]

        checkGradsWith looseTolerance (penalty critic) p)
    |> Prop.checkN "WGAN-GP conv" 10

// ------------------------------------------------------------------------------ nesting

[<Fact>]
let ``no perturbation confusion in Siskind and Pearlmutter's example`` () =
    // d/dx [x · (d/dy (x + y))|y=1] at x = 1: the inner derivative is 1 whatever x is, so the
    // answer is 1; confusing the two perturbations gives 2.
    let inner (x: Tensor) =
        Autodiff.grad (fun y -> x + y) (s64 1.0)

    let d = Autodiff.grad (fun x -> x * inner x) (s64 1.0)
    Assert.Equal(1.0, Tensor.item d)

    // the same with x as a vector and the inner function summed: d/dx Σ x · d/dy Σ(x·y) = d/dx Σ x² = 2x
    let x = vec [ 1.0; -2.0; 0.5 ]

    let d2 =
        Autodiff.grad (fun x -> Tensor.sum (x * Autodiff.grad (fun y -> Tensor.sum (x * y)) (vec [ 5.0; 6.0; 7.0 ]))) x

    Assert.Equal<float[]>([| 2.0; -4.0; 1.0 |], Tensor.toArray64 d2)

[<Fact>]
let ``an inner derivative taken at the outer variable differentiates correctly`` () =
    // g(x) = d/dy (x·y²)|y=x = 2xy|y=x = 2x², so g'(x) = 4x: 12 at x = 3. The inner function
    // closes over x and its leaf starts at x itself (tracked at the outer level).
    let g (x: Tensor) = Autodiff.grad (fun y -> x * y * y) x

    Assert.Equal(18.0, Tensor.item (g (s64 3.0)))
    Assert.Equal(12.0, Tensor.item (Autodiff.grad g (s64 3.0)))

    // and two levels deep: h(x) = d/dy [ y · d/dz (x·y·z²)|z=y ]|y=x = d/dy [2x y³]|y=x = 6x³, h'(x) = 18x²
    let h (x: Tensor) =
        Autodiff.grad (fun y -> y * Autodiff.grad (fun z -> x * y * z * z) y) x

    Assert.Equal(6.0 * 8.0, Tensor.item (h (s64 2.0)), 12)
    Assert.Equal(18.0 * 4.0, Tensor.item (Autodiff.grad h (s64 2.0)), 12)

[<Fact>]
let ``third derivative of x to the fourth is 24 x`` () =
    // d/dx x⁴ = 4x³, d²/dx² = 12x², d³/dx³ = 24x, d⁴/dx⁴ = 24, d⁵/dx⁵ = 0
    let d (f: Tensor -> Tensor) = fun x -> Tensor.sum (Autodiff.grad f x)
    let f (x: Tensor) = Tensor.sum (x ** 4.0)
    let x = vec [ 1.0; -2.0; 0.5; 3.0 ]
    assertClose tolerance "d1" [| 4.0; -32.0; 0.5; 108.0 |] (Autodiff.grad f x)
    assertClose tolerance "d2" [| 12.0; 48.0; 3.0; 108.0 |] (Autodiff.grad (d f) x)
    assertClose tolerance "d3" [| 24.0; -48.0; 12.0; 72.0 |] (Autodiff.grad (d (d f)) x)
    assertClose tolerance "d4" [| 24.0; 24.0; 24.0; 24.0 |] (Autodiff.grad (d (d (d f))) x)
    assertClose tolerance "d5" [| 0.0; 0.0; 0.0; 0.0 |] (Autodiff.grad (d (d (d (d f)))) x)

    // on a scalar, where grad's output is itself a scalar
    let rec nth n (f: Tensor -> Tensor) =
        if n = 0 then f else nth (n - 1) (Autodiff.grad f)

    Assert.Equal(24.0 * 1.5, Tensor.item (nth 3 (fun x -> x ** 4.0) (s64 1.5)), 10)

[<Fact>]
let ``mixed partials from nested grads agree in either order`` () =
    // f(x, y) = x²y³ + e^(xy): ∂²f/∂x∂y = 6xy² + e^(xy)(1 + xy)
    let f (x: Tensor) (y: Tensor) = x * x * (y ** 3.0) + Tensor.exp (x * y)

    Prop.forAll (Arb.fromGen seedGen) (fun seed ->
        let vs = values Smooth seed 2
        let x0, y0 = vs.[0], vs.[1]
        let expected = 6.0 * x0 * y0 * y0 + exp (x0 * y0) * (1.0 + x0 * y0)
        let dxdy = Autodiff.grad (fun x -> Autodiff.grad (fun y -> f x y) (s64 y0)) (s64 x0)
        let dydx = Autodiff.grad (fun y -> Autodiff.grad (fun x -> f x y) (s64 x0)) (s64 y0)

        // and through named parameters: ∂/∂y of the map-gradient in x
        let viaMap =
            Autodiff.grad
                (fun y -> (Autodiff.grads (fun p -> f p.["x"] p.["y"]) (Map [ "x", s64 x0; "y", y ])).["x"])
                (s64 y0)

        for name, t in [ "d/dx d/dy", dxdy; "d/dy d/dx", dydx; "via grads", viaMap ] do
            assertClose tolerance name [| expected |] t)
    |> Prop.checkN "mixed partials" cases

[<Fact>]
let ``gradient penalty through a train-mode BatchNorm (the fused primitive) matches finite differences`` () =
    // D(x) = Σ tanh(BN(x)) ⊙ u with batch statistics: the penalty differentiates BN's backward
    // rule, which must then take its composed, differentiable form
    let bn = Gan.Functional.Nn.Normalization.batchNorm 3

    let ctx: Gan.Functional.Nn.Context = {
        Mode = Gan.Functional.Nn.Train
        Key = Random.key 0UL
        Shard = None
    }

    let critic (p: Map<string, Tensor>) (x: Tensor) =
        let vars = bn.Init(Random.key 1UL)

        let vars = {
            vars with
                Params = Map [ "weight", p.["w"]; "bias", p.["b"] ]
                State = vars.State |> Map.map (fun _ t -> Tensor.cast Float64 t)
        }

        let y, _ = bn.Apply vars ctx x
        Tensor.sum (Tensor.tanh y * p.["u"])

    Prop.forAll (Arb.fromGen seedGen) (fun seed ->
        let p =
            Map [
                "w", tensor Smooth seed [| 3 |]
                "b", tensor Smooth (seed + 1) [| 3 |]
                "u", tensor Smooth (seed + 2) [| 3; 2; 2 |]
                "x", tensor Smooth (seed + 3) [| 4; 3; 2; 2 |]
            ]

        checkGradsWith looseTolerance (penalty critic) p)
    |> Prop.checkN "WGAN-GP through BatchNorm" 10
