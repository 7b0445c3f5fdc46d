using System.Globalization;
using System.Runtime.InteropServices;

namespace Gan.Host.Io;

/// <summary>
/// Writes a file atomically: the content goes to a temporary file in the same directory, which is
/// flushed to disk and then renamed over the target, and the directory is flushed so the rename
/// itself survives a power cut. Readers see the old file or the new one, never a partial one; a
/// failed write leaves the old file as it was.
/// </summary>
internal static partial class AtomicFile
{
    /// <summary>The infix of temporary files, followed by the writer's process id (a leftover one is removed by <see cref="CleanTemporaries"/>).</summary>
    public const string TempMarker = ".tmp-";

    public static void Write(string path, Action<Stream> write)
    {
        var full = Path.GetFullPath(path);
        var dir = Path.GetDirectoryName(full) ?? ".";
        Directory.CreateDirectory(dir);
        var temp = Path.Combine(dir, $"{Path.GetFileName(full)}{TempMarker}{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            CrashPoint.Hit("before-rename", full);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }

        CrashPoint.Hit("after-rename", full);
        SyncDirectory(dir);
    }

    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, s => s.Write(bytes));

    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));

    /// <summary>
    /// Removes temporary files left in <paramref name="dir"/> by interrupted writes of processes
    /// that are gone (those of live processes, e.g. another run filling the same cache folder, stay).
    /// </summary>
    public static void CleanTemporaries(string dir)
    {
        if (!Directory.Exists(dir))
        {
            return;
        }

        foreach (var f in Directory.EnumerateFiles(dir, $"*{TempMarker}*"))
        {
            if (WriterPid(f) is not { } pid || !WriterLock.IsAlive(pid))
            {
                TryDelete(f);
            }
        }
    }

    /// <summary>The process id in a temporary file's name ("x.tmp-PID-GUID"), or null.</summary>
    public static int? WriterPid(string tempPath)
    {
        var name = Path.GetFileName(tempPath);
        var at = name.LastIndexOf(TempMarker, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var rest = name[(at + TempMarker.Length)..];
        var dash = rest.IndexOf('-');
        return dash > 0 && int.TryParse(rest[..dash], NumberStyles.None, CultureInfo.InvariantCulture, out var pid) ? pid : null;
    }

    /// <summary>
    /// Flushes a file's data to disk (fsync): appended log lines survive a power cut once this returns.
    /// A missing file is skipped.
    /// </summary>
    public static void SyncFile(string path)
    {
        try
        {
            using var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
            f.Flush(flushToDisk: true);
        }
        catch (FileNotFoundException)
        {
        }
    }

    /// <summary>
    /// Flushes a directory's entries to disk (fsync on the directory, POSIX), so a rename or a
    /// new file in it survives a power cut. On Windows, NTFS journals its metadata, so nothing is done.
    /// </summary>
    public static void SyncDirectory(string dir)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        var fd = Open(dir, 0 /* O_RDONLY */);
        if (fd < 0)
        {
            return;
        }

        try
        {
            // EINVAL: the file system cannot sync directories (some network ones); nothing more to do
            _ = Fsync(fd);
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

/// <summary>
/// Named points where the crash test (GAN_HOST_CRASH_AT=POINT[.EXT]:N, in CrashTests) has the
/// process kill itself with SIGKILL the N-th time the point is reached (for files ending in .EXT
/// when given), to cover moments a random kill seldom hits: inside an atomic write (temporary file
/// complete, not yet renamed: before-rename) and between the rename and the directory flush
/// (after-rename); and after a training step (step), so kills land at chosen positions in the run
/// however slow the machine is. Unset (always, outside that test), a point does nothing.
/// </summary>
internal static class CrashPoint
{
    private static readonly (string Name, int Count)? Target = Parse(Environment.GetEnvironmentVariable("GAN_HOST_CRASH_AT"));
    private static int hits;

    private static (string, int)? Parse(string? spec)
    {
        var parts = spec?.Split(':');
        return parts is { Length: 2 } && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? (parts[0], n) : null;
    }

    public static void Hit(string name, string path)
    {
        if (Target is { } t && (t.Name == name || t.Name == name + Path.GetExtension(path)) && Interlocked.Increment(ref hits) == t.Count)
        {
            System.Diagnostics.Process.GetCurrentProcess().Kill();
        }
    }
}
