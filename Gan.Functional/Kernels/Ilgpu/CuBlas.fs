namespace Gan.Functional.Kernels.Ilgpu

open System
open System.Runtime.InteropServices
open ILGPU.Runtime
open ILGPU.Runtime.Cuda

// The five cuBLAS entry points the backend calls, as cuBLAS declares them (cublas_api.h):
// handles and device pointers are pointers, cublasOperation_t and the sizes are int, strides
// long long, alpha and beta point to host floats (cuBLAS's default pointer mode).

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal CublasCreate = delegate of handle: nativeint[] -> int

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal CublasDestroy = delegate of handle: nativeint -> int

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal CublasSetStream = delegate of handle: nativeint * stream: nativeint -> int

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal CublasSgemm =
    delegate of
        handle: nativeint *
        transa: int *
        transb: int *
        m: int *
        n: int *
        k: int *
        alpha: float32[] *
        a: nativeint *
        lda: int *
        b: nativeint *
        ldb: int *
        beta: float32[] *
        c: nativeint *
        ldc: int ->
            int

[<UnmanagedFunctionPointer(CallingConvention.Cdecl)>]
type internal CublasSgemmStridedBatched =
    delegate of
        handle: nativeint *
        transa: int *
        transb: int *
        m: int *
        n: int *
        k: int *
        alpha: float32[] *
        a: nativeint *
        lda: int *
        strideA: int64 *
        b: nativeint *
        ldb: int *
        strideB: int64 *
        beta: float32[] *
        c: nativeint *
        ldc: int *
        strideC: int64 *
        batchCount: int ->
            int

/// A loaded cuBLAS library: the file that loaded and its entry points.
[<NoComparison; NoEquality>]
type internal CuBlasLibrary = {
    /// The file that loaded, e.g. "libcublas.so.12".
    File: string
    Create: CublasCreate
    Destroy: CublasDestroy
    SetStream: CublasSetStream
    Sgemm: CublasSgemm
    SgemmStridedBatched: CublasSgemmStridedBatched
}

/// cuBLAS's status codes (cublasStatus_t).
module internal CuBlasStatus =
    /// The code's name and number, e.g. "CUBLAS_STATUS_INVALID_VALUE (7)".
    let describe (status: int) =
        let name =
            match status with
            | 0 -> "CUBLAS_STATUS_SUCCESS"
            | 1 -> "CUBLAS_STATUS_NOT_INITIALIZED"
            | 3 -> "CUBLAS_STATUS_ALLOC_FAILED"
            | 7 -> "CUBLAS_STATUS_INVALID_VALUE"
            | 8 -> "CUBLAS_STATUS_ARCH_MISMATCH"
            | 11 -> "CUBLAS_STATUS_MAPPING_ERROR"
            | 13 -> "CUBLAS_STATUS_EXECUTION_FAILED"
            | 14 -> "CUBLAS_STATUS_INTERNAL_ERROR"
            | 15 -> "CUBLAS_STATUS_NOT_SUPPORTED"
            | 16 -> "CUBLAS_STATUS_LICENSE_ERROR"
            | _ -> "an unknown cuBLAS status"

        sprintf "%s (%d)" name status

