namespace Gan.Functional.Kernels.Ilgpu

open System
open System.Runtime.InteropServices

/// The GPU vendors' native libraries by the bare names their bindings use ("cuda", "OpenCL",
/// "cublas"): the one place that says which files those names are on Linux.
module internal NativeLibraries =

    /// The files a bare library name stands for on Linux, tried in order. .NET would probe only
    /// the unversioned names (libcuda.so, libOpenCL.so, libcublas.so), which only the vendors'
    /// development packages install; the drivers and runtimes ship the versioned names tried
    /// first here (cuBLAS: CUDA 13's, then 12's, 11's and 10's).
    let candidates (name: string) =
        match name with
        | "cuda"
        | "nvcuda" -> [ "libcuda.so.1"; "libcuda.so" ]
        | "OpenCL"
        | "opencl" -> [ "libOpenCL.so.1"; "libOpenCL.so" ]
        | "cublas" -> [ "libcublas.so.13"; "libcublas.so.12"; "libcublas.so.11"; "libcublas.so.10" ]
        | _ -> []

    /// The first of `files` that loads, with its handle and file name, or None.
    let tryLoadAny (files: string list) : (nativeint * string) option =
        files
        |> List.tryPick (fun file ->
            match NativeLibrary.TryLoad file with
            | true, handle -> Some(handle, file)
            | _ -> None)

    /// The library a bare name stands for, loaded (Linux only; elsewhere None).
    let tryLoad (name: string) =
        if OperatingSystem.IsLinux() then
            tryLoadAny (candidates name)
        else
            None
