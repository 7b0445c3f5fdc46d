namespace Gan.Functional.Kernels.Ilgpu

open System
open ILGPU
open ILGPU.Runtime
open Gan.Functional

/// The typed memory behind an <c>IlgpuBuffer</c>.
[<RequireQualifiedAccess>]
type internal DeviceArray =
    | F32 of MemoryBuffer1D<float32, Stride1D.Dense>
    | F64 of MemoryBuffer1D<float, Stride1D.Dense>

/// A buffer in an ILGPU accelerator's memory. Freed when the engine recycles it (a dead
/// adjoint) or, failing that, by its finalizer; the bytes it holds are reported to the GC as
/// memory pressure so that dead buffers are collected before the device fills up.
[<Sealed>]
type internal IlgpuBuffer(owner: obj, deviceName: string, memory: DeviceArray, length: int) =
    inherit DeviceBuffer()

    let bytes =
        match memory with
        | DeviceArray.F32 _ -> 4L * int64 length
        | DeviceArray.F64 _ -> 8L * int64 length

    do
        if bytes > 0L then
            GC.AddMemoryPressure bytes

    let mutable freed = 0

    /// The typed memory.
    member _.Memory = memory

    /// The float32 view (fails for a float64 buffer).
    member _.F32 =
        match memory with
        | DeviceArray.F32 m -> m.AsContiguous()
        | DeviceArray.F64 _ -> invalidOp "a float64 device buffer was read as float32"

    /// The float64 view (fails for a float32 buffer).
    member _.F64 =
        match memory with
        | DeviceArray.F64 m -> m.AsContiguous()
        | DeviceArray.F32 _ -> invalidOp "a float32 device buffer was read as float64"

    /// Returns the memory to the device now (only for buffers nothing reads again).
    member _.Free() =
        if Threading.Interlocked.Exchange(&freed, 1) = 0 then
            match memory with
            | DeviceArray.F32 m -> m.Dispose()
            | DeviceArray.F64 m -> m.Dispose()

            if bytes > 0L then
                GC.RemoveMemoryPressure bytes

    override _.DType =
        match memory with
        | DeviceArray.F32 _ -> Float32
        | DeviceArray.F64 _ -> Float64

    override _.Length = length
    override _.DeviceName = deviceName
    override _.Owner = owner

    override _.CopyToHost(count: int) =
        if freed <> 0 then
            invalidOp (sprintf "a device buffer on %s was read after it was freed" deviceName)

        match memory with
        | DeviceArray.F32 m ->
            let a = Array.zeroCreate<float32> count

            if count > 0 then
                m.View.SubView(0L, int64 count).CopyToCPU(a)

            Storage.F32 a
        | DeviceArray.F64 m ->
            let a = Array.zeroCreate<float> count

            if count > 0 then
                m.View.SubView(0L, int64 count).CopyToCPU(a)

            Storage.F64 a

    // ILGPU's own finalizer returns unfreed memory to the device; this one balances the
    // pressure reported to the GC.
    override _.Finalize() =
        if freed = 0 && bytes > 0L then
            GC.RemoveMemoryPressure bytes
