/// Device specs (--device, config.json, Engine.UseDevice): parsing and its messages, finding a
/// spec among the devices ILGPU lists (with the list of what exists when it is not there), and
/// what this machine (no GPU) reports.
module DevicesTests

open Xunit
open Gan.Functional
open Gan.Functional.CSharp

let private parsed text =
    match DeviceSpec.parse text with
    | Ok spec -> spec
    | Error message -> failwithf "'%s' did not parse: %s" text message

let private refused text =
    match DeviceSpec.parse text with
    | Ok spec -> failwithf "'%s' parsed as %s" text spec.Name
    | Error message -> message

[<Fact>]
let ``Every form parses, in any case and with spaces around it, and prints back as written`` () =
    Assert.Equal(DeviceSpec.Auto, parsed "auto")
    Assert.Equal(DeviceSpec.Cpu, parsed " CPU ")
    Assert.Equal(DeviceSpec.Cuda 0, parsed "cuda:0")
    Assert.Equal(DeviceSpec.Cuda 12, parsed "Cuda:12")
    Assert.Equal(DeviceSpec.OpenCl 1, parsed "opencl:1")
    Assert.Equal(DeviceSpec.IlgpuCpu, parsed "ilgpu-cpu")

    for text in [ "auto"; "cpu"; "cuda:0"; "cuda:12"; "opencl:1"; "ilgpu-cpu" ] do
        Assert.Equal(text, (parsed text).Name)

[<Theory>]
[<InlineData("gpu", "Unknown device 'gpu': name the CUDA device by its number, cuda:0 for the first")>]
[<InlineData("cuda", "Unknown device 'cuda': name the CUDA device by its number, cuda:0 for the first")>]
[<InlineData("opencl", "Unknown device 'opencl': name the OpenCL device by its number, opencl:0")>]
[<InlineData("cuda:", "Unknown device 'cuda:': after 'cuda:' comes the device's number, 0 or more")>]
[<InlineData("cuda:-1", "Unknown device 'cuda:-1': after 'cuda:' comes the device's number")>]
[<InlineData("cuda:+1", "Unknown device 'cuda:+1': after 'cuda:' comes the device's number")>]
[<InlineData("cuda: 1", "Unknown device 'cuda: 1': after 'cuda:' comes the device's number")>]
[<InlineData("cuda:99999999999", "Unknown device 'cuda:99999999999'")>]
[<InlineData("opencl:x", "Unknown device 'opencl:x': after 'opencl:' comes the device's number")>]
[<InlineData("rocm", "Unknown device 'rocm'; --device takes auto, cpu, cuda:N, opencl:N or ilgpu-cpu")>]
[<InlineData("", "The device is empty; --device takes auto, cpu, cuda:N, opencl:N or ilgpu-cpu")>]
let ``A malformed spec is refused saying what is wrong and every form that is accepted``
    (text: string, expected: string)
    =
    let message = refused text
    Assert.StartsWith(expected, message)
    Assert.Contains("auto, cpu, cuda:N, opencl:N or ilgpu-cpu", message)

let private device spec name = {
    Spec = spec
    Name = name
    MemoryBytes = 80L <<< 30
    ComputeCapability = "9.0"
    Multiprocessors = 132
}

let private twoGpus = [
    device (DeviceSpec.Cuda 0) "NVIDIA H100"
    device (DeviceSpec.Cuda 1) "NVIDIA A100"
    device DeviceSpec.IlgpuCpu "CPUAccelerator"
]

let private findError available noCuda spec =
    match Devices.find available noCuda spec with
    | Ok d -> failwithf "found %s" d.Spec.Name
    | Error message -> message

[<Fact>]
let ``A listed device is found by its spec`` () =
    match Devices.find twoGpus "" (DeviceSpec.Cuda 1) with
    | Ok d -> Assert.Equal("NVIDIA A100", d.Name)
    | Error message -> failwith message

