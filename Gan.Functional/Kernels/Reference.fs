namespace Gan.Functional.Kernels

open System
open Gan.Functional

/// Dispatch from raw tensors to the generic loops, one specialisation per dtype.
module internal ReferenceOps =

    let dtypeMismatch op (a: RawTensor) (b: RawTensor) : 'a =
        match a.Storage, b.Storage with
        | Storage.Device d, _
        | _, Storage.Device d -> RawTensor.hostOnly op d
        | _ ->

            Shape.fail
                op
                (sprintf "dtypes differ: %A %s and %A %s" a.DType (Shape.show a.Shape) b.DType (Shape.show b.Shape))

    let inline sigmoid (x: ^T) : ^T =
        let one = LanguagePrimitives.GenericOne
        // two branches keep exp's argument non-positive, so neither overflows.
        if x >= LanguagePrimitives.GenericZero then
            one / (one + exp (-x))
        else
            let e = exp x
            e / (one + e)

    let inline signOf (x: ^T) : ^T =
        if x > LanguagePrimitives.GenericZero then
            LanguagePrimitives.GenericOne
        elif x < LanguagePrimitives.GenericZero then
            -LanguagePrimitives.GenericOne
        else
            LanguagePrimitives.GenericZero

    let inline mapT op (x: ^T[]) : ^T[] =
        match op with
        | Neg -> Array.map (fun v -> -v) x
        | Exp -> Array.map exp x
        | Log -> Array.map log x
        | Sqrt -> Array.map sqrt x
        | Tanh -> Array.map tanh x
        | Sigmoid -> Array.map sigmoid x
        | Abs -> Array.map abs x
        | Sign -> Array.map signOf x

    let inline mask (c: bool) : ^T =
        if c then
            LanguagePrimitives.GenericOne
        else
            LanguagePrimitives.GenericZero

    let inline zipT op (a: ^T[]) aShape (b: ^T[]) bShape outShape : ^T[] =
        match op with
        | Add -> Strided.zip (fun x y -> x + y) a aShape b bShape outShape
        | Sub -> Strided.zip (fun x y -> x - y) a aShape b bShape outShape
        | Mul -> Strided.zip (fun x y -> x * y) a aShape b bShape outShape
        | Div -> Strided.zip (fun x y -> x / y) a aShape b bShape outShape
        | Pow -> Strided.zip (fun x y -> x ** y) a aShape b bShape outShape
        | Maximum -> Strided.zip (fun x y -> if x >= y then x else y) a aShape b bShape outShape
        | Minimum -> Strided.zip (fun x y -> if x <= y then x else y) a aShape b bShape outShape
        | Equal -> Strided.zip (fun x y -> mask (x = y)) a aShape b bShape outShape
        | Less -> Strided.zip (fun x y -> mask (x < y)) a aShape b bShape outShape
        | LessEqual -> Strided.zip (fun x y -> mask (x <= y)) a aShape b bShape outShape
        | Greater -> Strided.zip (fun x y -> mask (x > y)) a aShape b bShape outShape
        | GreaterEqual -> Strided.zip (fun x y -> mask (x >= y)) a aShape b bShape outShape

    let inline reduceT op (x: ^T[]) shape axes (negInf: ^T) : ^T[] =
        match op with
        | ReduceSum -> Strided.reduce (fun acc v -> acc + v) LanguagePrimitives.GenericZero x shape axes
        | ReduceMax -> Strided.reduce (fun acc v -> if v > acc then v else acc) negInf x shape axes
        | ReduceMin -> Strided.reduce (fun acc v -> if v < acc then v else acc) (-negInf) x shape axes

    let inline whereT (m: ^T[]) (a: ^T[]) (b: ^T[]) : ^T[] =
        Array.init m.Length (fun i ->
            if m.[i] <> LanguagePrimitives.GenericZero then
                a.[i]
            else
                b.[i])

    let inline concatT (xs: ^T[][]) (shapes: int[][]) (axis: int) (outShape: int[]) : ^T[] =
        let dst: ^T[] = Array.zeroCreate (Shape.numel outShape)
        let outer = Shape.numel outShape.[.. axis - 1]
        let inner = Shape.numel outShape.[axis + 1 ..]
        let rowOut = outShape.[axis] * inner
        let mutable col = 0

        for t in 0 .. xs.Length - 1 do
            let row = shapes.[t].[axis] * inner

            for o in 0 .. outer - 1 do
                Array.Copy(xs.[t], o * row, dst, o * rowOut + col, row)

            col <- col + row

        dst

    /// One fused Adam step over float32 or float64 buffers (see AdamCoefficients).
    let inline adamT (p: ^T[]) (g: ^T[]) (m: ^T[]) (v: ^T[]) (c: AdamCoefficients) (conv: float -> ^T) =
        let n = p.Length
        let p' = Array.zeroCreate n
        let m' = Array.zeroCreate n
        let v' = Array.zeroCreate n
        let one = LanguagePrimitives.GenericOne
        let b1, b2 = conv c.Beta1, conv c.Beta2
        let step = conv (c.Lr / c.BiasCorrection1)
        let invSqrtBc2 = conv (1.0 / sqrt c.BiasCorrection2)
        let eps = conv c.Eps
        let wd = conv c.WeightDecay
        let shrink = conv (1.0 - c.Lr * c.WeightDecay)

        for i in 0 .. n - 1 do
            let pi = if c.Decoupled then p.[i] * shrink else p.[i]
            let gi = if c.Decoupled then g.[i] else g.[i] + wd * p.[i]
            let mi = b1 * m.[i] + (one - b1) * gi
            let vi = b2 * v.[i] + (one - b2) * gi * gi
            m'.[i] <- mi
            v'.[i] <- vi
            p'.[i] <- pi - step * mi / (sqrt vi * invSqrtBc2 + eps)

        p', m', v'

    let inline takeT (x: ^T[]) (index: int[]) : ^T[] =
        Array.init index.Length (fun i -> x.[index.[i]])

    let inline scatterAddT (src: ^T[]) (index: int[]) (n: int) : ^T[] =
        let dst: ^T[] = Array.zeroCreate n

        for i in 0 .. index.Length - 1 do
            dst.[index.[i]] <- dst.[index.[i]] + src.[i]

        dst

