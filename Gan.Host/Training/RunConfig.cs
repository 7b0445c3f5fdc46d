using System.Globalization;
using Gan.Functional.CSharp;

namespace Gan.Host.Training;

/// <summary>
/// A run's config.json on disk: the library's settings (<see cref="TrainOptions"/>) read with a
/// size bound and its messages turned into user errors. The settings themselves, their checks
/// and their JSON form live in the library (Gan.Functional.Run.TrainSettings).
/// </summary>
internal static class RunConfig
{
    /// <summary>The largest config.json read (a real one is under 1 KB).</summary>
    public const long MaxFileBytes = 1 << 20;

    /// <summary>The most epochs a run can have (the command line's range of --epochs).</summary>
    public static int MaxEpochs => TrainOptions.MaxEpochs;

    /// <summary>The most sample images or points per epoch (a real run has 16 images or 2,500 points).</summary>
    public static int MaxSampleCount => TrainOptions.MaxSampleCount;

    /// <summary>Reads and checks a run's config.json (see <see cref="FromJson"/>).</summary>
    public static TrainOptions Load(string path)
    {
        string json;
        try
        {
            var length = new FileInfo(path).Length;
            if (length > MaxFileBytes)
            {
                throw new UserError($"{path} is {length:N0} bytes, not a run configuration (one is under 1 KB). Restore it, or start a new run with another --out.");
            }

            json = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "read", path);
        }

        return FromJson(json, path);
    }

    /// <summary>
    /// Parses a run configuration and checks every value as the command line checks its flags, so
    /// a hand-edited or damaged file ends in one message naming the setting instead of a crash or
    /// a run that deletes its own checkpoints.
    /// </summary>
    public static TrainOptions FromJson(string json, string source)
    {
        try
        {
            return TrainOptions.FromJson(json, source);
        }
        catch (InvalidSettingsException e)
        {
            throw new UserError(e.Message);
        }
    }

    public static string Str(double v) => v.ToString("R", CultureInfo.InvariantCulture);

    public static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);
}
