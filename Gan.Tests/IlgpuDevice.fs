/// The ILGPU backends the tests share, created once per test run: the device GAN_TEST_DEVICE
/// names (e.g. cuda:0, as scripts/gpu-check.sh sets it), opened as --device opens it; else
/// ILGPU's CPU accelerator.
module IlgpuDevice

open System
open ILGPU
open ILGPU.Runtime.CPU
open Gan.Functional
open Gan.Functional.Kernels

let private tiledContext =
    lazy (Context.Create(fun b -> b.CPU(CPUDevice(32, 8, 1)).EnableAlgorithms() |> ignore))

let private named =
    match Environment.GetEnvironmentVariable "GAN_TEST_DEVICE" with
    | null
    | "" -> None
    | spec -> Some spec

let private tiledBackend =
    lazy
        (match named with
         | Some spec -> Devices.backend spec :?> IlgpuBackend
         | None -> IlgpuBackend(tiledContext.Force().CreateCPUAccelerator(0), 256))

let private smallContext =
    lazy (Context.Create(fun b -> b.CPU(CPUDevice(4, 4, 1)).EnableAlgorithms() |> ignore))

let private smallBackend =
    lazy
        (match named with
         | Some _ -> tiledBackend.Force()
         | None -> IlgpuBackend(smallContext.Force().CreateCPUAccelerator(0), 16))

/// The named device, else the CPU accelerator with 32-thread warps, 8 warps per group:
/// 256-thread groups as on a GPU (the tiled GEMM runs).
let get () = tiledBackend.Force()

/// The named device, else the CPU accelerator with 4-thread warps, 4 per group: 16-thread
/// groups (the one-thread-per-output GEMM runs, and the group reductions with 16 threads; the
/// CPU accelerator's 256-thread barriers make whole training steps take minutes).
let small () = smallBackend.Force()