/// Batch normalisation over every axis but 1, on x viewed as [N, C, L], accumulating in float64.
module internal ReferenceBatchNorm =

    let inline private dims (shape: int[]) =
        let c = shape.[1]
        let l = shape |> Array.skip 2 |> Array.fold (*) 1
        shape.[0], c, l

    let inline forwardT (x: ^T[]) (shape: int[]) (gamma: ^T[]) (beta: ^T[]) (eps: float) (ofFloat: float -> ^T) =
        let n, c, l = dims shape
        let m = float (n * l)
        let y = Array.zeroCreate x.Length
        let mean = Array.zeroCreate c
        let var = Array.zeroCreate c

        for ch in 0 .. c - 1 do
            let mutable s = 0.0

            for b in 0 .. n - 1 do
                for j in 0 .. l - 1 do
                    s <- s + float x.[(b * c + ch) * l + j]

            let mu = s / m
            let mutable q = 0.0

            for b in 0 .. n - 1 do
                for j in 0 .. l - 1 do
                    let d = float x.[(b * c + ch) * l + j] - mu
                    q <- q + d * d

            let v = q / m
            let a = float gamma.[ch] / sqrt (v + eps)

            for b in 0 .. n - 1 do
                for j in 0 .. l - 1 do
                    let i = (b * c + ch) * l + j
                    y.[i] <- ofFloat ((float x.[i] - mu) * a + float beta.[ch])

            mean.[ch] <- ofFloat mu
            var.[ch] <- ofFloat v

        y, mean, var

    let inline backwardT
        (g: ^T[])
        (x: ^T[])
        (shape: int[])
        (gamma: ^T[])
        (mean: ^T[])
        (var: ^T[])
        (eps: float)
        (ofFloat: float -> ^T)
        =
        let n, c, l = dims shape
        let m = float (n * l)
        let dx = Array.zeroCreate x.Length
        let dgamma = Array.zeroCreate c
        let dbeta = Array.zeroCreate c

        for ch in 0 .. c - 1 do
            let mu = float mean.[ch]
            let inv = 1.0 / sqrt (float var.[ch] + eps)
            let mutable sg = 0.0
            let mutable sgx = 0.0

            for b in 0 .. n - 1 do
                for j in 0 .. l - 1 do
                    let i = (b * c + ch) * l + j
                    sg <- sg + float g.[i]
                    sgx <- sgx + float g.[i] * (float x.[i] - mu) * inv

            let k = float gamma.[ch] * inv / m

            for b in 0 .. n - 1 do
                for j in 0 .. l - 1 do
                    let i = (b * c + ch) * l + j
                    let xhat = (float x.[i] - mu) * inv
                    dx.[i] <- ofFloat (k * (m * float g.[i] - sg - xhat * sgx))

            dgamma.[ch] <- ofFloat sgx
            dbeta.[ch] <- ofFloat sg

        dx, dgamma, dbeta

