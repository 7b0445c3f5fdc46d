namespace Gan.Functional

open System
open System.Collections.Concurrent
open System.Reflection
open System.Runtime.InteropServices
open ILGPU
open ILGPU.Runtime
open ILGPU.Runtime.Cuda
open ILGPU.Runtime.OpenCL
open ILGPU.Runtime.CPU
open ILGPU.Algorithms
open Gan.Functional.Kernels.Ilgpu

/// A device as <c>--device</c>, config.json and <c>Engine.UseDevice</c> name it.
[<RequireQualifiedAccess>]
type DeviceSpec =
    /// A CUDA device when one works here, else the CPU backend.
    | Auto
    /// The CPU backend (managed SIMD kernels, OpenBLAS, oneDNN).
    | Cpu
    /// CUDA device N (from 0) through ILGPU.
    | Cuda of index: int
    /// OpenCL device N (from 0) through ILGPU.
    | OpenCl of index: int
    /// ILGPU's CPU accelerator: the device kernels on CPU threads, one per GPU thread; for
    /// testing the device path without a GPU, far slower than <c>Cpu</c>.
    | IlgpuCpu

    /// The spec as written: "auto", "cpu", "cuda:0", "opencl:1", "ilgpu-cpu".
    member d.Name =
        match d with
        | Auto -> "auto"
        | Cpu -> "cpu"
        | Cuda n -> sprintf "cuda:%d" n
        | OpenCl n -> sprintf "opencl:%d" n
        | IlgpuCpu -> "ilgpu-cpu"

    override d.ToString() = d.Name

/// Parsing device specs: pure, so a run's settings are checked the same on any machine (whether
/// the device exists is asked only when a backend is made for it).
module DeviceSpec =
    /// The forms a device spec takes.
    let forms = [ "auto"; "cpu"; "cuda:N"; "opencl:N"; "ilgpu-cpu" ]

    let private accepted =
        "--device takes auto, cpu, cuda:N, opencl:N or ilgpu-cpu (N counts the devices of a kind from 0; `Gan.Host devices` lists this machine's)"

    /// The spec `text` names (trimmed, any case), or one paragraph saying what is wrong.
    let parse (text: string) : Result<DeviceSpec, string> =
        let t =
            if String.IsNullOrEmpty text then
                ""
            else
                text.Trim().ToLowerInvariant()

        let indexed (kind: string) (make: int -> DeviceSpec) (rest: string) =
            match Int32.TryParse(rest, Globalization.NumberStyles.None, Globalization.CultureInfo.InvariantCulture) with
            | true, n -> Ok(make n)
            | _ ->
                Error(
                    sprintf
                        "Unknown device '%s': after '%s:' comes the device's number, 0 or more (%s:0 is the first); %s."
                        text
                        kind
                        kind
                        accepted
                )

        match t with
        | "auto" -> Ok DeviceSpec.Auto
        | "cpu" -> Ok DeviceSpec.Cpu
        | "ilgpu-cpu" -> Ok DeviceSpec.IlgpuCpu
        | _ when t.StartsWith("cuda:", StringComparison.Ordinal) -> indexed "cuda" DeviceSpec.Cuda (t.Substring 5)
        | _ when t.StartsWith("opencl:", StringComparison.Ordinal) -> indexed "opencl" DeviceSpec.OpenCl (t.Substring 7)
        | "cuda"
        | "gpu" ->
            Error(
                sprintf
                    "Unknown device '%s': name the CUDA device by its number, cuda:0 for the first; %s."
                    text
                    accepted
            )
        | "opencl" ->
            Error(
                sprintf
                    "Unknown device '%s': name the OpenCL device by its number, opencl:0 for the first; %s."
                    text
                    accepted
            )
        | "" -> Error(sprintf "The device is empty; %s." accepted)
        | _ -> Error(sprintf "Unknown device '%s'; %s." text accepted)

/// One device ILGPU found on this machine.
[<NoComparison>]
type DeviceInfo = {
    /// How <c>--device</c> names it.
    Spec: DeviceSpec
    /// The device's own name, e.g. "NVIDIA H100 80GB HBM3".
    Name: string
    /// Total memory in bytes; 0 where the device has none of its own (the CPU accelerator).
    MemoryBytes: int64
    /// CUDA compute capability as "major.minor" (e.g. "9.0"); "" for other kinds or where ILGPU
    /// does not know the architecture.
    ComputeCapability: string
    /// Multiprocessors (CUDA SMs, OpenCL compute units, CPU accelerator threads).
    Multiprocessors: int
}

/// Raised when a device spec names no device that works here; the message names the devices
/// that exist.
type DeviceUnavailableException(message: string) =
    inherit Exception(message)

