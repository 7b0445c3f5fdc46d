using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using Gan.Functional;

namespace Gan.Host.Distributed;

/// <summary>
/// Open MPI (libmpi.so.40) bound directly: the library is loaded at run time, the predefined
/// handles are the addresses of its exported globals (Open MPI's handles are pointers:
/// <c>MPI_COMM_WORLD</c> is <c>&amp;ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> <c>&amp;ompi_mpi_float</c>,
/// <c>MPI_SUM</c> <c>&amp;ompi_mpi_op_sum</c>; <c>MPI_IN_PLACE</c> is <c>(void*)1</c>), and the few
/// calls the host needs work on spans in place. Started only when the process runs under a
/// launcher (mpirun, or srun with PMIx), or when asked (<c>GAN_MPI=1</c>: a singleton, a job of
/// one). The reducer of the data-parallel training step.
/// </summary>
internal sealed unsafe class Mpi : IReducer, IDisposable
{
    private const string Library = "libmpi.so.40";
    private const int ThreadFunneled = 1;
    private const int MaxProcessorName = 256;
    private static readonly nint InPlace = 1;

    private readonly nint comm, float32, float64, byteType, sum;
    private readonly delegate* unmanaged<nint, nint, int, nint, nint, nint, int> allreduce;
    private readonly delegate* unmanaged<nint, int, nint, int, nint, int> bcast;
    private readonly delegate* unmanaged<nint, int> barrier;
    private readonly delegate* unmanaged<nint, int, int> abort;
    private readonly delegate* unmanaged<int> finalize;
    private readonly delegate* unmanaged<int*, int> finalized;
    private bool disposed;

