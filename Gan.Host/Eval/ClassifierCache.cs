using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Gan.Functional.CSharp;
using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Eval;

/// <summary>A classifier backbone ready to score: its network, test accuracy and the real test set's features.</summary>
internal sealed record LoadedBackbone(string Dataset, Backbone Net, double TestAccuracy, double[][] RealFeatures, string WeightsPath);

/// <summary>
/// The per-dataset classifier backbones in the cache (…/gan-functional/classifiers/): trained with
/// the library's fixed recipe on first use, then reused. Per dataset D: D.safetensors (weights),
/// D-test-features.safetensors (the test set's penultimate features, for FCD and KID) and D.json
/// (the recipe, the measured test accuracy; written last, so its presence means the others are whole).
/// </summary>
internal static class ClassifierCache
{
    /// <summary>The accuracy each backbone should reach (issue 6); a lower one is reported, not hidden.</summary>
    public static double AccuracyBar(string dataset) => DatasetInfo.Parse(dataset).Kind == DatasetKind.Mnist ? 0.99 : 0.90;

    public static string Dir(HostContext ctx) => Path.Combine(ctx.CacheRoot, "classifiers");

    public static string WeightsPath(HostContext ctx, string dataset) => Path.Combine(Dir(ctx), $"{dataset}.safetensors");

    public static string FeaturesPath(HostContext ctx, string dataset) => Path.Combine(Dir(ctx), $"{dataset}-test-features.safetensors");

    public static string InfoPath(HostContext ctx, string dataset) => Path.Combine(Dir(ctx), $"{dataset}.json");

    private static ClassifierRecipeOptions Recipe(HostContext ctx, string dataset) =>
        ctx.ClassifierRecipe?.Invoke(dataset) ?? ClassifierRecipeOptions.For(dataset);

    internal static JsonObject RecipeJson(ClassifierRecipeOptions r) => new()
    {
        ["seed"] = r.Seed,
        ["epochs"] = r.Epochs,
        ["batch_size"] = r.BatchSize,
        ["lr"] = r.LearningRate,
        ["lr_decay"] = r.LrDecay,
        ["max_shift"] = r.MaxShift,
    };

    /// <summary>The cached backbone of <paramref name="dataset"/>, trained first when missing or made with another recipe.</summary>
    public static LoadedBackbone Ensure(string dataset, string? dataDir, HostContext ctx)
    {
        var reason = TryLoad(dataset, ctx, out var loaded);
        if (loaded is not null)
        {
            return loaded;
        }

        // one writer per cache entry: another process filling it is waited for, then its result used
        using var cacheLock = LockEntry(dataset, ctx);
        reason = TryLoad(dataset, ctx, out loaded);
        if (loaded is not null)
        {
            return loaded;
        }

        if (ShippedBackbone.Find(dataset) is { } shipped && JsonNode.DeepEquals(shipped.Recipe, RecipeJson(Recipe(ctx, dataset))))
        {
            ctx.Info($"The {dataset} classifier backbone (for the metrics) is {reason}; installing the weights shipped with Gan.Host (trained by the same fixed recipe) into {Dir(ctx)}.");
            return Install(dataset, dataDir, shipped, ctx);
        }

        ctx.Info($"The {dataset} classifier backbone (for the metrics) is {reason}; training it now with its fixed recipe (once; it is cached in {Dir(ctx)}).");
        return Train(dataset, dataDir, ctx, locked: true);
    }

    /// <summary>
    /// Caches the weights shipped with the host: measures them on the test set and computes the
    /// test features there (seconds), instead of training for minutes.
    /// </summary>
    private static LoadedBackbone Install(string dataset, string? dataDir, ShippedBackbone shipped, HostContext ctx)
    {
        var dir = LabeledDigits.Locate(dataset, dataDir, ctx);
        var test = LabeledDigits.Read(dir, "t10k");
        var watch = Stopwatch.StartNew();
        var net = Backbone.Load(Safetensors.Read(shipped.Weights).Tensors);
        var accuracy = net.Accuracy(test.Pixels, test.Count, test.Labels);
        var feats = net.Features(test.Pixels, test.Count);
        ctx.Info(string.Create(CultureInfo.InvariantCulture,
            $"classifier {dataset}: test accuracy {accuracy:P2} on {test.Count:N0} images (shipped weights; {watch.Elapsed.TotalSeconds:0.0} s)"));
        return Cache(dataset, net, accuracy, feats, test.Count, shipped.TrainImages, shipped.Recipe.DeepClone(), shipped.Seconds, "shipped with Gan.Host", dir, ctx);
    }

    /// <summary>Loads the cached backbone, or says why it cannot ("not cached yet", …).</summary>
    private static string TryLoad(string dataset, HostContext ctx, out LoadedBackbone? loaded)
    {
        loaded = null;
        var info = InfoPath(ctx, dataset);
        if (!File.Exists(info) || !File.Exists(WeightsPath(ctx, dataset)) || !File.Exists(FeaturesPath(ctx, dataset)))
        {
            return "not cached yet";
        }

        try
        {
            var json = JsonNode.Parse(File.ReadAllText(info))!.AsObject();
            if (!JsonNode.DeepEquals(json["recipe"], RecipeJson(Recipe(ctx, dataset))))
            {
                return "cached with another recipe";
            }

            var accuracy = json["test_accuracy"]!.GetValue<double>();
            var net = Backbone.Load(Safetensors.Read(File.ReadAllBytes(WeightsPath(ctx, dataset))).Tensors);
            var feats = Safetensors.Read(File.ReadAllBytes(FeaturesPath(ctx, dataset))).Tensors.Single(t => t.Name == "features");
            var rows = feats.Shape[0];
            var dim = feats.Shape[1];
            var data = feats.Float32Data ?? throw new InvalidDataException("features are not F32");
            var real = Enumerable.Range(0, rows).Select(i => data.AsSpan(i * dim, dim).ToArray().Select(v => (double)v).ToArray()).ToArray();
            loaded = new LoadedBackbone(dataset, net, accuracy, real, WeightsPath(ctx, dataset));
            return "";
        }
        catch (Exception e) when (e is JsonException or SafetensorsException or InvalidDataException or InvalidOperationException
            or NullReferenceException or FormatException or IOException or Gan.Functional.Gan.Checkpoint.CheckpointMismatchException)
        {
            return $"damaged in the cache ({e.GetType().Name})";
        }
    }