/// <summary>
/// A cuBLAS handle on one stream computing row-major batched float32 products
/// C_i = op(A_i) op(B_i) (C dense, m×n per batch) as the device backend's GEMM kernels do.
/// </summary>
/// <remarks>
/// cuBLAS is column-major: a row-major r×c matrix with row length ld is, read column-major, its
/// c×r transpose with leading dimension ld. So row-major C = op(A) op(B) is column-major
/// Cᵀ = op(B)ᵀ op(A)ᵀ: B goes first, m and n swap, and each operand keeps its own transpose
/// flag, with leading dimension its stored row length (A: k, or m when stored k×m; B: n, or k
/// when stored n×k; C: n). `around` runs before and after each product: nothing on a CUDA
/// stream (cuBLAS queues on the stream the kernels use); a synchronisation where the pointers
/// are host memory written by kernels of another stream (ILGPU's CPU accelerator, in tests).
/// </remarks>
[<Sealed>]
type internal CuBlasGemm(library: CuBlasLibrary, handle: nativeint, around: unit -> unit) =
    let one = [| 1.0f |]
    let zero = [| 0.0f |]
    let mutable disposed = false

    let check (call: string) (m: int) (n: int) (k: int) (status: int) =
        if status <> 0 then
            invalidOp (
                sprintf
                    "cuBLAS (%s) %s failed with %s for a float32 product of m=%d, n=%d, k=%d; set GAN_CUBLAS=0 to use the backend's own GEMM kernel instead"
                    library.File
                    call
                    (CuBlasStatus.describe status)
                    m
                    n
                    k
            )

    /// The common step of `offsets` when they form an arithmetic sequence with a step of 0 or
    /// more (one offset: 0), else None.
    static member ConstantStride(offsets: int[]) =
        if offsets.Length < 2 then
            Some 0
        else
            let s = offsets.[1] - offsets.[0]

            if
                s >= 0
                && offsets
                   |> Array.forall2 (fun i o -> o = offsets.[0] + i * s) (Array.init offsets.Length id)
            then
                Some s
            else
                None

    /// The file the handle's library loaded from.
    member _.File = library.File

    /// For each batch i of aOff.Length: C at c + i·m·n (m×n, row-major) = op(A) op(B), A read
    /// at a + aOff[i] (m×k, or k×m when transA), B at b + bOff[i] (k×n, or n×k when transB);
    /// pointers to float32, offsets in elements. Offsets with constant strides (0 included) make
    /// one strided-batched call, others one call per batch.
    member _.Gemm
        (
            a: nativeint,
            aOff: int[],
            transA: bool,
            b: nativeint,
            bOff: int[],
            transB: bool,
            m: int,
            n: int,
            k: int,
            c: nativeint
        ) =
        if disposed then
            raise (ObjectDisposedException "CuBlasGemm")

        let opA, lda = (if transA then 1, m else 0, k)
        let opB, ldb = (if transB then 1, k else 0, n)
        let at (p: nativeint) (elements: int) = p + nativeint (4L * int64 elements)
        let batches = aOff.Length
        around ()

        match CuBlasGemm.ConstantStride aOff, CuBlasGemm.ConstantStride bOff with
        | Some sa, Some sb when batches > 1 ->
            library.SgemmStridedBatched.Invoke(
                handle,
                opB,
                opA,
                n,
                m,
                k,
                one,
                at b bOff.[0],
                ldb,
                int64 sb,
                at a aOff.[0],
                lda,
                int64 sa,
                zero,
                c,
                n,
                int64 m * int64 n,
                batches
            )
            |> check "cublasSgemmStridedBatched" m n k
        | _ ->
            for i in 0 .. batches - 1 do
                library.Sgemm.Invoke(
                    handle,
                    opB,
                    opA,
                    n,
                    m,
                    k,
                    one,
                    at b bOff.[i],
                    ldb,
                    at a aOff.[i],
                    lda,
                    zero,
                    at c (i * m * n),
                    n
                )
                |> check "cublasSgemm_v2" m n k

        around ()

    /// Destroys the handle (once).
    member _.Dispose() =
        if not disposed then
            disposed <- true
            library.Destroy.Invoke handle |> ignore

    interface IDisposable with
        member g.Dispose() = g.Dispose()

