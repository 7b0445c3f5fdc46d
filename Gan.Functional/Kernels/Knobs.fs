namespace Gan.Functional

open System

/// The CPU backend's tuning knobs: which native libraries it calls and where it switches
/// between kernels or thread counts. None changes a result beyond float rounding; they trade
/// speed and memory (docs/knobs.md lists each with its default and what it trades). A
/// <c>CpuBackend</c> takes them as a constructor argument; <see cref="P:Gan.Functional.CpuKnobs.Default"/>
/// holds the built-in values and <see cref="M:Gan.Functional.CpuKnobs.FromEnvironment"/> those
/// overridden by the GAN_* environment variables.
type CpuKnobs = {
    /// Elementwise passes and reductions below this many elements run on one thread
    /// (GAN_PARALLEL_THRESHOLD; default 65,536).
    ParallelThreshold: int
    /// float32 GEMM through OpenBLAS when it loads; false: the managed SIMD GEMM, and OpenBLAS
    /// is never loaded (GAN_DISABLE_OPENBLAS=1 sets it false).
    OpenBlas: bool
    /// oneDNN (tried only beside OpenBLAS) for large GEMMs and convolutions; false: it is never
    /// loaded (GAN_DISABLE_DNNL=1 sets it false).
    Dnnl: bool
    /// Products of at least this many multiply-adds go to oneDNN's GEMM, smaller ones to
    /// OpenBLAS (GAN_DNNL_GEMM_MIN; default 2^27).
    DnnlGemmMin: int64
    /// Products below this many multiply-adds run on one OpenBLAS thread (GAN_SMALL_GEMM;
    /// default 2^22).
    SmallGemm: int64
    /// Convolutions through oneDNN where it accepts them; false: im2col + GEMM
    /// (GAN_DISABLE_DNNL_CONV=1 sets it false).
    DnnlConv: bool
    /// Winograd F(4, 3) for oneDNN's 3×3 stride-1 forward passes and input gradients
    /// (GAN_DNNL_WINOGRAD=0 sets it false).
    DnnlWinograd: bool
    /// Images per oneDNN convolution call; 0 chooses: 32 under Winograd or for images of 32K
    /// floats or more, else 64 (GAN_DNNL_BATCH).
    DnnlBatch: int
    /// OpenBLAS products from SmallGemm up run as one single-threaded OpenBLAS call per engine
    /// thread, each on a slice of the output, instead of on OpenBLAS's own threads
    /// (GAN_GEMM_SPLIT=1 sets it true; default false: slower on a quiet machine, much faster on
    /// a loaded one, docs/knobs.md).
    GemmSplit: bool
    /// The step pool's size in bytes (GAN_STEP_POOL_MB; default 32 MB; 0 turns it off): a
    /// training step that rents no more than this in pooled buffers gives all of them back
    /// when it ends, and the next step rents them again (<c>IStepBuffers</c>); a step that
    /// rents more gives nothing back. Small models (mlp) then allocate almost no large arrays
    /// and skip most gen-2 collections; large ones are left alone, since part of their step
    /// pooled sat idle through the next forward passes and raised their peak (docs/knobs.md).
    StepPoolBytes: int64
} with

    /// The built-in values, whatever the environment says.
    static member Default = {
        ParallelThreshold = 1 <<< 16
        OpenBlas = true
        Dnnl = true
        DnnlGemmMin = 1L <<< 27
        SmallGemm = 1L <<< 22
        DnnlConv = true
        DnnlWinograd = true
        DnnlBatch = 0
        GemmSplit = false
        StepPoolBytes = 32L * 1024L * 1024L
    }

    /// The knobs as the variables of `lookup` (name → value, null when unset) override the
    /// defaults; values that do not parse, or are out of range, leave the default.
    static member Parse(lookup: Func<string, string | null>) =
        let get name = lookup.Invoke name
        let d = CpuKnobs.Default

        let int32Above (lo: int) name fallback =
            match Int32.TryParse(get name) with
            | true, v when v >= lo -> v
            | _ -> fallback

        let int64Above (lo: int64) name fallback =
            match Int64.TryParse(get name) with
            | true, v when v >= lo -> v
            | _ -> fallback

        {
            ParallelThreshold = int32Above 1 "GAN_PARALLEL_THRESHOLD" d.ParallelThreshold
            OpenBlas = get "GAN_DISABLE_OPENBLAS" <> "1"
            Dnnl = get "GAN_DISABLE_DNNL" <> "1"
            DnnlGemmMin = int64Above 0L "GAN_DNNL_GEMM_MIN" d.DnnlGemmMin
            SmallGemm = int64Above 1L "GAN_SMALL_GEMM" d.SmallGemm
            DnnlConv = get "GAN_DISABLE_DNNL_CONV" <> "1"
            DnnlWinograd = get "GAN_DNNL_WINOGRAD" <> "0"
            DnnlBatch = int32Above 1 "GAN_DNNL_BATCH" d.DnnlBatch
            GemmSplit = get "GAN_GEMM_SPLIT" = "1"
            StepPoolBytes =
                match Int64.TryParse(get "GAN_STEP_POOL_MB") with
                | true, mb when mb >= 0L && mb <= (Int64.MaxValue >>> 20) -> mb <<< 20
                | _ -> d.StepPoolBytes
        }

/// Where the engine reads its GAN_* environment variables: each once, here and nowhere else.
/// Besides the CPU backend's knobs, those that govern state shared by every backend (the
/// buffer pool, the default backend) or the tape itself, which have no constructor to go
/// through.
module internal Knobs =
    let private env (name: string) = Environment.GetEnvironmentVariable name

    /// The CPU backend's knobs as the environment sets them.
    let cpu = lazy (CpuKnobs.Parse(Func<string, string | null>(env)))

    /// The most the buffer pool holds, in bytes (GAN_POOL_MB, default 512; 0 turns pooling off).
    let poolBytes =
        (match Int64.TryParse(env "GAN_POOL_MB") with
         | true, v when v >= 0L -> v
         | _ -> 512L)
        * 1024L
        * 1024L

    /// GAN_POOL_CHECK=1: every recycled buffer is filled with NaN, so that a buffer recycled
    /// while still in use shows up as NaN in results (the test suite runs with it).
    let poolCheck = env "GAN_POOL_CHECK" = "1"

    /// GAN_FUSE_UPSAMPLE_CONV=0 turns the sub-pixel form of conv2d after nearest ×2 upsampling
    /// off (docs/architecture.md).
    let fuseUpsampleConv = env "GAN_FUSE_UPSAMPLE_CONV" <> "0"

    /// GAN_CUBLAS=0: the device backend multiplies with its own GEMM kernel on CUDA devices too,
    /// and never loads cuBLAS.
    let cublas = env "GAN_CUBLAS" <> "0"

    /// The default backend's kind (GAN_BACKEND): true for the reference kernels, false for the
    /// CPU backend; an InvalidOperationException for any other value, at first use.
    let referenceBackend =
        lazy
            (match env "GAN_BACKEND" with
             | null
             | ""
             | "cpu" -> false
             | "reference" -> true
             | other ->
                 invalidOp (
                     sprintf "GAN_BACKEND must be 'cpu' or 'reference' (got '%s'); unset it for the default (cpu)" other
                 ))

type CpuKnobs with

    /// The defaults overridden by this process's GAN_* environment variables (read once).
    static member FromEnvironment() = Knobs.cpu.Force()
