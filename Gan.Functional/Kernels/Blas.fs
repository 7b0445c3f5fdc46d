/// Single-precision GEMM for the CPU backend: OpenBLAS loaded at run time when present and
/// allowed by the knobs, a managed SIMD kernel otherwise. Row-major throughout.
module internal Gan.Functional.Kernels.Blas

#nowarn "9" // native pointers: the BLAS call needs addresses of pinned arrays

open System
open System.Numerics
open System.Runtime.InteropServices
open System.Runtime.Intrinsics
open System.Threading.Tasks
open Microsoft.FSharp.NativeInterop
open Gan.Functional

[<Literal>]
let private LibName = "gan_openblas"

[<Literal>]
let private DnnlName = "gan_dnnl"

module private Native =
    [<DllImport("libc.so.6", CallingConvention = CallingConvention.Cdecl)>]
    extern int setenv(string name, string value, int overwrite)

    [<DllImport("libc.so.6", CallingConvention = CallingConvention.Cdecl)>]
    extern nativeint getenv(string name)

    [<DllImport(LibName, CallingConvention = CallingConvention.Cdecl)>]
    extern void cblas_sgemm(
        int order,
        int transA,
        int transB,
        int m,
        int n,
        int k,
        float32 alpha,
        nativeint a,
        int lda,
        nativeint b,
        int ldb,
        float32 beta,
        nativeint c,
        int ldc
    )

    [<DllImport(LibName, CallingConvention = CallingConvention.Cdecl)>]
    extern void openblas_set_num_threads(int n)

    [<DllImport(LibName, CallingConvention = CallingConvention.Cdecl)>]
    extern nativeint openblas_get_corename()

    [<DllImport(DnnlName, CallingConvention = CallingConvention.Cdecl)>]
    extern int dnnl_sgemm(
        byte transA,
        byte transB,
        int64 m,
        int64 n,
        int64 k,
        float32 alpha,
        nativeint a,
        int64 lda,
        nativeint b,
        int64 ldb,
        float32 beta,
        nativeint c,
        int64 ldc
    )

    [<DllImport("libgomp.so.1", CallingConvention = CallingConvention.Cdecl)>]
    extern void omp_set_num_threads(int n)

/// Which GEMM is in use and why.
type GemmInfo = {
    UsesOpenBlas: bool
    Description: string
}

/// The OPENBLAS_CORETYPE this CPU should use: Debian's OpenBLAS 0.3.21 misdetects recent
/// CPUs as "Prescott" and runs sgemm several times slower.
let private bestCoreType () =
    if Runtime.Intrinsics.X86.Avx512F.IsSupported then
        Some "SkylakeX"
    elif Runtime.Intrinsics.X86.Avx2.IsSupported then
        Some "Haswell"
    else
        None

let private candidates = [
    "libopenblas.so.0"
    "libopenblas.so"
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0"
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0"
    "libopenblas.dylib"
    "libopenblas.dll"
]

