using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Gan.Functional;
using Gan.Functional.CSharp;

namespace Gan.Host.Distributed;

/// <summary>
/// The processes this run is spread over: one (no launcher: nothing is started) or the ranks of
/// an MPI job. Each step's batch is split across the ranks in rank order; the training step
/// averages the gradients with the reducer. Rank 0 alone writes files and prints progress.
/// </summary>
internal sealed class World : IDisposable
{
    /// <summary>A run of one process, without MPI.</summary>
    public static World Single { get; } = new(null);

    public World(Mpi? mpi)
    {
        Mpi = mpi;
    }

    /// <summary>The MPI binding, when this process is part of an MPI job (even a job of one).</summary>
    public Mpi? Mpi { get; }

    public int Rank => Mpi?.Rank ?? 0;

    public int Size => Mpi?.Ranks ?? 1;

    public bool IsRoot => Rank == 0;

    /// <summary>More than one rank: steps are split and reduced.</summary>
    public bool Distributed => Size > 1;

    /// <summary>BatchNorm with the whole global batch's statistics (train --sync-batchnorm).</summary>
    public bool SyncBatchNorm { get; set; }

    public IReducer Reducer => (IReducer?)Mpi ?? Gan.Functional.Reducer.single;

    /// <summary>The rows of a batch of <paramref name="count"/> that <paramref name="rank"/> of <paramref name="ranks"/> takes: contiguous, in rank order, sizes differing by at most one.</summary>
    public static (int Offset, int Count) Slice(int count, int ranks, int rank)
    {
        var per = count / ranks;
        var extra = count % ranks;
        return ((rank * per) + Math.Min(rank, extra), per + (rank < extra ? 1 : 0));
    }

    /// <summary>This rank's rows of a batch of <paramref name="count"/>.</summary>
    public (int Offset, int Count) Slice(int count) => Slice(count, Size, Rank);

    /// <summary>One training step on this rank's <paramref name="local"/> rows (from <paramref name="offset"/>) of a global batch of <paramref name="count"/>.</summary>
    public StepResult Step(GanTrainer trainer, float[] images, int local, int offset, int count, int epoch) =>
        Distributed
            ? trainer.StepShard(images, local, epoch, Reducer, offset, count, SyncBatchNorm)
            : trainer.Step(images, count, epoch);

    /// <summary>True on every rank when any rank passes true (one allreduce of one value).</summary>
    public bool Any(bool local)
    {
        if (!Distributed)
        {
            return local;
        }

        Span<double> flag = [local ? 1 : 0];
        Reducer.SumInPlace(flag);
        return flag[0] > 0;
    }

    /// <summary>Rank 0's bytes on every rank (the length first).</summary>
    public byte[] Broadcast(byte[]? rootBytes)
    {
        var mpi = Mpi ?? throw new InvalidOperationException("Broadcast needs MPI.");
        Span<byte> length = stackalloc byte[8];
        if (IsRoot)
        {
            BinaryPrimitives.WriteInt64LittleEndian(length, rootBytes!.LongLength);
        }

        mpi.Broadcast(length);
        var bytes = IsRoot ? rootBytes! : new byte[BinaryPrimitives.ReadInt64LittleEndian(length)];
        mpi.Broadcast(bytes);
        return bytes;
    }

    /// <summary>Every rank's machine name, in rank order (every rank takes part).</summary>
    public string[] HostNames()
    {
        if (Mpi is null)
        {
            return [System.Net.Dns.GetHostName()];
        }

        // an allgather as an allreduce: each rank fills its own slot of a zeroed buffer
        const int slot = 256;
        var mine = Encoding.UTF8.GetBytes(Mpi.ProcessorName());
        var all = new double[Size * slot];
        for (var i = 0; i < Math.Min(mine.Length, slot); i++)
        {
            all[(Rank * slot) + i] = mine[i];
        }

        Reducer.SumInPlace(all.AsSpan());
        return Enumerable.Range(0, Size)
            .Select(r => Encoding.UTF8.GetString(all.Skip(r * slot).Take(slot).TakeWhile(b => b != 0).Select(b => (byte)b).ToArray()))
            .ToArray();
    }

    /// <summary>One line on the job: ranks, machines, the split of a batch, BatchNorm.</summary>
    public string Describe(int batch, string[] hosts)
    {
        var c = CultureInfo.InvariantCulture;
        var machines = hosts.Distinct().ToList();
        var (_, first) = Slice(batch, Size, 0);
        var (_, last) = Slice(batch, Size, Size - 1);
        var per = first == last ? first.ToString(c) : $"{last}-{first}";
        return string.Create(c,
            $"data-parallel: {Size} MPI ranks on {machines.Count} machine(s) ({string.Join(", ", machines)}); global batch {batch} = {per} per rank; BatchNorm {(SyncBatchNorm ? "synchronised over the global batch" : "per rank")}");
    }

    /// <summary>The training state's tensors as one byte buffer, in their order.</summary>
    public static byte[] Pack(NamedTensor[] tensors)
    {
        using var ms = new MemoryStream();
        foreach (var t in tensors)
        {
            ms.Write(t.Float32Data is { } f ? MemoryMarshal.AsBytes(f.AsSpan()) : MemoryMarshal.AsBytes(t.Float64Data!.AsSpan()));
        }

        return ms.ToArray();
    }

    /// <summary>Tensors named and shaped as <paramref name="template"/>, filled from <paramref name="bytes"/> (Pack's layout).</summary>
    public static NamedTensor[] Unpack(NamedTensor[] template, byte[] bytes)
    {
        var at = 0;
        var result = new NamedTensor[template.Length];
        for (var i = 0; i < template.Length; i++)
        {
            var t = template[i];
            if (t.Float32Data is { } f)
            {
                var data = MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at, f.Length * 4)).ToArray();
                result[i] = new NamedTensor(t.Name, t.Shape, data, null);
                at += f.Length * 4;
            }
            else
            {
                var n = t.Float64Data!.Length;
                var data = MemoryMarshal.Cast<byte, double>(bytes.AsSpan(at, n * 8)).ToArray();
                result[i] = new NamedTensor(t.Name, t.Shape, null, data);
                at += n * 8;
            }
        }

        if (at != bytes.Length)
        {
            throw new InvalidOperationException($"rank 0 sent {bytes.Length} bytes of training state; this rank's model holds {at}.");
        }

        return result;
    }

    /// <summary>Ends the whole job (MPI_Abort) after this rank's message; a no-op without MPI.</summary>
    public void Abort(int code) => Mpi?.Abort(code);

    public void Dispose() => Mpi?.Dispose();
}