    /// <summary>True when this process was started by an MPI launcher (or GAN_MPI=1 asks for MPI).</summary>
    public static bool Launched =>
        Environment.GetEnvironmentVariable("GAN_MPI") == "1"
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("OMPI_COMM_WORLD_SIZE"))
        || !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("PMIX_RANK"));

    public int Rank { get; }

    public int Ranks { get; }

    /// <summary>Time spent in allreduce (SumInPlace) so far, and the bytes given to it.</summary>
    public TimeSpan AllreduceTime { get; private set; }

    public long AllreduceBytes { get; private set; }

    public long AllreduceCalls { get; private set; }

    private Mpi()
    {
        nint lib;
        try
        {
            // RTLD_GLOBAL: Open MPI's components (loaded by libmpi itself) resolve libmpi's symbols
            lib = dlopen(Library, RtldNow | RtldGlobal);
            if (lib == 0)
            {
                lib = NativeLibrary.Load(Library);
            }
        }
        catch (DllNotFoundException)
        {
            throw new UserError(
                $"This process runs under an MPI launcher, but Open MPI's {Library} is not installed here. On Debian: apt-get install openmpi-bin (on every machine of the job).");
        }


        comm = NativeLibrary.GetExport(lib, "ompi_mpi_comm_world");
        float32 = NativeLibrary.GetExport(lib, "ompi_mpi_float");
        float64 = NativeLibrary.GetExport(lib, "ompi_mpi_double");
        byteType = NativeLibrary.GetExport(lib, "ompi_mpi_byte");
        sum = NativeLibrary.GetExport(lib, "ompi_mpi_op_sum");
        allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)NativeLibrary.GetExport(lib, "MPI_Allreduce");
        bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)NativeLibrary.GetExport(lib, "MPI_Bcast");
        barrier = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "MPI_Barrier");
        abort = (delegate* unmanaged<nint, int, int>)NativeLibrary.GetExport(lib, "MPI_Abort");
        finalize = (delegate* unmanaged<int>)NativeLibrary.GetExport(lib, "MPI_Finalize");
        finalized = (delegate* unmanaged<int*, int>)NativeLibrary.GetExport(lib, "MPI_Finalized");
        var initThread = (delegate* unmanaged<nint, nint, int, int*, int>)NativeLibrary.GetExport(lib, "MPI_Init_thread");
        var commRank = (delegate* unmanaged<nint, int*, int>)NativeLibrary.GetExport(lib, "MPI_Comm_rank");
        var commSize = (delegate* unmanaged<nint, int*, int>)NativeLibrary.GetExport(lib, "MPI_Comm_size");
        getProcessorName = (delegate* unmanaged<byte*, int*, int>)NativeLibrary.GetExport(lib, "MPI_Get_processor_name");

        // every MPI call is made from the thread that trains (FUNNELED); argc/argv may be null
        int provided;
        Check(initThread(0, 0, ThreadFunneled, &provided), "MPI_Init_thread");
        int rank, size;
        Check(commRank(comm, &rank), "MPI_Comm_rank");
        Check(commSize(comm, &size), "MPI_Comm_size");
        Rank = rank;
        Ranks = size;
    }

    private readonly delegate* unmanaged<byte*, int*, int> getProcessorName;

    /// <summary>Starts MPI when this process was launched by mpirun (see <see cref="Launched"/>); null otherwise.</summary>
    public static Mpi? StartIfLaunched() => Launched ? new Mpi() : null;

    private static void Check(int code, string call)
    {
        // the default error handler (MPI_ERRORS_ARE_FATAL) ends the job first; this is a guard
        if (code != 0)
        {
            throw new InvalidOperationException($"{call} failed with MPI error code {code}.");
        }
    }

    /// <summary>Replaces <paramref name="values"/> by their sum over all ranks (MPI_Allreduce in place).</summary>
    public void SumInPlace(Span<float> values) => Allreduce(MemoryMarshal.AsBytes(values), values.Length, float32, 4);

    /// <inheritdoc cref="SumInPlace(Span{float})"/>
    public void SumInPlace(Span<double> values) => Allreduce(MemoryMarshal.AsBytes(values), values.Length, float64, 8);

    private void Allreduce(Span<byte> bytes, int count, nint type, int size)
    {
        var t0 = Stopwatch.GetTimestamp();
        fixed (byte* p = bytes)
        {
            // MPI counts are ints: very large buffers go in pieces
            const int piece = 1 << 28;
            for (var at = 0; at < count; at += piece)
            {
                var n = Math.Min(piece, count - at);
                Check(allreduce(InPlace, (nint)(p + ((long)at * size)), n, type, sum, comm), "MPI_Allreduce");
            }
        }

        AllreduceTime += Stopwatch.GetElapsedTime(t0);
        AllreduceBytes += bytes.Length;
        AllreduceCalls++;
    }

    /// <summary>Rank <paramref name="root"/>'s bytes on every rank (MPI_Bcast).</summary>
    public void Broadcast(Span<byte> bytes, int root = 0)
    {
        fixed (byte* p = bytes)
        {
            Check(bcast((nint)p, bytes.Length, byteType, root, comm), "MPI_Bcast");
        }
    }

    /// <summary>Rank 0's float32 values on every rank.</summary>
    public void Broadcast(Span<float> values) => Broadcast(MemoryMarshal.AsBytes(values));

    public void Barrier() => Check(barrier(comm), "MPI_Barrier");

    /// <summary>Ends every rank of the job with <paramref name="code"/> (MPI_Abort); does not return.</summary>
    public void Abort(int code)
    {
        abort(comm, code);
        Environment.Exit(code);
    }

    /// <summary>This machine's name as MPI reports it.</summary>
    public string ProcessorName()
    {
        var buffer = stackalloc byte[MaxProcessorName + 1];
        int length;
        Check(getProcessorName(buffer, &length), "MPI_Get_processor_name");
        return Encoding.UTF8.GetString(buffer, length);
    }

    public void Dispose()
    {
        if (disposed)
        {
            return;
        }

        disposed = true;
        int done;
        if (finalized(&done) == 0 && done == 0)
        {
            finalize();
        }
    }

    private const int RtldNow = 2, RtldGlobal = 0x100;

    [DllImport("libc", EntryPoint = "dlopen")]
    private static extern nint dlopen(string file, int mode);
}