let private load () : nativeint option * string =
    // The variable must reach native getenv before the library initialises; .NET's
    // Environment.SetEnvironmentVariable does not, so call libc's setenv (overwrite = 0:
    // a value the user set wins).
    let coreNote =
        if OperatingSystem.IsLinux() then
            match bestCoreType () with
            | Some core when Native.getenv "OPENBLAS_CORETYPE" = 0n ->
                Native.setenv ("OPENBLAS_CORETYPE", core, 0) |> ignore
                sprintf "OPENBLAS_CORETYPE=%s set for this CPU" core
            | _ when Native.getenv "OPENBLAS_CORETYPE" <> 0n ->
                sprintf
                    "OPENBLAS_CORETYPE=%s as set by the user"
                    (Marshal.PtrToStringAnsi(Native.getenv "OPENBLAS_CORETYPE"))
            | _ -> "no AVX2: OpenBLAS picks its own kernel"
        else
            ""

    // oneDNN's OpenMP threads spin at barriers by default; when the cores are shared (other
    // processes runnable) a spinning thread holds the core the one it waits for needs, and
    // GEMMs ran up to ten times slower here (docs/performance.md, "Measurements behind the
    // code"). Passive waiting sleeps instead. libgomp reads this once, when oneDNN pulls it in; a user's value wins.
    if OperatingSystem.IsLinux() then
        Native.setenv ("OMP_WAIT_POLICY", "PASSIVE", 0) |> ignore

    let handle =
        candidates
        |> List.tryPick (fun name ->
            match NativeLibrary.TryLoad name with
            | true, h -> Some h
            | _ -> None)

    match handle with
    | Some h when
        (match NativeLibrary.TryGetExport(h, "cblas_sgemm") with
         | true, _ -> true
         | _ -> false)
        ->
        Some h, coreNote
    | Some _ -> None, "the OpenBLAS found lacks cblas_sgemm"
    | None -> None, "OpenBLAS not found (Debian: apt-get install libopenblas0-pthread)"

/// oneDNN (Debian's libdnnl2), whose JIT sgemm uses AVX-512 whatever OPENBLAS_CORETYPE says;
/// measured here to beat OpenBLAS on large products and to lose on small ones.
let private loadDnnl () =
    [ "libdnnl.so.2"; "libdnnl.so.3"; "libdnnl.so" ]
    |> List.tryPick (fun name ->
        match NativeLibrary.TryLoad name with
        | true, h ->
            match NativeLibrary.TryGetExport(h, "dnnl_sgemm") with
            | true, _ -> Some h
            | _ -> None
        | _ -> None)

// oneDNN's handle once loaded (read by the import resolver)
let mutable private dnnlHandle: nativeint option = None

/// OpenBLAS, loaded on first use by a backend whose knobs allow it (never otherwise, so that
/// OPENBLAS_CORETYPE and OMP_WAIT_POLICY are left alone): the handle and a note for the
/// description.
let private openBlas =
    lazy
        (let handle, note = load ()

         match handle with
         | Some h ->
             NativeLibrary.SetDllImportResolver(
                 typeof<GemmInfo>.Assembly,
                 DllImportResolver(fun name _ _ ->
                     if name = LibName then
                         h
                     else
                         match dnnlHandle with
                         | Some d when name = DnnlName -> d
                         | _ -> 0n)
             )
         | None -> ()

         handle, note)

let mutable private threads = Environment.ProcessorCount

// the OpenBLAS thread count last set (small products drop to one thread)
let mutable private blasThreads = -1

/// oneDNN, loaded on first use beside OpenBLAS by a backend whose knobs allow both.
let private dnnl =
    lazy
        (match openBlas.Force() with
         | Some _, _ ->
             let d = loadDnnl ()
             dnnlHandle <- d

             if d.IsSome then
                 Native.omp_set_num_threads threads

             d
         | None, _ -> None)

/// Whether `knobs` lets OpenBLAS run and it loaded.
let private usesOpenBlas (knobs: CpuKnobs) =
    knobs.OpenBlas && (fst (openBlas.Force())).IsSome

/// Whether oneDNN loaded (it is tried only beside OpenBLAS) and `knobs` lets it run; its
/// other entry points resolve through the same library name.
let dnnlAvailable (knobs: CpuKnobs) =
    knobs.Dnnl && usesOpenBlas knobs && (dnnl.Force()).IsSome

/// Sets the worker-thread count of OpenBLAS, oneDNN (where `knobs` lets them load) and the
/// managed kernels.
let setThreads (knobs: CpuKnobs) (n: int) =
    threads <- max 1 n

    if usesOpenBlas knobs then
        Native.openblas_set_num_threads threads
        blasThreads <- threads

        if dnnlAvailable knobs then
            Native.omp_set_num_threads threads

/// The thread count in use.
let threadCount () = threads