/// The devices of this machine as ILGPU sees them, and the backend for a device spec.
///
/// This is the library's one piece of hardware access, kept here rather than in the host because
/// <c>Engine.UseDevice</c>, <c>Backend.set</c> and F# Interactive must reach a GPU without the host:
/// it loads the drivers' native libraries (as Blas.fs loads OpenBLAS) and asks them what exists.
/// It reads and writes no files and nothing runs until a caller asks for a device.
module Devices =

    /// ILGPU binds the drivers by bare names ("cuda", "OpenCL"); NativeLibraries says which
    /// files those are (the versioned names the drivers ship).
    let private resolve (name: string) (_: Assembly) (_: Nullable<DllImportSearchPath>) =
        match NativeLibraries.tryLoad name with
        | Some(handle, _) -> handle
        | None -> IntPtr.Zero // the default probing, and its error

    let private installResolver () =
        try
            NativeLibrary.SetDllImportResolver(typeof<Context>.Assembly, DllImportResolver resolve)
        with :? InvalidOperationException ->
            () // someone set one first: theirs stands

    let private resolver = lazy (installResolver ())

    /// Installs, once per process, the resolver that finds libcuda.so.1 and libOpenCL.so.1 for
    /// ILGPU. Must run before any ILGPU context is created (the context made here does); code
    /// that makes its own ILGPU context (tests) calls it first.
    let prepareNativeLibraries () = resolver.Force()

    /// The process-wide ILGPU context: CUDA, OpenCL and the CPU accelerator, with ILGPU.Algorithms
    /// enabled; made on first use. The CPU accelerator has 32-thread warps and 256-thread groups,
    /// the shape of a GPU's that the device kernels are written for (ILGPU's default CPU device
    /// has 16-thread groups).
    let private context =
        lazy
            (prepareNativeLibraries ()

             Context.Create(fun b -> b.Cuda().OpenCL().CPU(CPUDevice(32, 8, 1)).EnableAlgorithms() |> ignore))

    /// The process-wide ILGPU context (made on first use, after the native-library resolver).
    let ilgpuContext () = context.Force()

    /// The context's devices of one kind, in ILGPU's order (which numbers them).
    let private ofType<'d when 'd :> Device> () =
        context.Force().Devices
        |> Seq.choose (fun d ->
            match d with
            | :? 'd as x -> Some x
            | _ -> None)
        |> Seq.toList

    let private info (spec: DeviceSpec) (d: Device) = {
        Spec = spec
        Name = d.Name
        MemoryBytes =
            (match d with
             | :? CPUDevice -> 0L
             | _ -> d.MemorySize)
        ComputeCapability =
            (match d with
             | :? CudaDevice as c when c.Architecture.HasValue ->
                 sprintf "%d.%d" c.Architecture.Value.Major c.Architecture.Value.Minor
             | _ -> "")
        Multiprocessors =
            (match d with
             | :? CPUDevice as c -> c.NumThreads
             | _ -> d.NumMultiprocessors)
    }

    /// The devices ILGPU found: CUDA, then OpenCL, then its CPU accelerator. The CPU backend
    /// ("cpu") is not among them: it is always there.
    let list () : DeviceInfo list = [
        yield! ofType<CudaDevice>() |> List.mapi (fun i d -> info (DeviceSpec.Cuda i) d)
        yield! ofType<CLDevice>() |> List.mapi (fun i d -> info (DeviceSpec.OpenCl i) d)
        yield! ofType<CPUDevice>() |> List.truncate 1 |> List.map (info DeviceSpec.IlgpuCpu)
    ]

    /// Why there is no CUDA device (when <c>list</c> has none): the driver library is missing,
    /// or it is there and reports no device.
    let noCudaReason () =
        if not (OperatingSystem.IsLinux()) then
            "ILGPU found no CUDA device (is the NVIDIA driver installed?)"
        else
            match NativeLibrary.TryLoad "libcuda.so.1" with
            | true, handle ->
                NativeLibrary.Free handle
                "the NVIDIA driver (libcuda.so.1) is installed but reports no CUDA device"
            | _ -> "no NVIDIA driver: libcuda.so.1 is not on the library path"

    /// Whether CUDA devices multiply float32 matrices with cuBLAS here, as "available", "off"
    /// or "none", and one sentence saying which library loaded or why none is used (loads
    /// cuBLAS on first use unless GAN_CUBLAS=0). A device whose cuBLAS handle cannot be made
    /// says so on the line <c>select</c> returns.
    let cuBlas () =
        if not Knobs.cublas then
            "off", "GAN_CUBLAS=0: CUDA devices multiply with the backend's own tiled GEMM kernel"
        else
            match CuBlas.library.Force() with
            | Ok lib ->
                "available",
                sprintf
                    "%s loads: CUDA devices multiply float32 matrices with cuBLAS (GAN_CUBLAS=0 turns it off)"
                    lib.File
            | Error why ->
                "none", sprintf "cuBLAS %s: CUDA devices multiply with the backend's own tiled GEMM kernel" why

    let private gib (bytes: int64) =
        (float bytes / float (1L <<< 30)).ToString("0.0", Globalization.CultureInfo.InvariantCulture)

    /// One line on a device (without its spec): name, capability, memory.
    let describe (d: DeviceInfo) =
        match d.Spec with
        | DeviceSpec.Cuda _ ->
            sprintf
                "%s, compute capability %s, %s GiB, %d SMs"
                d.Name
                (if d.ComputeCapability = "" then
                     "unknown to ILGPU"
                 else
                     d.ComputeCapability)
                (gib d.MemoryBytes)
                d.Multiprocessors
        | DeviceSpec.OpenCl _ -> sprintf "%s, %s GiB, %d compute units" d.Name (gib d.MemoryBytes) d.Multiprocessors
        | DeviceSpec.IlgpuCpu ->
            sprintf
                "ILGPU's CPU accelerator, %d threads (the device kernels on CPU threads: for tests, far slower than cpu)"
                d.Multiprocessors
        | DeviceSpec.Auto
        | DeviceSpec.Cpu -> d.Name

    /// The device `spec` names among `available` (as <c>list</c> returns them), or the message
    /// naming the devices that exist; `noCuda` says why there is no CUDA device when there is
    /// none. Auto and Cpu name no ILGPU device.
    let find (available: DeviceInfo list) (noCuda: string) (spec: DeviceSpec) : Result<DeviceInfo, string> =
        let here =
            "cpu" :: (available |> List.map (fun d -> d.Spec.Name)) |> String.concat ", "

        let ofKind kind =
            available
            |> List.filter (fun d ->
                match d.Spec, kind with
                | DeviceSpec.Cuda _, DeviceSpec.Cuda _
                | DeviceSpec.OpenCl _, DeviceSpec.OpenCl _
                | DeviceSpec.IlgpuCpu, DeviceSpec.IlgpuCpu -> true
                | _ -> false)

        match spec with
        | DeviceSpec.Auto
        | DeviceSpec.Cpu -> Error(sprintf "'%s' is not an ILGPU device" spec.Name)
        | _ ->
            match available |> List.tryFind (fun d -> d.Spec = spec) with
            | Some d -> Ok d
            | None ->
                let kindName, why =
                    match spec with
                    | DeviceSpec.Cuda _ -> "CUDA", sprintf " (%s)" noCuda
                    | DeviceSpec.OpenCl _ -> "OpenCL", " (ILGPU found no OpenCL platform with a device)"
                    | _ -> "ILGPU CPU", ""

                match ofKind spec with
                | [] ->
                    Error(
                        sprintf
                            "There is no device %s: this machine has no %s device%s. The devices here: %s."
                            spec.Name
                            kindName
                            why
                            here
                    )
                | some ->
                    Error(
                        sprintf
                            "There is no device %s: this machine has %d %s device%s, %s. The devices here: %s."
                            spec.Name
                            some.Length
                            kindName
                            (if some.Length = 1 then "" else "s")
                            (some
                             |> List.map (fun d -> sprintf "%s (%s)" d.Spec.Name d.Name)
                             |> String.concat ", ")
                            here
                    )

    /// One opened ILGPU device: its accelerator and the backend running kernels on it.
    type private Opened = {
        Info: DeviceInfo
        Accelerator: Accelerator
        Backend: IBackend
    }

    // one accelerator and backend per device and process: a CUDA accelerator holds a driver
    // context, the backend its compiled kernels and buffer pool
    let private opened = ConcurrentDictionary<DeviceSpec, Lazy<Opened>>()

    let private deviceOf (spec: DeviceSpec) : Device =
        match spec with
        | DeviceSpec.Cuda n -> (ofType<CudaDevice>()).[n] :> Device
        | DeviceSpec.OpenCl n -> (ofType<CLDevice>()).[n] :> Device
        | _ -> (ofType<CPUDevice>()).[0] :> Device

    let private makeBackend (accelerator: Accelerator) : IBackend =
        Gan.Functional.Kernels.IlgpuBackend(accelerator) :> IBackend

    let private openDevice (d: DeviceInfo) =
        let make =
            opened.GetOrAdd(
                d.Spec,
                fun spec ->
                    lazy
                        (let accelerator = (deviceOf spec).CreateAccelerator(context.Force())

                         {
                             Info = d
                             Accelerator = accelerator
                             Backend = makeBackend accelerator
                         })
            )

        try
            make.Force()
        with e ->
            opened.TryRemove(d.Spec) |> ignore

            raise (
                DeviceUnavailableException(
                    sprintf "Could not open %s (%s): %s." d.Spec.Name (describe d) (e.Message.TrimEnd('.'))
                )
            )

    let private opening (spec: DeviceSpec) =
        match find (list ()) (noCudaReason ()) spec with
        | Error message -> raise (DeviceUnavailableException message)
        | Ok d -> openDevice d

    /// The accelerator of an ILGPU device, made once per process and kept.
    /// DeviceUnavailableException when the spec names no device here or the device cannot be
    /// opened.
    let accelerator (spec: DeviceSpec) : Accelerator = (opening spec).Accelerator

    /// Free device memory in bytes where the driver says (CUDA), else None.
    let freeMemory (accelerator: Accelerator) =
        match accelerator with
        | :? CudaAccelerator as c -> Some(c.GetFreeMemory())
        | _ -> None

    let private openedLine (o: Opened) =
        let free =
            match freeMemory o.Accelerator with
            | Some bytes -> sprintf " (%s GiB free)" (gib bytes)
            | None -> ""

        let matmul =
            match o.Backend with
            | :? Gan.Functional.Kernels.IlgpuBackend as b -> sprintf " (%s)" b.MatMulDescription
            | _ -> ""

        sprintf "device %s: %s%s; %s backend%s" o.Info.Spec.Name (describe o.Info) free o.Backend.Name matmul

    /// Runs one tiny kernel on a freshly opened device and reads the result back: a device that
    /// ILGPU lists but whose driver cannot run its code (an architecture too new, a broken
    /// install) fails here rather than in the first training step.
    let private smokeTest (o: Opened) =
        match o.Backend with
        | :? IDeviceBackend as b ->
            let x = RawTensor.ofFloat32 [| 3 |] [| 1.0f; -2.0f; 3.0f |]
            let y = RawTensor.toFloat32Array (b.Unary(Neg, b.Upload x))

            if y <> [| -1.0f; 2.0f; -3.0f |] then
                failwithf "a test kernel computed %A for -[1; -2; 3]" y
        | _ -> ()

    /// A backend for `spec` and one line saying where the kernels run. Cpu: the CPU backend with
    /// `threads` worker threads (0: one per core). Auto: the first CUDA device that opens and
    /// runs a test kernel, else the CPU backend (the line says why). Other specs: that ILGPU
    /// device, kept for the process; DeviceUnavailableException when it is not here or cannot be
    /// opened (the message lists the devices that exist).
    let select (spec: DeviceSpec) (threads: int) : IBackend * string =
        let cpu (note: string) =
            let b = Gan.Functional.Kernels.CpuBackend(threads)
            b :> IBackend, b.Description + note

        match spec with
        | DeviceSpec.Cpu -> cpu ""
        | DeviceSpec.Auto ->
            let cuda =
                list ()
                |> List.filter (fun d ->
                    match d.Spec with
                    | DeviceSpec.Cuda _ -> true
                    | _ -> false)

            let rec first (failures: string list) (ds: DeviceInfo list) =
                match ds with
                | [] ->
                    if failures.IsEmpty then
                        cpu (sprintf " (auto: no CUDA device: %s)" (noCudaReason ()))
                    else
                        cpu (sprintf " (auto: no CUDA device works here: %s)" (String.Join("; ", List.rev failures)))
                | d :: rest ->
                    match
                        (try
                            let o = openDevice d
                            smokeTest o
                            Ok o
                         with
                         | :? DeviceUnavailableException as e -> Error(e.Message.TrimEnd('.'))
                         | e ->
                             Error(
                                 sprintf
                                     "%s (%s) failed a test kernel: %s"
                                     d.Spec.Name
                                     (describe d)
                                     (e.Message.TrimEnd('.'))
                             ))
                    with
                    | Ok o -> o.Backend, openedLine o + " (auto)"
                    | Error why -> first (why :: failures) rest

            first [] cuda
        | _ ->
            let o = opening spec
            o.Backend, openedLine o

    /// The backend of a device spec in its written form, for F#:
    /// <c>Backend.set (Devices.backend "cuda:0")</c>; the CPU backend on every core for "cpu".
    /// DeviceUnavailableException for a malformed spec or a device that is not here.
    let backend (spec: string) : IBackend =
        match DeviceSpec.parse spec with
        | Error message -> raise (DeviceUnavailableException message)
        | Ok s -> fst (select s 0)
