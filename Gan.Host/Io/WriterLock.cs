using System.Diagnostics;
using System.Globalization;

namespace Gan.Host.Io;

/// <summary>
/// One writer per directory (a run directory, a cache entry): a lock file created exclusively
/// (O_EXCL) that holds the owner's process id, host name and start times. A lock whose process is
/// gone (killed, crashed, power cut) is taken over with a message; one held by a live process is
/// refused at once (<see cref="Acquire"/>) or waited for (<see cref="Wait"/>). Disposing removes it.
/// </summary>
internal sealed class WriterLock : IDisposable
{
    private readonly string content;
    private bool released;

    private WriterLock(string path, string content)
    {
        Path = path;
        this.content = content;
    }

    /// <summary>A lock taken part-way through a method (null until then); disposing releases it.</summary>
    internal sealed class Holder : IDisposable
    {
        public WriterLock? Lock { get; set; }

        public void Dispose() => Lock?.Dispose();
    }

    /// <summary>The lock file.</summary>
    public string Path { get; }

    /// <summary>The owner a lock file names (<see cref="ProcessStart"/>: the kernel's start time of the process, to tell a reused id).</summary>
    internal sealed record Owner(int Pid, string Host, DateTime Started, string ProcessStart)
    {
        public string Describe() => string.Create(
            CultureInfo.InvariantCulture,
            $"process {Pid} on {Host} (started {Started.ToLocalTime():yyyy-MM-dd HH:mm:ss})");
    }

    /// <summary>
    /// Takes the lock at <paramref name="path"/> for <paramref name="what"/> ("the run directory X"),
    /// or throws a UserError naming the process that holds it.
    /// </summary>
    public static WriterLock Acquire(string path, string what, Action<string> info)
    {
        for (var attempt = 0; ; attempt++)
        {
            if (TryCreate(path) is { } mine)
            {
                return mine;
            }

            var owner = ReadOwner(path);
            if (owner is null)
            {
                // being written this moment, or gone again: look once more
                if (attempt < 20)
                {
                    Thread.Sleep(50);
                    continue;
                }

                throw new UserError($"The lock file {path} is unreadable, so it is unclear whether {what} is in use. If no run uses it, delete {path} and run again.");
            }

            if (IsGone(owner))
            {
                if (TakeOver(path, owner))
                {
                    info($"Taking over the lock of {what} from {owner.Describe()}, which is no longer running.");
                }

                continue;
            }

            throw Held(path, what, owner);
        }
    }

    /// <summary>Like <see cref="Acquire"/>, but waits while a live process holds the lock (a cache another process is filling).</summary>
    public static WriterLock Wait(string path, string what, Action<string> info)
    {
        var told = false;
        while (true)
        {
            try
            {
                return Acquire(path, what, info);
            }
            catch (HeldException e)
            {
                if (!told)
                {
                    info($"Waiting for {e.Holder.Describe()}, which is writing {what} …");
                    told = true;
                }

                Thread.Sleep(500);
            }
        }
    }

    /// <summary>
    /// Runs <paramref name="make"/> unless <paramref name="done"/> holds, once across processes: the
    /// lock at <paramref name="path"/> is taken (waiting while a live process holds it) and
    /// <paramref name="done"/> is asked again under it, so a second process waits for the first and
    /// then finds its result (a data set being fetched, a cache being filled). Leftover temporary
    /// files of dead writers in the lock's folder are removed first.
    /// </summary>
    public static void Once(string path, string what, Action<string> info, Func<bool> done, Action make)
    {
        if (done())
        {
            return;
        }

        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!;
        Directory.CreateDirectory(dir);
        using var held = Wait(path, what, info);
        AtomicFile.CleanTemporaries(dir);
        if (!done())
        {
            make();
        }
    }

    /// <summary>The refusal when a live process holds a lock.</summary>
    internal sealed class HeldException(string message, Owner holder) : UserError(message)
    {
        public Owner Holder { get; } = holder;
    }

    private static HeldException Held(string path, string what, Owner owner)
    {
        var sameHost = owner.Host == Environment.MachineName;
        return new HeldException(
            $"{char.ToUpperInvariant(what[0])}{what[1..]} is in use by {owner.Describe()}; its lock is {path}. "
            + (sameHost
                ? $"Wait for that run to finish, or stop it (kill {owner.Pid}); one process at a time may write there."
                : $"If no process on {owner.Host} uses it any more, delete {path}; one process at a time may write there."),
            owner);
    }

