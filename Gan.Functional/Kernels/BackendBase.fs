namespace Gan.Functional.Kernels

open Gan.Functional

/// The start of a new backend: every kernel of <see cref="T:Gan.Functional.IBackend"/> and
/// <see cref="T:Gan.Functional.IFusedOptimizer"/> runs on the reference kernels until a derived
/// class overrides it, so a backend implements only what it accelerates (and falls back to
/// <c>base</c> for the cases it does not take, e.g. float64). <c>Recycle</c> and
/// <c>NextPhase</c> do nothing by default (dead buffers go to the GC). Each member is described
/// on the interfaces. A new backend passes the reference's tests (Gan.Tests/CpuBackendTests.fs
/// shows how).
[<AbstractClass>]
type BackendBase() =
    static let reference = ReferenceBackend.Instance :> IBackend
    static let referenceOptimizer = ReferenceBackend.Instance :> IFusedOptimizer

    /// A short name shown at start-up and in benchmarks.
    abstract Name: string

    abstract Unary: op: UnaryOp * x: RawTensor -> RawTensor
    default _.Unary(op, x) = reference.Unary(op, x)

    abstract Binary: op: BinaryOp * a: RawTensor * b: RawTensor * outShape: int[] -> RawTensor
    default _.Binary(op, a, b, outShape) = reference.Binary(op, a, b, outShape)

    abstract Where: mask: RawTensor * a: RawTensor * b: RawTensor -> RawTensor
    default _.Where(mask, a, b) = reference.Where(mask, a, b)

    abstract Reduce: op: ReduceOp * x: RawTensor * axes: int[] -> RawTensor
    default _.Reduce(op, x, axes) = reference.Reduce(op, x, axes)

    abstract ArgMax: x: RawTensor * axis: int -> int[]
    default _.ArgMax(x, axis) = reference.ArgMax(x, axis)

    abstract View: x: RawTensor * offset: int * strides: int[] * shape: int[] -> RawTensor

    default _.View(x, offset, strides, shape) =
        reference.View(x, offset, strides, shape)

    abstract Embed: x: RawTensor * shape: int[] * offset: int * strides: int[] -> RawTensor

    default _.Embed(x, shape, offset, strides) =
        reference.Embed(x, shape, offset, strides)

    abstract Concat: xs: RawTensor[] * axis: int -> RawTensor
    default _.Concat(xs, axis) = reference.Concat(xs, axis)

    abstract Take: x: RawTensor * index: int[] * shape: int[] -> RawTensor
    default _.Take(x, index, shape) = reference.Take(x, index, shape)

    abstract ScatterAdd: src: RawTensor * index: int[] * shape: int[] -> RawTensor
    default _.ScatterAdd(src, index, shape) = reference.ScatterAdd(src, index, shape)

    abstract MatMul: a: RawTensor * transA: bool * b: RawTensor * transB: bool * outShape: int[] -> RawTensor

    default _.MatMul(a, transA, b, transB, outShape) =
        reference.MatMul(a, transA, b, transB, outShape)

    abstract Conv2d: x: RawTensor * w: RawTensor * spec: ConvSpec -> RawTensor
    default _.Conv2d(x, w, spec) = reference.Conv2d(x, w, spec)

    abstract Conv2dInputGrad: g: RawTensor * w: RawTensor * spec: ConvSpec * xShape: int[] -> RawTensor

    default _.Conv2dInputGrad(g, w, spec, xShape) =
        reference.Conv2dInputGrad(g, w, spec, xShape)

    abstract Conv2dWeightGrad: x: RawTensor * g: RawTensor * spec: ConvSpec * wShape: int[] -> RawTensor

    default _.Conv2dWeightGrad(x, g, spec, wShape) =
        reference.Conv2dWeightGrad(x, g, spec, wShape)

    abstract MaxPool2dIndices: x: RawTensor * kh: int * kw: int * spec: ConvSpec -> int[] * int[]

    default _.MaxPool2dIndices(x, kh, kw, spec) =
        reference.MaxPool2dIndices(x, kh, kw, spec)

    abstract Cast: x: RawTensor * dtype: DType -> RawTensor
    default _.Cast(x, dtype) = reference.Cast(x, dtype)

    abstract LeakyRelu: x: RawTensor * alpha: float -> RawTensor
    default _.LeakyRelu(x, alpha) = reference.LeakyRelu(x, alpha)

    abstract LeakyReluBackward: g: RawTensor * x: RawTensor * alpha: float -> RawTensor

    default _.LeakyReluBackward(g, x, alpha) =
        reference.LeakyReluBackward(g, x, alpha)

    abstract PairwiseL1: x: RawTensor * y: RawTensor -> RawTensor
    default _.PairwiseL1(x, y) = reference.PairwiseL1(x, y)

    abstract PairwiseL1Backward: g: RawTensor * x: RawTensor * y: RawTensor -> RawTensor
    default _.PairwiseL1Backward(g, x, y) = reference.PairwiseL1Backward(g, x, y)

    abstract BatchNormForward:
        x: RawTensor * gamma: RawTensor * beta: RawTensor * eps: float -> RawTensor * RawTensor * RawTensor

    default _.BatchNormForward(x, gamma, beta, eps) =
        reference.BatchNormForward(x, gamma, beta, eps)

    abstract BatchNormBackward:
        g: RawTensor * x: RawTensor * gamma: RawTensor * mean: RawTensor * var: RawTensor * eps: float ->
            RawTensor * RawTensor * RawTensor

    default _.BatchNormBackward(g, x, gamma, mean, var, eps) =
        reference.BatchNormBackward(g, x, gamma, mean, var, eps)

    abstract AdamStep:
        p: RawTensor * g: RawTensor * m: RawTensor * v: RawTensor * c: AdamCoefficients ->
            RawTensor * RawTensor * RawTensor

    default _.AdamStep(p, g, m, v, c) =
        referenceOptimizer.AdamStep(p, g, m, v, c)

    abstract AdamStepDonated:
        p: RawTensor * g: RawTensor * m: RawTensor * v: RawTensor * c: AdamCoefficients -> RawTensor

    default _.AdamStepDonated(p, g, m, v, c) =
        referenceOptimizer.AdamStepDonated(p, g, m, v, c)

    abstract Recycle: x: RawTensor -> unit
    default _.Recycle _ = ()

    abstract NextPhase: unit -> unit
    default _.NextPhase() = ()

    interface IBackend with
        member this.Name = this.Name
        member this.Unary(op, x) = this.Unary(op, x)
        member this.Binary(op, a, b, outShape) = this.Binary(op, a, b, outShape)
        member this.Where(mask, a, b) = this.Where(mask, a, b)
        member this.Reduce(op, x, axes) = this.Reduce(op, x, axes)
        member this.ArgMax(x, axis) = this.ArgMax(x, axis)
        member this.View(x, offset, strides, shape) = this.View(x, offset, strides, shape)
        member this.Embed(x, shape, offset, strides) = this.Embed(x, shape, offset, strides)
        member this.Concat(xs, axis) = this.Concat(xs, axis)
        member this.Take(x, index, shape) = this.Take(x, index, shape)
        member this.ScatterAdd(src, index, shape) = this.ScatterAdd(src, index, shape)

        member this.MatMul(a, transA, b, transB, outShape) =
            this.MatMul(a, transA, b, transB, outShape)

        member this.Conv2d(x, w, spec) = this.Conv2d(x, w, spec)

        member this.Conv2dInputGrad(g, w, spec, xShape) =
            this.Conv2dInputGrad(g, w, spec, xShape)

        member this.Conv2dWeightGrad(x, g, spec, wShape) =
            this.Conv2dWeightGrad(x, g, spec, wShape)

        member this.MaxPool2dIndices(x, kh, kw, spec) = this.MaxPool2dIndices(x, kh, kw, spec)
        member this.Cast(x, dtype) = this.Cast(x, dtype)
        member this.LeakyRelu(x, alpha) = this.LeakyRelu(x, alpha)
        member this.LeakyReluBackward(g, x, alpha) = this.LeakyReluBackward(g, x, alpha)
        member this.PairwiseL1(x, y) = this.PairwiseL1(x, y)
        member this.PairwiseL1Backward(g, x, y) = this.PairwiseL1Backward(g, x, y)

        member this.BatchNormForward(x, gamma, beta, eps) =
            this.BatchNormForward(x, gamma, beta, eps)

        member this.BatchNormBackward(g, x, gamma, mean, var, eps) =
            this.BatchNormBackward(g, x, gamma, mean, var, eps)

        member this.Recycle x = this.Recycle x
        member this.NextPhase() = this.NextPhase()

    interface IFusedOptimizer with
        member this.AdamStep(p, g, m, v, c) = this.AdamStep(p, g, m, v, c)
        member this.AdamStepDonated(p, g, m, v, c) = this.AdamStepDonated(p, g, m, v, c)
