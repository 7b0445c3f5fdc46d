using Gan.Functional.CSharp;

namespace Gan.Host.Commands;

/// <summary>Model names and devices, with the messages for unknown ones.</summary>
internal static class Zoo
{
    // Engine.Model initialises the networks to count their parameters, so keep what was asked for.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, int), ModelInfo> Cache = new();

    public static IReadOnlyList<string> ModelNames => Engine.Models(3).Select(m => m.Name).ToList();

    public static ModelInfo Model(string name, int channels)
    {
        if (Cache.TryGetValue((name, channels), out var known))
        {
            return known;
        }

        ModelInfo info;
        try
        {
            info = Engine.Model(name, channels);
        }
        catch (ArgumentException)
        {
            throw new UserError(
                $"Unknown model '{name}'; the zoo has {string.Join(", ", ModelNames)} (`Gan.Host models` describes them).",
                ExitCodes.Usage);
        }

        return Cache.GetOrAdd((name, channels), info);
    }

    /// <summary>True for models whose channel count is a parameter (dcgan64).</summary>
    public static bool TakesChannels(string name) => Model(name, 1).ImageShape[0] != Model(name, 3).ImageShape[0];

    /// <summary>The values --device accepts.</summary>
    public static readonly IReadOnlyList<string> Devices = ["auto", "cpu"];

    public static string Device(string name)
    {
        var d = name.Trim().ToLowerInvariant();
        if (!Devices.Contains(d))
        {
            throw new UserError(
                $"Unknown device '{name}': this build runs on {string.Join(" and ", Devices)} only (auto picks the CPU). "
                + "Gan.Functional has CPU kernels only, so GPUs (cuda, rocm, metal, …) are not available; `Gan.Host devices` says what is here.",
                ExitCodes.Usage);
        }

        return d;
    }

    public static string Loss(string name)
    {
        if (!Engine.LossNames.Contains(name))
        {
            throw new UserError($"Unknown loss '{name}'; known: {string.Join(", ", Engine.LossNames)}.", ExitCodes.Usage);
        }

        return name;
    }
}