[<Fact>]
let ``cuda 3 on a machine with two CUDA devices names both and every device here`` () =
    Assert.Equal(
        "There is no device cuda:3: this machine has 2 CUDA devices, cuda:0 (NVIDIA H100), cuda:1 (NVIDIA A100). The devices here: cpu, cuda:0, cuda:1, ilgpu-cpu.",
        findError twoGpus "" (DeviceSpec.Cuda 3)
    )

[<Fact>]
let ``A CUDA device on a machine without one says why there is none`` () =
    let cpuOnly = [ device DeviceSpec.IlgpuCpu "CPUAccelerator" ]

    Assert.Equal(
        "There is no device cuda:0: this machine has no CUDA device (no driver here). The devices here: cpu, ilgpu-cpu.",
        findError cpuOnly "no driver here" (DeviceSpec.Cuda 0)
    )

    Assert.StartsWith(
        "There is no device opencl:0: this machine has no OpenCL device",
        findError twoGpus "" (DeviceSpec.OpenCl 0)
    )

[<Fact>]
let ``The list has ILGPU's CPU accelerator; a CUDA device that is not here is refused naming the devices here`` () =
    let here = Devices.list ()
    Assert.Contains(here, fun d -> d.Spec = DeviceSpec.IlgpuCpu)

    let cuda =
        here
        |> List.filter (fun d ->
            match d.Spec with
            | DeviceSpec.Cuda _ -> true
            | _ -> false)

    let e =
        Assert.Throws<DeviceUnavailableException>(fun () -> Engine.UseDevice(sprintf "cuda:%d" cuda.Length) |> ignore)

    Assert.StartsWith(sprintf "There is no device cuda:%d: this machine has " cuda.Length, e.Message)
    Assert.Contains("ilgpu-cpu.", e.Message)

    if cuda.IsEmpty then
        // this machine (CI): the reason names the driver library that was looked for
        Assert.Contains("libcuda.so.1", Devices.noCudaReason ())
        Assert.Contains(Devices.noCudaReason (), e.Message)

    Assert.Throws<DeviceUnavailableException>(fun () -> Devices.backend "cuda" |> ignore)
    |> ignore

[<Fact>]
let ``cpu selects the CPU backend; auto too where there is no CUDA device, saying why`` () =
    if not (Devices.list () |> List.exists (fun d -> d.Spec = DeviceSpec.Cuda 0)) then
        let backend, line = Devices.select DeviceSpec.Auto 1
        Assert.IsType<Gan.Functional.Kernels.CpuBackend>(backend) |> ignore
        Assert.Contains("(auto: no CUDA device: ", line)

    let cpu, cpuLine = Devices.select DeviceSpec.Cpu 1
    Assert.IsType<Gan.Functional.Kernels.CpuBackend>(cpu) |> ignore
    Assert.StartsWith("cpu backend, 1 thread", cpuLine)

[<Fact>]
let ``Devices.backend gives F# the backend of a spec, one per device and process, whose tensors live on the device``
    ()
    =
    let b = Devices.backend "ilgpu-cpu"
    Assert.Same(b, Devices.backend " ILGPU-CPU ")
    Assert.IsAssignableFrom<IDeviceBackend>(b) |> ignore

    let y =
        Backend.using b (fun () -> Tensor.toArray (Tensor.ofArray [| 3 |] [| 1.0f; 2.0f; 3.0f |] * 2.0))

    Assert.Equal<float32[]>([| 2.0f; 4.0f; 6.0f |], y)

    Backend.using b (fun () ->
        let t = Tensor.ofArray [| 2 |] [| 1.0f; 2.0f |]
        Assert.True(Tensor.isOnDevice t)
        Assert.StartsWith("ilgpu-cpu", Tensor.placeName t))

    Assert.IsType<Gan.Functional.Kernels.CpuBackend>(Devices.backend "cpu")
    |> ignore