/// The reference CPU backend: simple, single-threaded, correct kernels for float32 and
/// float64. Faster backends are checked against it.
type ReferenceBackend() =
    static member val Instance = ReferenceBackend()

    interface IBackend with
        member _.Name = "reference"

        member _.Unary(op, x) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "unary" d
            | Storage.F32 a -> {
                Shape = x.Shape
                Storage = Storage.F32(ReferenceOps.mapT op a)
              }
            | Storage.F64 a -> {
                Shape = x.Shape
                Storage = Storage.F64(ReferenceOps.mapT op a)
              }

        member _.Binary(op, a, b, outShape) =
            match a.Storage, b.Storage with
            | Storage.F32 x, Storage.F32 y -> {
                Shape = outShape
                Storage = Storage.F32(ReferenceOps.zipT op x a.Shape y b.Shape outShape)
              }
            | Storage.F64 x, Storage.F64 y -> {
                Shape = outShape
                Storage = Storage.F64(ReferenceOps.zipT op x a.Shape y b.Shape outShape)
              }
            | _ -> ReferenceOps.dtypeMismatch (sprintf "%A" op) a b

        member _.Where(m, a, b) =
            match m.Storage, a.Storage, b.Storage with
            | Storage.F32 mm, Storage.F32 x, Storage.F32 y -> {
                Shape = a.Shape
                Storage = Storage.F32(ReferenceOps.whereT mm x y)
              }
            | Storage.F64 mm, Storage.F64 x, Storage.F64 y -> {
                Shape = a.Shape
                Storage = Storage.F64(ReferenceOps.whereT mm x y)
              }
            | _ -> ReferenceOps.dtypeMismatch "where" a b

        member _.Reduce(op, x, axes) =
            let shape = Shape.reduceKeep x.Shape axes

            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "reduce" d
            | Storage.F32 a -> {
                Shape = shape
                Storage = Storage.F32(ReferenceOps.reduceT op a x.Shape axes Single.NegativeInfinity)
              }
            | Storage.F64 a -> {
                Shape = shape
                Storage = Storage.F64(ReferenceOps.reduceT op a x.Shape axes Double.NegativeInfinity)
              }

        member _.ArgMax(x, axis) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "argmax" d
            | Storage.F32 a -> Strided.argMax a x.Shape axis
            | Storage.F64 a -> Strided.argMax a x.Shape axis

        member _.View(x, offset, strides, shape) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "view" d
            | Storage.F32 a -> {
                Shape = shape
                Storage = Storage.F32(Strided.view a offset strides shape)
              }
            | Storage.F64 a -> {
                Shape = shape
                Storage = Storage.F64(Strided.view a offset strides shape)
              }

        member _.Embed(x, shape, offset, strides) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "embed" d
            | Storage.F32 a ->
                let dst = Array.zeroCreate (Shape.numel shape)
                Strided.embed a x.Shape dst offset strides

                {
                    Shape = shape
                    Storage = Storage.F32 dst
                }
            | Storage.F64 a ->
                let dst = Array.zeroCreate (Shape.numel shape)
                Strided.embed a x.Shape dst offset strides

                {
                    Shape = shape
                    Storage = Storage.F64 dst
                }

        member _.Concat(xs, axis) =
            let outShape = Array.copy xs.[0].Shape
            outShape.[axis] <- xs |> Array.sumBy (fun x -> x.Shape.[axis])
            let shapes = xs |> Array.map (fun x -> x.Shape)

            match xs.[0].Storage with
            | Storage.Device d -> RawTensor.hostOnly "concat" d
            | Storage.F32 _ ->
                let parts =
                    xs
                    |> Array.map (fun x ->
                        match x.Storage with
                        | Storage.Device d -> RawTensor.hostOnly "concat" d
                        | Storage.F32 a -> a
                        | Storage.F64 _ -> ReferenceOps.dtypeMismatch "concat" xs.[0] x)

                {
                    Shape = outShape
                    Storage = Storage.F32(ReferenceOps.concatT parts shapes axis outShape)
                }
            | Storage.F64 _ ->
                let parts =
                    xs
                    |> Array.map (fun x ->
                        match x.Storage with
                        | Storage.Device d -> RawTensor.hostOnly "concat" d
                        | Storage.F64 a -> a
                        | Storage.F32 _ -> ReferenceOps.dtypeMismatch "concat" xs.[0] x)

                {
                    Shape = outShape
                    Storage = Storage.F64(ReferenceOps.concatT parts shapes axis outShape)
                }

        member _.Take(x, index, shape) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "take" d
            | Storage.F32 a -> {
                Shape = shape
                Storage = Storage.F32(ReferenceOps.takeT a index)
              }
            | Storage.F64 a -> {
                Shape = shape
                Storage = Storage.F64(ReferenceOps.takeT a index)
              }

        member _.ScatterAdd(src, index, shape) =
            let n = Shape.numel shape

            match src.Storage with
            | Storage.Device d -> RawTensor.hostOnly "scatter_add" d
            | Storage.F32 a -> {
                Shape = shape
                Storage = Storage.F32(ReferenceOps.scatterAddT a index n)
              }
            | Storage.F64 a -> {
                Shape = shape
                Storage = Storage.F64(ReferenceOps.scatterAddT a index n)
              }

        member _.MatMul(a, transA, b, transB, outShape) =
            match a.Storage, b.Storage with
            | Storage.F32 x, Storage.F32 y -> {
                Shape = outShape
                Storage = Storage.F32(Strided.matmul x a.Shape transA y b.Shape transB outShape)
              }
            | Storage.F64 x, Storage.F64 y -> {
                Shape = outShape
                Storage = Storage.F64(Strided.matmul x a.Shape transA y b.Shape transB outShape)
              }
            | _ -> ReferenceOps.dtypeMismatch "matmul" a b

        member _.Conv2d(x, w, spec) =
            let outShape = ConvSpec.outputShape "conv2d" spec x.Shape w.Shape

            match x.Storage, w.Storage with
            | Storage.F32 xa, Storage.F32 wa -> {
                Shape = outShape
                Storage = Storage.F32(ReferenceConv.conv2d spec xa x.Shape wa w.Shape)
              }
            | Storage.F64 xa, Storage.F64 wa -> {
                Shape = outShape
                Storage = Storage.F64(ReferenceConv.conv2d spec xa x.Shape wa w.Shape)
              }
            | _ -> ReferenceOps.dtypeMismatch "conv2d" x w

        member _.Conv2dInputGrad(g, w, spec, xShape) =
            match g.Storage, w.Storage with
            | Storage.F32 ga, Storage.F32 wa -> {
                Shape = xShape
                Storage = Storage.F32(ReferenceConv.conv2dInputGrad spec ga g.Shape wa w.Shape xShape)
              }
            | Storage.F64 ga, Storage.F64 wa -> {
                Shape = xShape
                Storage = Storage.F64(ReferenceConv.conv2dInputGrad spec ga g.Shape wa w.Shape xShape)
              }
            | _ -> ReferenceOps.dtypeMismatch "conv_transpose2d" g w

        member _.Conv2dWeightGrad(x, g, spec, wShape) =
            match x.Storage, g.Storage with
            | Storage.F32 xa, Storage.F32 ga -> {
                Shape = wShape
                Storage = Storage.F32(ReferenceConv.conv2dWeightGrad spec xa x.Shape ga g.Shape wShape)
              }
            | Storage.F64 xa, Storage.F64 ga -> {
                Shape = wShape
                Storage = Storage.F64(ReferenceConv.conv2dWeightGrad spec xa x.Shape ga g.Shape wShape)
              }
            | _ -> ReferenceOps.dtypeMismatch "conv2d_weight" x g

        member _.MaxPool2dIndices(x, kh, kw, spec) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "max_pool2d" d
            | Storage.F32 a -> ReferenceConv.maxPool2dIndices kh kw spec a x.Shape
            | Storage.F64 a -> ReferenceConv.maxPool2dIndices kh kw spec a x.Shape

        member _.Cast(x, dtype) = RawTensor.cast dtype x

        // reference kernels allocate plainly and leave dead buffers to the GC
        member _.Recycle _ = ()
        member _.NextPhase() = ()

        member _.LeakyRelu(x, alpha) =
            match x.Storage with
            | Storage.Device d -> RawTensor.hostOnly "leaky_relu" d
            | Storage.F32 a ->
                let k = float32 alpha
                RawTensor.ofFloat32 x.Shape (a |> Array.map (fun v -> if v > 0.0f then v else k * v))
            | Storage.F64 a -> RawTensor.ofFloat64 x.Shape (a |> Array.map (fun v -> if v > 0.0 then v else alpha * v))

        member _.LeakyReluBackward(g, x, alpha) =
            match g.Storage, x.Storage with
            | Storage.F32 ga, Storage.F32 xa ->
                let k = float32 alpha
                RawTensor.ofFloat32 x.Shape (Array.map2 (fun gv v -> if v > 0.0f then gv else k * gv) ga xa)
            | Storage.F64 ga, Storage.F64 xa ->
                RawTensor.ofFloat64 x.Shape (Array.map2 (fun gv v -> if v > 0.0 then gv else alpha * gv) ga xa)
            | _ -> invalidArg "g" "g and x must have one dtype"

        member _.PairwiseL1(x, y) =
            let gs, ps, rs, cs = x.Shape.[0], x.Shape.[1], y.Shape.[1], x.Shape.[2]
            let out = [| gs; ps; rs |]

            let run (xa: float[]) (ya: float[]) =
                Array.init (gs * ps * rs) (fun o ->
                    let g, p, r = o / (ps * rs), o / rs % ps, o % rs
                    let mutable acc = 0.0

                    for c in 0 .. cs - 1 do
                        acc <- acc + abs (xa.[(g * ps + p) * cs + c] - ya.[(g * rs + r) * cs + c])

                    acc)

            match x.Storage, y.Storage with
            | Storage.F32 xa, Storage.F32 ya ->
                RawTensor.ofFloat32 out (run (Array.map float xa) (Array.map float ya) |> Array.map float32)
            | Storage.F64 xa, Storage.F64 ya -> RawTensor.ofFloat64 out (run xa ya)
            | _ -> ReferenceOps.dtypeMismatch "pairwise_l1" x y

        member _.PairwiseL1Backward(g, x, y) =
            let gs, ps, rs, cs = x.Shape.[0], x.Shape.[1], y.Shape.[1], x.Shape.[2]

            let run (ga: float[]) (xa: float[]) (ya: float[]) =
                Array.init (gs * ps * cs) (fun o ->
                    let grp, p, c = o / (ps * cs), o / cs % ps, o % cs
                    let xv = xa.[o]
                    let mutable acc = 0.0

                    for r in 0 .. rs - 1 do
                        let d = xv - ya.[(grp * rs + r) * cs + c]

                        let s =
                            if d > 0.0 then 1.0
                            elif d < 0.0 then -1.0
                            else 0.0

                        acc <- acc + ga.[(grp * ps + p) * rs + r] * s

                    acc)

            match g.Storage, x.Storage, y.Storage with
            | Storage.F32 ga, Storage.F32 xa, Storage.F32 ya ->
                RawTensor.ofFloat32
                    x.Shape
                    (run (Array.map float ga) (Array.map float xa) (Array.map float ya)
                     |> Array.map float32)
            | Storage.F64 ga, Storage.F64 xa, Storage.F64 ya -> RawTensor.ofFloat64 x.Shape (run ga xa ya)
            | _ -> ReferenceOps.dtypeMismatch "pairwise_l1_backward" x y

        member _.BatchNormForward(x, gamma, beta, eps) =
            let c = [| x.Shape.[1] |]

            match x.Storage, gamma.Storage, beta.Storage with
            | Storage.F32 xa, Storage.F32 ga, Storage.F32 ba ->
                let y, m, v = ReferenceBatchNorm.forwardT xa x.Shape ga ba eps float32
                RawTensor.ofFloat32 x.Shape y, RawTensor.ofFloat32 c m, RawTensor.ofFloat32 c v
            | Storage.F64 xa, Storage.F64 ga, Storage.F64 ba ->
                let y, m, v = ReferenceBatchNorm.forwardT xa x.Shape ga ba eps id
                RawTensor.ofFloat64 x.Shape y, RawTensor.ofFloat64 c m, RawTensor.ofFloat64 c v
            | _ -> ReferenceOps.dtypeMismatch "batchNorm" x gamma

        member _.BatchNormBackward(g, x, gamma, mean, var, eps) =
            let c = [| x.Shape.[1] |]

            match g.Storage, x.Storage, gamma.Storage, mean.Storage, var.Storage with
            | Storage.F32 ga, Storage.F32 xa, Storage.F32 gm, Storage.F32 ma, Storage.F32 va ->
                let dx, dg, db = ReferenceBatchNorm.backwardT ga xa x.Shape gm ma va eps float32
                RawTensor.ofFloat32 x.Shape dx, RawTensor.ofFloat32 c dg, RawTensor.ofFloat32 c db
            | Storage.F64 ga, Storage.F64 xa, Storage.F64 gm, Storage.F64 ma, Storage.F64 va ->
                let dx, dg, db = ReferenceBatchNorm.backwardT ga xa x.Shape gm ma va eps id
                RawTensor.ofFloat64 x.Shape dx, RawTensor.ofFloat64 c dg, RawTensor.ofFloat64 c db
            | _ -> ReferenceOps.dtypeMismatch "batchNorm" g x

    interface IFusedOptimizer with
        member _.AdamStep(p, g, m, v, c) =
            let wrap (s: Storage) = { Shape = p.Shape; Storage = s }

            match p.Storage, g.Storage, m.Storage, v.Storage with
            | Storage.F32 pa, Storage.F32 ga, Storage.F32 ma, Storage.F32 va ->
                let a, b, d = ReferenceOps.adamT pa ga ma va c float32
                wrap (Storage.F32 a), wrap (Storage.F32 b), wrap (Storage.F32 d)
            | Storage.F64 pa, Storage.F64 ga, Storage.F64 ma, Storage.F64 va ->
                let a, b, d = ReferenceOps.adamT pa ga ma va c float
                wrap (Storage.F64 a), wrap (Storage.F64 b), wrap (Storage.F64 d)
            | _ -> ReferenceOps.dtypeMismatch "adam" p g

        member this.AdamStepDonated(p, g, m, v, c) =
            let p', m', v' = (this :> IFusedOptimizer).AdamStep(p, g, m, v, c)

            match m.Storage, m'.Storage, v.Storage, v'.Storage with
            | Storage.F32 m, Storage.F32 m', Storage.F32 v, Storage.F32 v' ->
                Array.blit m' 0 m 0 m.Length
                Array.blit v' 0 v 0 v.Length
            | Storage.F64 m, Storage.F64 m', Storage.F64 v, Storage.F64 v' ->
                Array.blit m' 0 m 0 m.Length
                Array.blit v' 0 v 0 v.Length
            | _ -> ReferenceOps.dtypeMismatch "adam" m v

            p'
