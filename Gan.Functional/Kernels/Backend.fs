namespace Gan.Functional

open System.Threading

/// Elementwise unary kernels.
type UnaryOp =
    | Neg
    | Exp
    | Log
    | Sqrt
    | Tanh
    | Sigmoid
    | Abs
    | Sign

/// Elementwise binary kernels with NumPy broadcasting. Comparisons return masks of 0 and 1 in
/// the operands' dtype.
type BinaryOp =
    | Add
    | Sub
    | Mul
    | Div
    | Pow
    | Maximum
    | Minimum
    | Equal
    | Less
    | LessEqual
    | Greater
    | GreaterEqual

/// Reductions over a set of axes.
type ReduceOp =
    | ReduceSum
    | ReduceMax
    | ReduceMin

/// The scalars of one fused Adam step (PyTorch's arrangement):
/// g ← g + wd·p (L2) or p ← p·(1 − lr·wd) (decoupled); m ← β1·m + (1 − β1)·g;
/// v ← β2·v + (1 − β2)·g²; p ← p − (lr/bc1)·m / (√v/√bc2 + ε).
type AdamCoefficients = {
    Lr: float
    Beta1: float
    Beta2: float
    Eps: float
    WeightDecay: float
    Decoupled: bool
    /// 1 − β1ᵗ.
    BiasCorrection1: float
    /// 1 − β2ᵗ.
    BiasCorrection2: float
}

