using System.Text.Json.Nodes;

namespace Gan.Host.Eval;

/// <summary>
/// A classifier backbone whose weights ship inside Gan.Host (embedded resources
/// <c>Eval/Backbones/D.safetensors</c> and <c>D.json</c>): trained once here by the library's
/// fixed recipe with the <c>classifier</c> command, so a first run's metrics need no minutes of
/// training. The JSON records the recipe; a cache made from these weights is used only while it
/// equals the recipe in force.
/// </summary>
internal sealed record ShippedBackbone(string Dataset, byte[] Weights, JsonNode Recipe, int TrainImages, double Seconds, double TestAccuracy)
{
    /// <summary>The shipped backbone of <paramref name="dataset"/>, or null when none ships.</summary>
    public static ShippedBackbone? Find(string dataset)
    {
        var assembly = typeof(ShippedBackbone).Assembly;
        using var weights = assembly.GetManifestResourceStream($"backbones/{dataset}.safetensors");
        using var info = assembly.GetManifestResourceStream($"backbones/{dataset}.json");
        if (weights is null || info is null)
        {
            return null;
        }

        var bytes = new byte[weights.Length];
        weights.ReadExactly(bytes);
        var json = JsonNode.Parse(info)!.AsObject();
        return new ShippedBackbone(
            dataset,
            bytes,
            json["recipe"]!,
            json["train_images"]!.GetValue<int>(),
            json["seconds"]!.GetValue<double>(),
            json["test_accuracy"]!.GetValue<double>());
    }
}
