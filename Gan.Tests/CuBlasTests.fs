/// The ILGPU backend's cuBLAS binding, run for real without a GPU: the tests build a stand-in
/// libcublas.so.12 with cc from StandIns/cublas.c (naive loops with cuBLAS's documented
/// column-major semantics on host pointers) and give it to a backend on ILGPU's CPU
/// accelerator, whose buffers are host memory. Its products must equal the reference kernels'
/// for every transpose combination, odd sizes and broadcast batches; and without cuBLAS (not
/// found, GAN_CUBLAS=0, not CUDA, cublasCreate failing) the backend's own kernel serves and says
/// why.
module CuBlasTests

open System
open System.Diagnostics
open System.IO
open System.Runtime.InteropServices
open Xunit
open ILGPU
open ILGPU.Runtime.CPU
open Gan.Functional
open Gan.Functional.Kernels
open Gan.Functional.Kernels.Ilgpu

let private cc =
    (string (Environment.GetEnvironmentVariable "PATH")).Split(':', StringSplitOptions.RemoveEmptyEntries)
    |> Seq.collect (fun dir -> [ Path.Combine(dir, "cc"); Path.Combine(dir, "gcc") ])
    |> Seq.tryFind File.Exists

/// A test that builds the stand-in with a C compiler: skipped, saying so, where there is none.
type CcFactAttribute() as this =
    inherit FactAttribute()

    do
        if not (OperatingSystem.IsLinux()) then
            this.Skip <- "the stand-in is a Linux shared library"
        elif cc.IsNone then
            this.Skip <- "no C compiler (cc) here (Debian: apt-get install gcc)"

/// The stand-in, built once per test run into a temporary folder as libcublas.so.12.
let private standIn =
    lazy
        (let dir = Directory.CreateTempSubdirectory("gan-cublas-").FullName
         let lib = Path.Combine(dir, "libcublas.so.12")
         let source = Path.Combine(AppContext.BaseDirectory, "StandIns", "cublas.c")

         let psi =
             ProcessStartInfo(cc.Value, RedirectStandardError = true, UseShellExecute = false)

         for a in [ "-shared"; "-fPIC"; "-O1"; "-Wl,-soname,libcublas.so.12"; "-o"; lib; source ] do
             psi.ArgumentList.Add a

         use p =
             match Process.Start psi with
             | null -> failwithf "%s did not start" cc.Value
             | p -> p

         let errors = p.StandardError.ReadToEnd()
         p.WaitForExit()
         Assert.True((p.ExitCode = 0), sprintf "cc failed on %s: %s" source errors)
         lib)

let private library () =
    match CuBlas.load [ standIn.Force() ] with
    | Ok lib -> lib
    | Error why -> failwithf "the stand-in did not load: %s" why

/// The stand-in's int variable `name` (its counters and status overrides).
let private variable (name: string) =
    let handle = NativeLibrary.Load(standIn.Force())
    NativeLibrary.GetExport(handle, name)

let private read name = Marshal.ReadInt32(variable name)

let private write name (value: int) =
    Marshal.WriteInt32(variable name, value)

let private context =
    lazy (Context.Create(fun b -> b.CPU(CPUDevice(4, 4, 1)).EnableAlgorithms() |> ignore))

let private accelerator = lazy (context.Force().CreateCPUAccelerator(0))

/// A backend on the CPU accelerator (16-thread groups) whose products go to the stand-in, the
/// stream synchronised around each call (the kernels that wrote the operands run on CPU threads).
let private withCuBlas () =
    let acc = accelerator.Force()

    match CuBlas.create (library ()) 0n (fun () -> acc.Synchronize()) with
    | Ok gemm -> gemm, new IlgpuBackend(acc, 16, Ok gemm)
    | Error why -> failwithf "cublasCreate on the stand-in: %s" why

let private reference = ReferenceBackend.Instance :> IBackend

let private data (seed: uint64) (shape: int[]) =
    RawTensor.toHost (Random.normal (Random.key seed) Float32 shape)

let private close (what: string) (actual: RawTensor) (expected: RawTensor) =
    Assert.Equal<int[]>(expected.Shape, actual.Shape)
    let x, y = RawTensor.toFloat64Array actual, RawTensor.toFloat64Array expected
    let scale = 1.0 + (y |> Array.map abs |> Array.fold max 0.0)

    for i in 0 .. x.Length - 1 do
        if not (abs (x.[i] - y.[i]) / scale <= 1e-5) then
            failwithf "%s: element %d is %g, the reference's %g" what i x.[i] y.[i]

let private onDevice (r: RawTensor) =
    match r.Storage with
    | Storage.Device _ -> true
    | _ -> false