/// The seam between the engine and the machine: every raw kernel the engine needs, with no
/// notion of gradients. Inputs are valid (shapes were checked by the caller) and are never
/// mutated; every kernel returns a fresh tensor. A backend is chosen at run time with
/// <see cref="M:Gan.Functional.Backend.set"/>; until then the engine uses the fast CPU backend
/// on every core (<c>GAN_BACKEND=reference</c> makes the reference kernels the default).
type IBackend =
    /// A short name shown at start-up and in benchmarks.
    abstract Name: string
    /// y = op(x), elementwise.
    abstract Unary: op: UnaryOp * x: RawTensor -> RawTensor
    /// y = op(a, b) with broadcasting to `outShape`.
    abstract Binary: op: BinaryOp * a: RawTensor * b: RawTensor * outShape: int[] -> RawTensor
    /// y = mask ≠ 0 ? a : b; all three have the same shape.
    abstract Where: mask: RawTensor * a: RawTensor * b: RawTensor -> RawTensor
    /// Reduces the given (sorted, distinct) axes, keeping them as size-1 dimensions.
    abstract Reduce: op: ReduceOp * x: RawTensor * axes: int[] -> RawTensor
    /// Index of the first maximum along `axis` (kept as size 1), row-major.
    abstract ArgMax: x: RawTensor * axis: int -> int[]
    /// A contiguous copy of the strided view (offset, strides) of `x` with shape `shape`;
    /// serves permute, expand (stride 0) and slice.
    abstract View: x: RawTensor * offset: int * strides: int[] * shape: int[] -> RawTensor
    /// Zeros of `shape` with `x` written into the strided window (offset, strides, x's shape);
    /// serves pad and concatenation.
    abstract Embed: x: RawTensor * shape: int[] * offset: int * strides: int[] -> RawTensor
    /// Concatenation along `axis`.
    abstract Concat: xs: RawTensor[] * axis: int -> RawTensor
    /// y[i] = x.flat[index[i]], with y of shape `shape`.
    abstract Take: x: RawTensor * index: int[] * shape: int[] -> RawTensor
    /// y = zeros(shape); y.flat[index[i]] += src.flat[i].
    abstract ScatterAdd: src: RawTensor * index: int[] * shape: int[] -> RawTensor
    /// Batched matrix product [..., m, k] × [..., k, n] → `outShape` [..., m, n] with broadcast
    /// batch dimensions; each operand may be read transposed in its last two axes.
    abstract MatMul: a: RawTensor * transA: bool * b: RawTensor * transB: bool * outShape: int[] -> RawTensor
    /// 2-D cross-correlation, PyTorch's conv2d without bias.
    abstract Conv2d: x: RawTensor * w: RawTensor * spec: ConvSpec -> RawTensor
    /// The adjoint of conv2d in its input (transposed convolution) producing `xShape`.
    abstract Conv2dInputGrad: g: RawTensor * w: RawTensor * spec: ConvSpec * xShape: int[] -> RawTensor
    /// The adjoint of conv2d in its weight, producing `wShape`.
    abstract Conv2dWeightGrad: x: RawTensor * g: RawTensor * spec: ConvSpec * wShape: int[] -> RawTensor
    /// Flat input index of each max-pooling window's maximum, and the output shape.
    abstract MaxPool2dIndices: x: RawTensor * kh: int * kw: int * spec: ConvSpec -> int[] * int[]
    /// The same values in another dtype.
    abstract Cast: x: RawTensor * dtype: DType -> RawTensor

    /// Leaky rectification in one pass: y = x where x > 0, αx elsewhere (ReLU: α = 0).
    abstract LeakyRelu: x: RawTensor * alpha: float -> RawTensor

    /// LeakyRelu's adjoint for output adjoint g (same shape as x): dx = g where x > 0, αg
    /// elsewhere, in one pass.
    abstract LeakyReluBackward: g: RawTensor * x: RawTensor * alpha: float -> RawTensor

    /// Batched pairwise L1 distances (PyTorch's cdist with p = 1): x [G, P, C], y [G, R, C] →
    /// d [G, P, R] with d[g, p, r] = Σ_c |x[g, p, c] − y[g, r, c]|.
    abstract PairwiseL1: x: RawTensor * y: RawTensor -> RawTensor

    /// PairwiseL1's adjoint in x for output adjoint g [G, P, R]:
    /// dx[g, p, c] = Σ_r g[g, p, r]·sign(x[g, p, c] − y[g, r, c]) (sign 0 = 0). The adjoint in y
    /// is this with the roles swapped: −(the same of gᵀ, y, x) = Σ_p gᵀ[g, r, p]·sign(y − x).
    abstract PairwiseL1Backward: g: RawTensor * x: RawTensor * y: RawTensor -> RawTensor

    /// Train-mode batch normalisation over every axis but axis 1 (x is [N, C, …]; gamma, beta
    /// [C]): with μ and σ² the per-channel batch mean and biased variance,
    /// y = (x − μ)/√(σ² + eps)·gamma + beta. Returns (y, μ, σ²).
    abstract BatchNormForward:
        x: RawTensor * gamma: RawTensor * beta: RawTensor * eps: float -> RawTensor * RawTensor * RawTensor

    /// The adjoint of BatchNormForward for output adjoint g (m values per channel,
    /// x̂ = (x − μ)/√(σ² + eps)): dbeta = Σ g, dgamma = Σ g·x̂,
    /// dx = gamma/√(σ² + eps)/m·(m·g − dbeta − x̂·dgamma). Returns (dx, dgamma, dbeta).
    abstract BatchNormBackward:
        g: RawTensor * x: RawTensor * gamma: RawTensor * mean: RawTensor * var: RawTensor * eps: float ->
            RawTensor * RawTensor * RawTensor

    /// Declares `x`'s buffer dead: the engine proved that nothing reads it again (an interior
    /// adjoint the backward pass has propagated), so the backend may hand it out as a later
    /// kernel's output. A hint: ignoring it is correct.
    abstract Recycle: x: RawTensor -> unit

    /// Marks a phase boundary of the caller's work (the engine calls it as a backward pass
    /// starts): recycled buffers that stayed unclaimed for a whole phase may be released.
    abstract NextPhase: unit -> unit

/// Fused optimizer steps, optional for a backend: the optimizers call them when the backend in
/// force implements this interface and the reference kernels otherwise (a backend that derives
/// from <c>BackendBase</c> implements it with the reference kernels unless it overrides them).
/// Kept apart from <see cref="T:Gan.Functional.IBackend"/>, whose kernels know nothing of
/// training.
type IFusedOptimizer =
    /// One Adam step for one parameter, fused into a single pass: returns (p, m, v) updated.
    abstract AdamStep:
        p: RawTensor * g: RawTensor * m: RawTensor * v: RawTensor * c: AdamCoefficients ->
            RawTensor * RawTensor * RawTensor

    /// The same step with the moments donated (JAX's buffer donation): the new moments are
    /// written over m's and v's buffers, which must be distinct and owned by the caller (the one
    /// exception to "inputs are never mutated"); returns the new parameters. Saves two
    /// parameter-sized allocations per parameter and step.
    abstract AdamStepDonated:
        p: RawTensor * g: RawTensor * m: RawTensor * v: RawTensor * c: AdamCoefficients -> RawTensor

