namespace Gan.Host.Io;

/// <summary>
/// Writes a file atomically: the content goes to a temporary file in the same directory, which is
/// flushed to disk and then renamed over the target. Readers see the old file or the new one,
/// never a partial one; a failed write leaves the old file as it was.
/// </summary>
internal static class AtomicFile
{
    /// <summary>The infix of temporary files (a leftover one is removed by <see cref="CleanTemporaries"/>).</summary>
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

            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, s => s.Write(bytes));

    public static void WriteAllText(string path, string text) =>
        Write(path, s => s.Write(new System.Text.UTF8Encoding(false).GetBytes(text)));

    /// <summary>Removes temporary files left in <paramref name="dir"/> by an interrupted write.</summary>
    public static void CleanTemporaries(string dir)
    {
        if (!Directory.Exists(dir))
        {
            return;
        }

        foreach (var f in Directory.EnumerateFiles(dir, $"*{TempMarker}*"))
        {
            TryDelete(f);
        }
    }

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
