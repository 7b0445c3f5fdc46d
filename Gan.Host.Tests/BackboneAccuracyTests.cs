using Gan.Functional.CSharp;
using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Tests;

/// <summary>
/// A fact about a classifier backbone trained with the full recipe and cached on this machine
/// (training it takes about 10 minutes on 2 cores, too long for a test): skipped, with the command
/// that makes it, where the cache or the labelled test set is missing.
/// </summary>
public sealed class CachedBackboneFactAttribute : FactAttribute
{
    public CachedBackboneFactAttribute(string dataset)
    {
        if (BackboneAccuracyTests.TestSetDir(dataset) is null)
        {
            Skip = $"the labelled {dataset} test set is not on this machine";
        }
        else if (!File.Exists(BackboneAccuracyTests.WeightsPath(dataset)))
        {
            Skip = $"no cached {dataset} classifier in {Path.GetDirectoryName(BackboneAccuracyTests.WeightsPath(dataset))}; "
                + $"make it with `dotnet run --project Gan.Host -c Release -- classifier --dataset {dataset}`";
        }
    }
}

/// <summary>A fact about a shipped classifier backbone that needs the labelled test set: skipped where it is missing (as in CI).</summary>
public sealed class TestSetFactAttribute : FactAttribute
{
    public TestSetFactAttribute(string dataset)
    {
        if (BackboneAccuracyTests.TestSetDir(dataset) is null)
        {
            Skip = $"the labelled {dataset} test set is not on this machine";
        }
    }
}

public class BackboneAccuracyTests
{
    internal static string WeightsPath(string dataset) => Path.Combine(HostContext.DefaultCacheRoot(), "classifiers", $"{dataset}.safetensors");

    internal static string? TestSetDir(string dataset)
    {
        var dir = dataset == "mnist" ? Path.Combine(HostContext.DefaultCacheRoot(), "mnist") : "/usr/share/datasets/fashion-mnist";
        return LabeledDigits.Find(dir, "t10k-labels-idx1-ubyte") is null ? null : dir;
    }

    /// <summary>The accuracy recomputed from the cached weights on the real test set (not read from the JSON beside them).</summary>
    private static double Accuracy(string dataset)
    {
        Engine.ConfigureCpu(0);
        var net = Backbone.Load(Safetensors.Read(File.ReadAllBytes(WeightsPath(dataset))).Tensors);
        var test = LabeledDigits.Read(TestSetDir(dataset)!, "t10k");
        Assert.Equal(10000, test.Count);
        return net.Accuracy(test.Pixels, test.Count, test.Labels);
    }

    [CachedBackboneFact("mnist")]
    public void The_cached_MNIST_backbone_classifies_at_least_99_percent_of_the_test_set() =>
        Assert.InRange(Accuracy("mnist"), 0.99, 1.0);

    [CachedBackboneFact("fashion-mnist")]
    public void The_cached_Fashion_MNIST_backbone_classifies_at_least_90_percent_of_the_test_set() =>
        Assert.InRange(Accuracy("fashion-mnist"), 0.90, 1.0);

    /// <summary>The shipped weights, measured afresh on the real test set, reach the accuracy their JSON records and the bar.</summary>
    private static void ShippedAccuracy(string dataset, double bar)
    {
        Engine.ConfigureCpu(0);
        var shipped = Gan.Host.Eval.ShippedBackbone.Find(dataset)!;
        var net = Backbone.Load(Safetensors.Read(shipped.Weights).Tensors);
        var test = LabeledDigits.Read(TestSetDir(dataset)!, "t10k");
        var accuracy = net.Accuracy(test.Pixels, test.Count, test.Labels);
        Assert.InRange(accuracy, bar, 1.0);
        Assert.Equal(shipped.TestAccuracy, accuracy, 4);
    }

    [TestSetFact("mnist")]
    public void The_shipped_MNIST_backbone_classifies_at_least_99_percent_of_the_test_set() => ShippedAccuracy("mnist", 0.99);

    [TestSetFact("fashion-mnist")]
    public void The_shipped_Fashion_MNIST_backbone_classifies_at_least_90_percent_of_the_test_set() => ShippedAccuracy("fashion-mnist", 0.90);
}
