namespace Gan.Host;

/// <summary>Process exit codes of Gan.Host.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>Bad input: missing or corrupt data, checkpoints, images, directories.</summary>
    public const int Failed = 1;
    /// <summary>A bad command line.</summary>
    public const int Usage = 2;
    /// <summary>Training diverged (a NaN or infinite loss).</summary>
    public const int Diverged = 3;
    /// <summary>Interrupted by Ctrl-C after saving a checkpoint (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;
}

/// <summary>
/// A problem the user can fix: its message is one paragraph saying what is wrong and what to do,
/// printed without a stack trace.
/// </summary>
internal class UserError(string message, int exitCode = ExitCodes.Failed) : Exception(message)
{
    public int ExitCode { get; } = exitCode;
}

internal static class IoErrors
{
    /// <summary>True when an I/O error means the disk (or quota) is full.</summary>
    public static bool IsDiskFull(Exception e)
    {
        if (e is not IOException io)
        {
            return false;
        }

        // Unix: .NET puts errno in HResult (ENOSPC 28, EDQUOT 122 on Linux).
        // Windows: ERROR_HANDLE_DISK_FULL 0x27, ERROR_DISK_FULL 0x70.
        var code = io.HResult & 0xFFFF;
        return code is 28 or 122 or 0x27 or 0x70
            || io.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase)
            || io.Message.Contains("disk is full", StringComparison.OrdinalIgnoreCase)
            || io.Message.Contains("quota exceeded", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>
    /// The paragraph for an I/O failure of <paramref name="verb"/> ("write", "read", …) on
    /// <paramref name="path"/>.
    /// </summary>
    public static UserError Describe(Exception e, string verb, string path)
    {
        var why = e.Message.TrimEnd('.');
        if (IsDiskFull(e))
        {
            return new UserError(
                $"The disk is full: could not {verb} {path} ({why}). Free some space or choose another --out, "
                + "then run again; a run continues from its last checkpoint (left intact) with --resume.");
        }

        return e is UnauthorizedAccessException
            ? new UserError($"Permission denied: could not {verb} {path} ({why}). Choose a location you can write to, or fix its permissions.")
            : new UserError($"Could not {verb} {path}: {why}.");
    }
}