    /// <summary>Trains the backbone with the fixed recipe (printing progress), measures it on the test set and caches it.</summary>
    private static WriterLock LockEntry(string dataset, HostContext ctx) =>
        WriterLock.Wait(Path.Combine(Dir(ctx), $"{dataset}.lock"), $"the {dataset} classifier cache in {Dir(ctx)}", ctx.Info);

    public static LoadedBackbone Train(string dataset, string? dataDir, HostContext ctx, bool locked = false)
    {
        using var cacheLock = locked ? null : LockEntry(dataset, ctx);
        var recipe = Recipe(ctx, dataset);
        var dir = LabeledDigits.Locate(dataset, dataDir, ctx);
        var train = LabeledDigits.Read(dir, "train");
        var test = LabeledDigits.Read(dir, "t10k");
        if (recipe.BatchSize > train.Count)
        {
            throw new UserError($"{dir} has only {train.Count:N0} training images, fewer than the classifier's batch of {recipe.BatchSize}; use the full dataset.");
        }

        var c = CultureInfo.InvariantCulture;
        ctx.Info(string.Create(c,
            $"classifier {dataset}: {recipe.Epochs} epoch(s) over {train.Count:N0} images from {dir}, batch {recipe.BatchSize}, Adam lr {recipe.LearningRate} ×{recipe.LrDecay}/epoch, shifts ±{recipe.MaxShift} px, seed {recipe.Seed}; a line per epoch"));
        var trainer = ClassifierTrainer.Create(recipe);
        var total = Stopwatch.StartNew();
        for (var e = 0; e < recipe.Epochs; e++)
        {
            var watch = Stopwatch.StartNew();
            var loss = trainer.TrainEpoch(train.Pixels, train.Count, train.Labels, e);
            var left = recipe.Epochs - e - 1;
            var eta = left > 0 ? string.Create(c, $", about {Training.PlainProgress.Format(TimeSpan.FromSeconds(total.Elapsed.TotalSeconds / (e + 1) * left))} to go") : "";
            ctx.Info(string.Create(c, $"classifier {dataset}: epoch {e + 1}/{recipe.Epochs}  loss {loss:0.0000}  {watch.Elapsed.TotalSeconds:0.0} s{eta}"));
        }

        var net = trainer.Backbone;
        var accuracy = net.Accuracy(test.Pixels, test.Count, test.Labels);
        var feats = net.Features(test.Pixels, test.Count);
        var bar = AccuracyBar(dataset);
        ctx.Info(string.Create(c,
            $"classifier {dataset}: test accuracy {accuracy:P2} on {test.Count:N0} images ({(accuracy >= bar ? "meets" : "BELOW")} the {bar:P0} bar) after {total.Elapsed.TotalSeconds:0} s"));

        return Cache(dataset, net, accuracy, feats, test.Count, train.Count, RecipeJson(recipe), Math.Round(total.Elapsed.TotalSeconds, 1), "trained here", dir, ctx);
    }

    /// <summary>Writes the backbone's three cache files (the JSON last) and returns it loaded.</summary>
    private static LoadedBackbone Cache(
        string dataset, Backbone net, double accuracy, double[][] feats, int testImages, int trainImages, JsonNode recipe, double seconds, string source, string dir, HostContext ctx)
    {
        var c = CultureInfo.InvariantCulture;
        var weightsPath = WeightsPath(ctx, dataset);
        var infoPath = InfoPath(ctx, dataset);
        try
        {
            Directory.CreateDirectory(Dir(ctx));
            AtomicFile.CleanTemporaries(Dir(ctx));
            Safetensors.WriteFile(weightsPath, net.ExportWeights(), new Dictionary<string, string> { ["format"] = "gan-functional-classifier/1", ["dataset"] = dataset });
            var dim = feats.Length > 0 ? feats[0].Length : 0;
            Safetensors.WriteFile(
                FeaturesPath(ctx, dataset),
                [new NamedTensor("features", [feats.Length, dim], feats.SelectMany(r => r.Select(v => (float)v)).ToArray(), null)],
                new Dictionary<string, string> { ["dataset"] = dataset, ["split"] = "t10k" });
            var info = new JsonObject
            {
                ["format"] = 1,
                ["dataset"] = dataset,
                ["test_accuracy"] = accuracy,
                ["test_images"] = testImages,
                ["train_images"] = trainImages,
                ["recipe"] = recipe,
                ["seconds"] = seconds,
                ["source"] = source,
                ["cached_at"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", c),
                ["data_dir"] = dir,
            };
            AtomicFile.WriteAllText(infoPath, info.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw IoErrors.Describe(e, "write the classifier cache in", Dir(ctx));
        }

        ctx.Info($"classifier {dataset}: cached {weightsPath} and {Path.GetFileName(infoPath)}");
        return new LoadedBackbone(dataset, net, accuracy, feats.Select(r => r.Select(v => (double)(float)v).ToArray()).ToArray(), weightsPath);
    }
}