/// Batch shapes of A and B, and whether the per-batch offsets have constant strides: none,
/// equal, broadcast both ways (irregular: one call per batch), A broadcast (stride 0), B
/// broadcast (stride 0), three axes broadcast both ways.
let private batchCases = [
    [||], [||], true
    [| 3 |], [| 3 |], true
    [| 2; 1 |], [| 3 |], false
    [| 1 |], [| 2; 2 |], true
    [| 2; 3 |], [| 1 |], true
    [| 2; 1; 2 |], [| 3; 1 |], false
]

[<CcFact>]
let ``cuBLAS's products equal the reference for every transpose, odd sizes and broadcast batches`` () =
    let gemm, backend = withCuBlas ()

    try
        Assert.Equal("cuBLAS: loaded libcublas.so.12", backend.MatMulDescription)
        let mutable cases = 0

        for (m, n, k) in [ 1, 1, 1; 3, 5, 7; 7, 2, 9; 13, 11, 5; 1, 6, 3 ] do
            for ta in [ false; true ] do
                for tb in [ false; true ] do
                    for (ba, bb, regular) in batchCases do
                        let sa = Array.append ba (if ta then [| k; m |] else [| m; k |])
                        let sb = Array.append bb (if tb then [| n; k |] else [| k; n |])
                        let batch = Shape.broadcast "test" ba bb
                        let outShape = Array.append batch [| m; n |]
                        let a, b = data (uint64 (m * 100 + k)) sa, data (uint64 (n * 100 + k + 1)) sb

                        let what =
                            sprintf "%A%s · %A%s" sa (if ta then "ᵀ" else "") sb (if tb then "ᵀ" else "")

                        let sgemm, batched = read "standin_sgemm_calls", read "standin_batched_calls"
                        let before = backend.HostRoundTrips

                        let actual = backend.MatMul(backend.Upload a, ta, backend.Upload b, tb, outShape)

                        Assert.True(onDevice actual, what)
                        Assert.Equal<(string * int64)[]>(before, backend.HostRoundTrips)
                        close what actual (reference.MatMul(a, ta, b, tb, outShape))
                        // which entry point ran: one Sgemm for one batch, one strided-batched call
                        // for constant strides, else one Sgemm per batch
                        let batches = Shape.numel batch

                        let expectSgemm, expectBatched =
                            if batches = 1 then 1, 0
                            elif regular then 0, 1
                            else batches, 0

                        Assert.Equal(expectSgemm, read "standin_sgemm_calls" - sgemm)
                        Assert.Equal(expectBatched, read "standin_batched_calls" - batched)
                        cases <- cases + 1

        Assert.Equal(5 * 4 * batchCases.Length, cases)
    finally
        gemm.Dispose()

[<CcFact>]
let ``convolutions and their adjoints through cuBLAS equal the reference, groups included`` () =
    let gemm, backend = withCuBlas ()

    try
        for groups in [ 1; 2 ] do
            let spec = ConvSpec.create 2 1 1 groups

            let xs, ws = [| 2; 2 * groups; 5; 6 |], [| 3 * groups; 2; 3; 2 |]
            let ys = ConvSpec.outputShape "test" spec xs ws
            let x, w, g = data 1UL xs, data 2UL ws, data 3UL ys
            let up = backend.Upload
            let what = sprintf "groups %d" groups
            let batched = read "standin_batched_calls"
            close ("conv2d " + what) (backend.Conv2d(up x, up w, spec)) (reference.Conv2d(x, w, spec))

            close
                ("input grad " + what)
                (backend.Conv2dInputGrad(up g, up w, spec, xs))
                (reference.Conv2dInputGrad(g, w, spec, xs))

            close
                ("weight grad " + what)
                (backend.Conv2dWeightGrad(up x, up g, spec, ws))
                (reference.Conv2dWeightGrad(x, g, spec, ws))

            if groups = 1 then
                Assert.Equal(3, read "standin_batched_calls" - batched)
    finally
        gemm.Dispose()

[<CcFact>]
let ``a failing cuBLAS call ends in an error naming the call and the status`` () =
    let gemm, backend = withCuBlas ()

    try
        write "standin_gemm_status" 13

        let e =
            Assert.Throws<InvalidOperationException>(fun () ->
                backend.MatMul(
                    backend.Upload(data 1UL [| 2; 3; 4 |]),
                    false,
                    backend.Upload(data 2UL [| 2; 4; 5 |]),
                    false,
                    [| 2; 3; 5 |]
                )
                |> ignore)

        Assert.Contains(
            "cuBLAS (libcublas.so.12) cublasSgemmStridedBatched failed with CUBLAS_STATUS_EXECUTION_FAILED (13)",
            e.Message
        )

        Assert.Contains("m=3, n=5, k=4", e.Message)
        Assert.Contains("GAN_CUBLAS=0", e.Message)
    finally
        write "standin_gemm_status" 0
        gemm.Dispose()