/// A backend whose tensors live in a device's memory (a GPU's, or an accelerator's). Its
/// kernels take and return tensors with <c>Storage.Device</c> buffers it allocated; the engine
/// routes every operation to the owner of its inputs (mixing devices is an error, see
/// <c>Tensor.toDevice</c>) and, while such a backend is selected with
/// <see cref="M:Gan.Functional.Backend.set"/>, creates new tensors on its device.
type IDeviceBackend =
    inherit IBackend
    /// The device's name, as errors show it (e.g. "cuda:0 (NVIDIA H100)").
    abstract DeviceName: string
    /// A copy of host tensor `x` in the device's memory (the tensor itself when it is already
    /// on this device).
    abstract Upload: x: RawTensor -> RawTensor

/// Adam over a whole network in place, optional for a backend: the optimizers call it when
/// parameters and moments are donated (<c>Optimizer.updateInPlace</c>) and the backend in force
/// implements it.
type IInPlaceOptimizer =
    /// One Adam step for every parameter i at once, written over ps[i], ms[i] and vs[i] (all
    /// distinct buffers, owned by the caller), with gradients gs[i]: one pass over all of them.
    abstract AdamStepsInPlace:
        ps: RawTensor[] * gs: RawTensor[] * ms: RawTensor[] * vs: RawTensor[] * c: AdamCoefficients -> unit

/// Buffer reuse across training steps, optional for a backend. A training loop that owns its
/// state (the C# <c>GanTrainer</c>) brackets each step with <c>BeginStep</c> and <c>EndStep</c>:
/// when the step has returned, every buffer the backend handed out during it is dead except
/// those the new state holds (the step is a function: its temporaries, activations and
/// adjoints are unreachable once it returns), so the backend may hand them out again in the
/// next step instead of leaving them to the GC. Per calling thread.
type IStepBuffers =
    /// Starts recording the buffers handed out on this thread.
    abstract BeginStep: unit -> unit

    /// Ends the step: the buffers recorded since <c>BeginStep</c>, except `keep`'s, are dead.
    abstract EndStep: keep: RawTensor seq -> unit

    /// Ends the step without reclaiming anything (the step failed: what it made is left to
    /// the GC).
    abstract CancelStep: unit -> unit

/// Random draws made in a device's memory, the same numbers as <c>Random</c>'s on the host for
/// the same key (counter-based Philox: no state to share). Optional for a device backend:
/// without it, draws are made on the host and uploaded.
type IDeviceRandom =
    /// Random.uniform key Float32 shape, on the device.
    abstract Uniform: key: Key * shape: int[] -> RawTensor
    /// Random.normal key Float32 shape, on the device.
    abstract Normal: key: Key * shape: int[] -> RawTensor
    /// Random.bernoulli key p Float32 shape, on the device.
    abstract Bernoulli: key: Key * p: float * shape: int[] -> RawTensor

/// The process-wide choice of kernels (like PyTorch's default device). Changing it affects
/// operations started afterwards; tensors themselves are backend-neutral buffers.
module Backend =
    let mutable private current: IBackend option = None
    let private scoped = AsyncLocal<IBackend option>()

    /// Selects the backend for subsequent operations.
    let set (backend: IBackend) = Volatile.Write(&current, Some backend)

    /// The selected backend, if one was selected (a <see cref="using"/> scope's first).
    let tryGet () =
        match scoped.Value with
        | Some b -> Some b
        | None -> Volatile.Read(&current)

    /// Runs `f` with `backend` selected for the calling thread and the async flow it starts
    /// only, leaving the process-wide choice alone (tests, or two devices side by side).
    let using (backend: IBackend) (f: unit -> 'a) : 'a =
        let before = scoped.Value
        scoped.Value <- Some backend

        try
            f ()
        finally
            scoped.Value <- before