/// Whether OpenBLAS is in use under `knobs`, and a one-line reason.
let info (knobs: CpuKnobs) =
    if not knobs.OpenBlas then
        {
            UsesOpenBlas = false
            Description = "managed SIMD sgemm (OpenBLAS off: CpuKnobs.OpenBlas = false, GAN_DISABLE_OPENBLAS=1)"
        }
    else
        match openBlas.Force() with
        | Some _, note ->
            let core = Marshal.PtrToStringAnsi(Native.openblas_get_corename ())

            let large =
                if dnnlAvailable knobs then
                    "; oneDNN sgemm for large products"
                else
                    ""

            {
                UsesOpenBlas = true
                Description = sprintf "OpenBLAS sgemm (core %s; %s)%s" core note large
            }
        | None, note -> {
            UsesOpenBlas = false
            Description = sprintf "managed SIMD sgemm (%s)" note
          }

/// C[m×n] = A'·B' (+ C when accumulate) with A' = A or Aᵀ (A stored m×k or k×m) and the same
/// for B, all row-major and dense, starting at the given offsets. Managed fallback.
let managedGemm
    (transA: bool)
    (transB: bool)
    m
    n
    k
    (a: float32[])
    aOff
    (b: float32[])
    bOff
    (c: float32[])
    cOff
    (accumulate: bool)
    =
    // Pack both operands into the plain layouts the kernel wants: A as m×k, B as k×n.
    let a, aOff =
        if transA then
            let p = GC.AllocateUninitializedArray<float32>(m * k)

            for p0 in 0 .. k - 1 do
                for i in 0 .. m - 1 do
                    p.[i * k + p0] <- a.[aOff + p0 * m + i]

            p, 0
        else
            a, aOff

    let b, bOff =
        if transB then
            let p = GC.AllocateUninitializedArray<float32>(k * n)

            for j in 0 .. n - 1 do
                for p0 in 0 .. k - 1 do
                    p.[p0 * n + j] <- b.[bOff + j * k + p0]

            p, 0
        else
            b, bOff

    let w = Vector<float32>.Count

    let rowBlock (i: int) =
        let ci = cOff + i * n

        if not accumulate then
            Array.Clear(c, ci, n)

        let cRow = Span<float32>(c, ci, n)
        let cv = MemoryMarshal.Cast<float32, Vector<float32>>(cRow)

        for p in 0 .. k - 1 do
            let av = a.[aOff + i * k + p]

            if av <> 0.0f then
                let bRow = ReadOnlySpan<float32>(b, bOff + p * n, n)
                let bv = MemoryMarshal.Cast<float32, Vector<float32>>(bRow)
                let s = Vector<float32>(av)

                for j in 0 .. cv.Length - 1 do
                    cv.[j] <- cv.[j] + s * bv.[j]

                for j in cv.Length * w .. n - 1 do
                    cRow.[j] <- cRow.[j] + av * bRow.[j]

    if int64 m * int64 n * int64 k > 1_000_000L && threads > 1 then
        Parallel.For(0, m, ParallelOptions(MaxDegreeOfParallelism = threads), fun i -> rowBlock i)
        |> ignore
    else
        for i in 0 .. m - 1 do
            rowBlock i

// Products of at least CpuKnobs.DnnlGemmMin multiply-adds go to oneDNN. High on purpose:
// oneDNN's OpenMP threads and OpenBLAS's pthreads (which spin for a while after each call)
// fight over the cores when a step mixes them (docs/knobs.md), while the largest products
// still run faster on oneDNN. Products below CpuKnobs.SmallGemm run on one OpenBLAS thread:
// waking the others costs more than they save (and far more on a shared, loaded machine).

let private useBlasThreads (n: int) =
    if n <> blasThreads then
        Native.openblas_set_num_threads n
        blasThreads <- n

