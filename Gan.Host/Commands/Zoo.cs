using Gan.Functional.CSharp;

namespace Gan.Host.Commands;

/// <summary>Zoo models by name (cached, with the message for an unknown one) and the devices.</summary>
internal static class Zoo
{
    // Engine.Model initialises the networks to count their parameters, so keep what was asked for.
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(string, int), ModelInfo> Cache = new();

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
            throw new UserError(TrainOptions.UnknownModelMessage(name), ExitCodes.Usage);
        }

        return Cache.GetOrAdd((name, channels), info);
    }

    /// <summary>The values --device accepts.</summary>
    public static IReadOnlyList<string> Devices => TrainOptions.Devices;
}
