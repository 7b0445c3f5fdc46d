namespace Gan.Functional.Nn

open Gan.Functional

/// How a parameter tensor is drawn at initialisation.
type Initializer =
    /// PyTorch's default for Linear and Conv weights and biases: U(−1/√fanIn, 1/√fanIn)
    /// (kaiming_uniform with a = √5 reduces to this bound).
    | TorchDefault
    /// Every element the same value (BatchNorm's 1 and 0, zero biases).
    | Constant of value: float
    /// N(mean, std²) (DCGAN: N(0, 0.02); BatchNorm scale N(1, 0.02)).
    | Normal of mean: float * std: float
    /// N(0, std²) truncated to ±2 std, as TensorFlow's truncated_normal (S4's conv weights).
    | TruncatedNormal of std: float

/// Drawing parameters from keys.
module Init =

    /// A float32 tensor of `shape` drawn by `init`; `fanIn` is the number of inputs feeding one
    /// output (in·kh·kw for convolutions), used by TorchDefault.
    let draw (init: Initializer) (key: Key) (fanIn: int) (shape: int[]) =
        match init with
        | TorchDefault ->
            let bound = if fanIn > 0 then 1.0 / sqrt (float fanIn) else 0.0
            Tensor.rand key shape * (2.0 * bound) - bound
        | Constant v -> Tensor.full shape v
        | Normal(mean, std) -> Tensor.randn key shape * std + mean
        | TruncatedNormal std -> Tensor.truncatedNormal key shape * std
