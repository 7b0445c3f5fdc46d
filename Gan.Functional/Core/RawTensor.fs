namespace Gan.Functional

/// Element type of a tensor. Float32 is the training type; Float64 exists for exact
/// gradient checks (finite differences) and numerically delicate reductions.
type DType =
    | Float32
    | Float64

/// Contiguous row-major element storage: host arrays, or a buffer in a device's memory.
[<RequireQualifiedAccess>]
type Storage =
    | F32 of float32[]
    | F64 of float[]
    /// Elements resident on a device (e.g. a GPU's memory), owned by the backend that allocated
    /// them: only that backend's kernels read them; everything else copies them to the host
    /// first (<see cref="M:Gan.Functional.DeviceBuffer.CopyToHost"/>).
    | Device of DeviceBuffer

/// A buffer of elements in a device's memory. Opaque to everything but the backend that
/// allocated it (<see cref="P:Gan.Functional.DeviceBuffer.Owner"/>), which runs every kernel on
/// it; the engine routes each operation to the owner of its inputs' buffers. Like host arrays,
/// device buffers are never mutated after the kernel that wrote them returns (the fused Adam
/// step's donated moments excepted).
and [<AbstractClass>] DeviceBuffer() =
    /// The element type.
    abstract DType: DType
    /// The number of elements held (at least the tensor's element count).
    abstract Length: int
    /// The device's name, as errors show it (e.g. "cuda:0 (NVIDIA H100)").
    abstract DeviceName: string
    /// The backend that allocated the buffer and runs kernels on it: an
    /// <c>IDeviceBackend</c> (typed <c>obj</c> here because the backend seam is declared after
    /// storage).
    abstract Owner: obj
    /// A host copy of the first `count` elements, in the buffer's dtype (waits for the kernels
    /// that write it).
    abstract CopyToHost: count: int -> Storage

/// A device could not allocate a buffer: raised by a device backend's allocation, naming the
/// device, its free memory and the request. The host adds what it knows (model, batch size).
type DeviceOutOfMemoryException(deviceName: string, freeBytes: int64, requestedBytes: int64, inner: exn) =
    inherit
        System.Exception(
            sprintf
                "out of memory on %s: %s requested, %s free"
                deviceName
                (DeviceOutOfMemoryException.Show requestedBytes)
                (if freeBytes < 0L then
                     "unknown"
                 else
                     DeviceOutOfMemoryException.Show freeBytes),
            inner
        )

    /// Bytes shown in MiB (or bytes below 1 MiB).
    static member Show(bytes: int64) =
        if bytes >= 1048576L then
            sprintf "%.1f MiB" (float bytes / 1048576.0)
        else
            sprintf "%d bytes" bytes

    /// The device that ran out of memory.
    member _.DeviceName = deviceName
    /// The device's free memory when the allocation failed (−1: the device does not say).
    member _.FreeBytes = freeBytes
    /// The size of the allocation that failed.
    member _.RequestedBytes = requestedBytes

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
        | Storage.Device d -> d.DType

    /// Number of elements.
    member t.Numel = Shape.numel t.Shape

/// Construction and conversion of raw tensors.
module RawTensor =

    /// True when both tensors are views of one and the same buffer.
    let sameBuffer (a: RawTensor) (b: RawTensor) =
        match a.Storage, b.Storage with
        | Storage.F32 x, Storage.F32 y -> obj.ReferenceEquals(x, y)
        | Storage.F64 x, Storage.F64 y -> obj.ReferenceEquals(x, y)
        | Storage.Device x, Storage.Device y -> obj.ReferenceEquals(x, y)
        | _ -> false

    /// Where the tensor lives, for messages: "the host" or the device's name.
    let placeName (t: RawTensor) =
        match t.Storage with
        | Storage.Device d -> d.DeviceName
        | _ -> "the host"

    /// The tensor itself when its storage is on the host, else a host copy (waits for the
    /// device).
    let toHost (t: RawTensor) =
        match t.Storage with
        | Storage.Device d -> {
            Shape = t.Shape
            Storage = d.CopyToHost(Shape.numel t.Shape)
          }
        | _ -> t

    /// Fails saying that a host kernel was given a device tensor (the engine routes operations
    /// to their inputs' device, so this means a kernel was called directly).
    let hostOnly (op: string) (d: DeviceBuffer) : 'a =
        Shape.fail
            op
            (sprintf
                "this host kernel was given a tensor on %s; operations on device tensors run on the device's backend (or move the tensor with Tensor.toHost)"
                d.DeviceName)

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
        match (toHost t).Storage with
        | Storage.F32 a -> Array.map float a
        | Storage.F64 a -> Array.copy a
        | Storage.Device d -> hostOnly "to_array" d

    /// The elements as float32, in row-major order (a copy).
    let toFloat32Array (t: RawTensor) =
        match (toHost t).Storage with
        | Storage.F32 a -> Array.copy a
        | Storage.F64 a -> Array.map float32 a
        | Storage.Device d -> hostOnly "to_array" d

    /// The same values in another dtype (the same tensor when the dtype already matches); host
    /// storage only (a device backend casts its own buffers).
    let cast dtype (t: RawTensor) =
        match dtype, t.Storage with
        | _, Storage.Device d when d.DType = dtype -> t
        | _, Storage.Device d -> hostOnly "cast" d
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