    private static WriterLock? TryCreate(string path)
    {
        var me = Current();
        var text = string.Create(
            CultureInfo.InvariantCulture,
            $"pid={me.Pid}\nhost={me.Host}\nstarted={me.Started:O}\nprocess_start={me.ProcessStart}\n");
        try
        {
            Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
            using (var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read))
            {
                f.Write(System.Text.Encoding.UTF8.GetBytes(text));
                f.Flush(flushToDisk: true);
            }

            AtomicFile.SyncDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
            return new WriterLock(path, text);
        }
        catch (IOException) when (File.Exists(path))
        {
            return null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "create the lock file", path);
        }
    }

    /// <summary>Replaces a lock whose owner is gone; false when another process took it over first.</summary>
    private static bool TakeOver(string path, Owner stale)
    {
        // Move it aside under a name of our own, then check it is still the stale one: two
        // processes taking over at once cannot both win, and a live lock moved by mistake goes back.
        var aside = $"{path}.stale-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            File.Move(path, aside);
        }
        catch (FileNotFoundException)
        {
            return false;
        }
        catch (IOException) when (!File.Exists(path))
        {
            return false;
        }

        var moved = ReadOwner(aside);
        if (moved is not null && moved != stale && !IsGone(moved))
        {
            try
            {
                File.Move(aside, path);
            }
            catch (IOException)
            {
            }

            return false;
        }

        TryDelete(aside);
        return true;
    }

    /// <summary>The owner a lock file names, or null when it is missing, being written or unreadable.</summary>
    internal static Owner? ReadOwner(string path)
    {
        string text;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists || info.Length > 4096)
            {
                return null;
            }

            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }

        var fields = text.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split('=', 2))
            .Where(p => p.Length == 2)
            .GroupBy(p => p[0])
            .ToDictionary(g => g.Key, g => g.First()[1]);
        return fields.TryGetValue("pid", out var pid) && int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out var id)
            && fields.TryGetValue("host", out var host)
            && fields.TryGetValue("started", out var started)
            && DateTime.TryParse(started, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var when)
            && fields.TryGetValue("process_start", out var processStart)
            ? new Owner(id, host, when, processStart)
            : null;
    }

    /// <summary>
    /// True when the owner's process is known to be gone: same host, and no process with its id, or
    /// one that started at another time (the id was reused), or a zombie. A lock from another host
    /// is never judged gone.
    /// </summary>
    internal static bool IsGone(Owner owner)
    {
        if (owner.Host != Environment.MachineName)
        {
            return false;
        }

        var start = ProcessStartOf(owner.Pid);
        return start is null || start != owner.ProcessStart;
    }

    /// <summary>True when process <paramref name="pid"/> of this host is alive (a zombie counts as gone).</summary>
    public static bool IsAlive(int pid) => pid == Environment.ProcessId || ProcessStartOf(pid) is not null;

    /// <summary>
    /// A stable mark of when process <paramref name="pid"/> started, or null when there is no such
    /// live process. Linux: the start time in clock ticks since boot from /proc (exact); elsewhere
    /// the start time .NET reports.
    /// </summary>
    private static string? ProcessStartOf(int pid)
    {
        if (OperatingSystem.IsLinux())
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                // "pid (comm) state ppid … starttime" — comm may hold spaces and parentheses
                var rest = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                return rest[0] is "Z" or "X" or "x" ? null : rest[19];
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or IndexOutOfRangeException or ArgumentOutOfRangeException)
            {
                return null;
            }
        }

        try
        {
            using var p = Process.GetProcessById(pid);
            return p.HasExited ? null : p.StartTime.ToUniversalTime().Ticks.ToString(CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or System.ComponentModel.Win32Exception or NotSupportedException)
        {
            return e is ArgumentException ? null : "unknown";
        }
    }

    private static Owner Current() => new(
        Environment.ProcessId,
        Environment.MachineName,
        DateTime.UtcNow,
        ProcessStartOf(Environment.ProcessId) ?? "unknown");

    /// <summary>Removes the lock file, if it is still ours.</summary>
    public void Dispose()
    {
        if (released)
        {
            return;
        }

        released = true;
        try
        {
            if (File.Exists(Path) && File.ReadAllText(Path) == content)
            {
                File.Delete(Path);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
    }
}