[<CcFact>]
let ``a device's cuBLAS must compute a test product right, else its handle goes and the reason says why`` () =
    let acc = accelerator.Force()
    let alive = read "standin_handles"
    let batched = read "standin_batched_calls"
    let gemm, _ = withCuBlas ()

    match CuBlas.verified acc gemm with
    | Ok g -> Assert.Same(gemm, g)
    | Error why -> failwithf "the stand-in failed the test product: %s" why

    // one strided-batched call (two products, B broadcast)
    Assert.Equal(batched + 1, read "standin_batched_calls")
    gemm.Dispose()
    Assert.Equal(alive, read "standin_handles")

    let failing name value (expected: string) =
        let gemm, _ = withCuBlas ()
        write name value

        try
            match CuBlas.verified acc gemm with
            | Ok _ -> failwithf "%s=%d, yet the test product passed" name value
            | Error why ->
                Assert.StartsWith("libcublas.so.12: a test product ", why)
                Assert.Contains(expected, why)
                // the handle is destroyed: the backend falls back to its own kernel
                Assert.Equal(alive, read "standin_handles")
        finally
            write name 0

    failing
        "standin_gemm_status"
        13
        "failed: cuBLAS (libcublas.so.12) cublasSgemmStridedBatched failed with CUBLAS_STATUS_EXECUTION_FAILED (13)"

    failing "standin_wrong_by" 1 "computed [|9.0f; 15.0f; 11.0f; 19.0f; -8.0f; 4.0f; 4.0f; 6.0f|], not [|8.0f; 14.0f;"

[<CcFact>]
let ``handles are destroyed, and a failing cublasCreate leaves the backend's own kernel with the reason`` () =
    let alive = read "standin_handles"
    let gemm, _ = withCuBlas ()
    Assert.Equal(alive + 1, read "standin_handles")
    gemm.Dispose()
    gemm.Dispose()
    Assert.Equal(alive, read "standin_handles")
    write "standin_create_status" 1

    try
        match CuBlas.create (library ()) 0n ignore with
        | Ok _ -> failwith "cublasCreate_v2 failed, yet a handle came back"
        | Error why ->
            Assert.Equal("libcublas.so.12: cublasCreate_v2 failed with CUBLAS_STATUS_NOT_INITIALIZED (1)", why)
            let backend = new IlgpuBackend(accelerator.Force(), 16, Error why)
            Assert.Equal("cuBLAS: " + why + ", one-thread-per-output kernel", backend.MatMulDescription)
    finally
        write "standin_create_status" 0

[<Fact>]
let ``without cuBLAS the backend's own GEMM kernel multiplies and the reason says why`` () =
    let acc = accelerator.Force()

    let missing = CuBlas.load [ "libcublas-absent.so.12"; "libcublas-absent.so.11" ]

    match missing with
    | Ok _ -> failwith "a library that does not exist loaded"
    | Error why ->
        Assert.Equal("not found (libcublas-absent.so.12, libcublas-absent.so.11: none is on the library path)", why)

    // the knob, checked before anything else; then CUDA only
    Assert.Equal(Error "off (GAN_CUBLAS=0)", CuBlas.forAccelerator false (lazy missing) acc |> Result.map ignore)

    Assert.Equal(
        Error "CUDA devices only (this is CPU)",
        CuBlas.forAccelerator true (lazy (failwith "not loaded for a CPU accelerator")) acc
        |> Result.map ignore
    )

    let plain = new IlgpuBackend(acc, 16)
    Assert.Equal("cuBLAS: CUDA devices only (this is CPU), one-thread-per-output kernel", plain.MatMulDescription)

    let tiled = IlgpuDevice.get ()

    let notFound =
        new IlgpuBackend(tiled.Accelerator, 256, missing |> Result.map (fun _ -> failwith "it loaded"))

    Assert.StartsWith("cuBLAS: not found (", notFound.MatMulDescription)
    Assert.EndsWith("), tiled kernel", notFound.MatMulDescription)
    let a, b = data 5UL [| 2; 5; 3 |], data 6UL [| 3; 7 |]

    for backend in [ plain; notFound ] do
        close
            backend.MatMulDescription
            (backend.MatMul(backend.Upload a, false, backend.Upload b, false, [| 2; 5; 7 |]))
            (reference.MatMul(a, false, b, false, [| 2; 5; 7 |]))