/// Loading cuBLAS and choosing, per accelerator, between it and the backend's own GEMM kernel.
module internal CuBlas =

    /// The library loaded from `files` (names the loader searches for, or paths), tried in
    /// order, with the entry points bound; or why not.
    let load (files: string list) : Result<CuBlasLibrary, string> =
        match NativeLibraries.tryLoadAny files with
        | None ->
            Error(
                sprintf
                    "not found (%s: none is on the library path)"
                    (files
                     |> List.map (fun f -> string (IO.Path.GetFileName f))
                     |> String.concat ", ")
            )
        | Some(handle, file) ->
            let file = string (IO.Path.GetFileName file)

            let bind (name: string) : 'D =
                match NativeLibrary.TryGetExport(handle, name) with
                | true, p -> Marshal.GetDelegateForFunctionPointer<'D> p
                | _ -> failwithf "%s has no %s" file name

            try
                Ok {
                    File = file
                    Create = bind "cublasCreate_v2"
                    Destroy = bind "cublasDestroy_v2"
                    SetStream = bind "cublasSetStream_v2"
                    Sgemm = bind "cublasSgemm_v2"
                    SgemmStridedBatched = bind "cublasSgemmStridedBatched"
                }
            with e ->
                Error e.Message

    /// This process's cuBLAS, by the names NativeLibraries gives "cublas" (loaded once).
    let library =
        lazy
            (if OperatingSystem.IsLinux() then
                 load (NativeLibraries.candidates "cublas")
             else
                 Error "not looked for: the backend binds cuBLAS on Linux only")

    /// A handle of `library` on `stream` (a CUDA stream's handle; 0: the default stream), or why
    /// not; `around` as <c>CuBlasGemm</c> takes it.
    let create (library: CuBlasLibrary) (stream: nativeint) (around: unit -> unit) : Result<CuBlasGemm, string> =
        let handle = [| 0n |]

        match library.Create.Invoke handle with
        | 0 ->
            match library.SetStream.Invoke(handle.[0], stream) with
            | 0 -> Ok(new CuBlasGemm(library, handle.[0], around))
            | status ->
                library.Destroy.Invoke handle.[0] |> ignore

                Error(sprintf "%s: cublasSetStream_v2 failed with %s" library.File (CuBlasStatus.describe status))
        | status -> Error(sprintf "%s: cublasCreate_v2 failed with %s" library.File (CuBlasStatus.describe status))

    /// `gemm` when a test product on `accelerator` (a batch of two transposed products with a
    /// broadcast operand: one strided-batched call; small integers, so exact) equals the known
    /// answer; else why not, with the handle destroyed. A library that loads but cannot run on
    /// this device (a cuBLAS built for another CUDA, a broken install) is caught here, when the
    /// device opens, instead of in the first training step, and the backend's own kernel serves.
    let verified (accelerator: Accelerator) (gemm: CuBlasGemm) : Result<CuBlasGemm, string> =
        // A: two stored 3×2 (k×m, transposed), B: one stored 2×3 (n×k, transposed, broadcast)
        let a = [| 1.0f; 2.0f; 3.0f; 4.0f; 5.0f; 6.0f; -1.0f; 0.0f; 2.0f; 1.0f; -3.0f; 2.0f |]
        let b = [| 1.0f; -1.0f; 2.0f; 0.0f; 3.0f; 1.0f |]

        let expected =
            [| 0..1 |]
            |> Array.collect (fun batch -> [|
                for i in 0..1 do
                    for j in 0..1 do
                        Array.sum [| for p in 0..2 -> a.[batch * 6 + p * 2 + i] * b.[j * 3 + p] |]
            |])

        let fail (why: string) =
            (try
                gemm.Dispose()
             with _ ->
                 ())

            Error(sprintf "%s: %s" gemm.File why)

        try
            use da = accelerator.Allocate1D<float32> a
            use db = accelerator.Allocate1D<float32> b
            use dc = accelerator.Allocate1D<float32>(int64 expected.Length)
            accelerator.Synchronize()
            gemm.Gemm(da.NativePtr, [| 0; 6 |], true, db.NativePtr, [| 0; 0 |], true, 2, 2, 3, dc.NativePtr)
            accelerator.Synchronize()
            let c = dc.GetAsArray1D()

            if c = expected then
                Ok gemm
            else
                fail (sprintf "a test product computed %A, not %A" c expected)
        with e ->
            fail (sprintf "a test product failed: %s" (e.Message.TrimEnd('.')))

    /// cuBLAS for `accelerator` when `enabled` (the GAN_CUBLAS knob), the accelerator is CUDA,
    /// `library` loaded, a handle is made on the accelerator's default stream and a test product
    /// gives the right answer (<c>verified</c>); else why not.
    let forAccelerator
        (enabled: bool)
        (library: Lazy<Result<CuBlasLibrary, string>>)
        (accelerator: Accelerator)
        : Result<CuBlasGemm, string> =
        if not enabled then
            Error "off (GAN_CUBLAS=0)"
        else
            match accelerator with
            | :? CudaAccelerator as cuda ->
                match library.Force() with
                | Error why -> Error why
                | Ok lib ->
                    // cuBLAS takes the calling thread's current context, the accelerator's
                    cuda.Bind()

                    create lib (cuda.DefaultStream :?> CudaStream).StreamPtr ignore
                    |> Result.bind (verified accelerator)
            | _ -> Error(sprintf "CUDA devices only (this is %O)" accelerator.AcceleratorType)