/// C = op(A)·op(B) (+ C when `accumulate`), row-major, dense, at the given offsets.
let sgemm
    (knobs: CpuKnobs)
    (transA: bool)
    (transB: bool)
    m
    n
    k
    (a: float32[])
    aOff
    (b: float32[])
    bOff
    (c: float32[])
    cOff
    (accumulate: bool)
    =
    if m > 0 && n > 0 then
        if k = 0 then
            if not accumulate then
                Array.Clear(c, cOff, m * n)
        else if usesOpenBlas knobs then
            use pa = fixed &a.[aOff]
            use pb = fixed &b.[bOff]
            use pc = fixed &c.[cOff]
            let beta = if accumulate then 1.0f else 0.0f
            let lda = if transA then m else k
            let ldb = if transB then k else n

            if int64 m * int64 n * int64 k >= knobs.DnnlGemmMin && dnnlAvailable knobs then
                Native.dnnl_sgemm (
                    (if transA then byte 'T' else byte 'N'),
                    (if transB then byte 'T' else byte 'N'),
                    int64 m,
                    int64 n,
                    int64 k,
                    1.0f,
                    NativePtr.toNativeInt pa,
                    int64 lda,
                    NativePtr.toNativeInt pb,
                    int64 ldb,
                    beta,
                    NativePtr.toNativeInt pc,
                    int64 n
                )
                |> ignore
            else if knobs.GemmSplit && threads > 1 && int64 m * int64 n * int64 k >= knobs.SmallGemm then
                useBlasThreads 1

                let pa, pb, pc =
                    NativePtr.toNativeInt pa, NativePtr.toNativeInt pb, NativePtr.toNativeInt pc
                // slices of the longer output side: rows of C (rows of op(A)), or columns of C
                // (columns of op(B)) in multiples of 16
                let byRows = m >= n
                let side = if byRows then m else n
                let parts = min threads (if byRows then m else (n + 15) / 16)

                let step =
                    if byRows then
                        (m + parts - 1) / parts
                    else
                        ((n + parts - 1) / parts + 15) &&& ~~~15

                let f32 = 4n

                Parallel.For(
                    0,
                    parts,
                    ParallelOptions(MaxDegreeOfParallelism = threads),
                    fun p ->
                        let lo = p * step
                        let len = min step (side - lo)

                        if len > 0 then
                            // a slice of rows: row i of op(A) is a + i·k, or column i of the k×m
                            // A when transposed; a slice of columns: column j of op(B) is b + j,
                            // or row j of the n×k B when transposed
                            let aAt, bAt, rows, cols, cAt =
                                if byRows then
                                    (if transA then
                                         pa + nativeint lo * f32
                                     else
                                         pa + nativeint lo * nativeint k * f32),
                                    pb,
                                    len,
                                    n,
                                    pc + nativeint lo * nativeint n * f32
                                else
                                    pa,
                                    (if transB then
                                         pb + nativeint lo * nativeint k * f32
                                     else
                                         pb + nativeint lo * f32),
                                    m,
                                    len,
                                    pc + nativeint lo * f32

                            Native.cblas_sgemm (
                                101,
                                (if transA then 112 else 111),
                                (if transB then 112 else 111),
                                rows,
                                cols,
                                k,
                                1.0f,
                                aAt,
                                lda,
                                bAt,
                                ldb,
                                beta,
                                cAt,
                                n
                            )
                )
                |> ignore
            else
                useBlasThreads (
                    if int64 m * int64 n * int64 k < knobs.SmallGemm then
                        1
                    else
                        threads
                )

                Native.cblas_sgemm (
                    101,
                    (if transA then 112 else 111),
                    (if transB then 112 else 111),
                    m,
                    n,
                    k,
                    1.0f,
                    NativePtr.toNativeInt pa,
                    lda,
                    NativePtr.toNativeInt pb,
                    ldb,
                    beta,
                    NativePtr.toNativeInt pc,
                    n
                )
        else
            managedGemm transA transB m n k a aOff b bOff c cOff accumulate
