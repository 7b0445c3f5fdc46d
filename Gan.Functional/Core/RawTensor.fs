namespace Gan.Functional

/// Element type of a tensor. Float32 is the training type; Float64 exists for exact
/// gradient checks (finite differences) and numerically delicate reductions.
type DType =
    | Float32
    | Float64

/// Contiguous row-major element storage.
[<RequireQualifiedAccess>]
type Storage =
    | F32 of float32[]
    | F64 of float[]

/// A raw tensor: a shape and a contiguous buffer, with no notion of gradients. Kernels read
/// and write these; the differentiable <c>Tensor</c> wraps them. Buffers are never mutated
/// after construction (kernels allocate their outputs).
[<NoEquality; NoComparison>]
type RawTensor = {
    Shape: int[]
    Storage: Storage
} with

    /// Element type of the buffer.
    member t.DType =
        match t.Storage with
        | Storage.F32 _ -> Float32
        | Storage.F64 _ -> Float64

    /// Number of elements.
    member t.Numel = Shape.numel t.Shape

/// Construction and conversion of raw tensors.
module RawTensor =

    /// True when both tensors are views of one and the same buffer.
    let sameBuffer (a: RawTensor) (b: RawTensor) =
        match a.Storage, b.Storage with
        | Storage.F32 x, Storage.F32 y -> obj.ReferenceEquals(x, y)
        | Storage.F64 x, Storage.F64 y -> obj.ReferenceEquals(x, y)
        | _ -> false

    /// Wraps a float32 buffer; its length must equal the shape's element count.
    let ofFloat32 (shape: int[]) (data: float32[]) =
        Shape.check "tensor" shape

        if data.Length <> Shape.numel shape then
            Shape.fail "tensor" (sprintf "%d values do not fill shape %s" data.Length (Shape.show shape))

        {
            Shape = shape
            Storage = Storage.F32 data
        }

    /// Wraps a float64 buffer; its length must equal the shape's element count.
    let ofFloat64 (shape: int[]) (data: float[]) =
        Shape.check "tensor" shape

        if data.Length <> Shape.numel shape then
            Shape.fail "tensor" (sprintf "%d values do not fill shape %s" data.Length (Shape.show shape))

        {
            Shape = shape
            Storage = Storage.F64 data
        }

    /// A tensor of the given dtype with every element `v`.
    let full dtype (shape: int[]) (v: float) =
        Shape.check "full" shape

        match dtype with
        | Float32 -> {
            Shape = shape
            Storage = Storage.F32(Array.create (Shape.numel shape) (float32 v))
          }
        | Float64 -> {
            Shape = shape
            Storage = Storage.F64(Array.create (Shape.numel shape) v)
          }

    /// The elements as float64, in row-major order (a copy).
    let toFloat64Array (t: RawTensor) =
        match t.Storage with
        | Storage.F32 a -> Array.map float a
        | Storage.F64 a -> Array.copy a

    /// The elements as float32, in row-major order (a copy).
    let toFloat32Array (t: RawTensor) =
        match t.Storage with
        | Storage.F32 a -> Array.copy a
        | Storage.F64 a -> Array.map float32 a

    /// The same values in another dtype (the same tensor when the dtype already matches).
    let cast dtype (t: RawTensor) =
        match dtype, t.Storage with
        | Float32, Storage.F32 _
        | Float64, Storage.F64 _ -> t
        | Float32, Storage.F64 a -> {
            Shape = t.Shape
            Storage = Storage.F32(Array.map float32 a)
          }
        | Float64, Storage.F32 a -> {
            Shape = t.Shape
            Storage = Storage.F64(Array.map float a)
          }
