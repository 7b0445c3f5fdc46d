using System.Text.Json;
using System.Text.Json.Serialization;
using Gan.Functional.CSharp;
using Gan.Host.Cli;

namespace Gan.Host.Training;

/// <summary>Every resolved setting of a run; written to config.json and read back by --resume.</summary>
internal sealed class RunConfig
{
    public const int CurrentFormat = 1;

    /// <summary>The largest config.json read (a real one is under 1 KB).</summary>
    public const long MaxFileBytes = 1 << 20;

    /// <summary>The most epochs a run can have (the command line's range of --epochs).</summary>
    public const int MaxEpochs = CommandLine.MaxEpochs;

    /// <summary>The most sample images or points per epoch (a real run has 16 images or 2,500 points).</summary>
    public const int MaxSampleCount = 100_000;

    public int Format { get; set; } = CurrentFormat;
    public string Model { get; set; } = "mlp";
    public string Dataset { get; set; } = "mnist";
    public int Channels { get; set; }
    public int ImageSize { get; set; }
    public int NoiseDim { get; set; }
    public int Epochs { get; set; }
    public int BatchSize { get; set; }
    public double LearningRate { get; set; }
    public double GeneratorLrScale { get; set; }
    public double Beta1 { get; set; }
    public string Loss { get; set; } = "bce";
    public int DSteps { get; set; } = 1;
    public double GpWeight { get; set; }
    public double R1Weight { get; set; }
    public double Ema { get; set; }
    public int[] LrDecayEpochs { get; set; } = [];
    public string? Bbox { get; set; }
    public int? TrainSize { get; set; }
    public int CheckpointEvery { get; set; }
    public int KeepCheckpoints { get; set; } = 3;
    public ulong Seed { get; set; }
    public int Threads { get; set; }
    public string Device { get; set; } = "auto";
    public string DataDir { get; set; } = "";
    public int SampleCount { get; set; } = 16;
    /// <summary>Score G after every <see cref="EvalEvery"/> epochs (0: none) and after the last.</summary>
    public int EvalEvery { get; set; }

    /// <summary>Whether G is scored at all (after the last epoch at least) where the dataset has metrics; false with --no-eval.</summary>
    public bool Evaluate { get; set; } = true;

    /// <summary>Under mpirun, BatchNorm over the global batch (--sync-batchnorm); kept on --resume.</summary>
    public bool SyncBatchNorm { get; set; }
    public int? EvalSamples { get; set; }

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.Strict,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json) + "\n";

    /// <summary>Reads and checks a run's config.json (see <see cref="FromJson"/>).</summary>
    public static RunConfig Load(string path)
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
    /// Parses a run configuration and checks every value as the command line checks its flags
    /// (<see cref="CommandLine.checkStoredTrain"/>), so a hand-edited or damaged file ends in one
    /// message naming the setting instead of a crash or a run that deletes its own checkpoints.
    /// </summary>
    public static RunConfig FromJson(string json, string source)
    {
        RunConfig? c;
        try
        {
            c = JsonSerializer.Deserialize<RunConfig>(json, Json);
        }
        catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException or InvalidOperationException)
        {
            throw new UserError($"{source} is not a valid run configuration ({e.Message.TrimEnd('.')}). Restore it, or start a new run with another --out.");
        }

        if (c is null || c.Format != CurrentFormat)
        {
            throw new UserError($"{source} is not a run configuration this version understands (format {c?.Format}). Start a new run with another --out.");
        }

        string? problem = null;
        foreach (var (name, value) in new (string, object?)[]
        {
            ("model", c.Model), ("dataset", c.Dataset), ("loss", c.Loss), ("device", c.Device), ("dataDir", c.DataDir), ("lrDecayEpochs", c.LrDecayEpochs),
        })
        {
            if (value is null)
            {
                problem ??= $"{name} is null; it must be given";
            }
        }

        problem ??= CommandLine.checkStoredTrain(c.ToRequest(), new Func<string, string>(flag => $"{SettingName(flag)} ({flag})"))?.TrimEnd('.');
        if (problem is null && c.SampleCount is < 1 or > MaxSampleCount)
        {
            problem = $"sampleCount must be between 1 and {MaxSampleCount:N0} (got {c.SampleCount})";
        }

        if (problem is not null)
        {
            throw new UserError(
                $"{source} has a setting the command line would refuse: {problem}. Restore the file (or fix that value), or start a new run with another --out.");
        }

        return c;
    }

    /// <summary>Every stored setting as a train request (for the command line's checks).</summary>
    private TrainRequest ToRequest() => new()
    {
        Model = Model,
        Dataset = Dataset,
        Channels = Channels,
        ImageSize = ImageSize == 0 ? null : ImageSize,
        NoiseDim = NoiseDim,
        Epochs = Epochs,
        BatchSize = BatchSize,
        LearningRate = LearningRate,
        GeneratorLrScale = GeneratorLrScale,
        Beta1 = Beta1,
        Loss = Loss,
        DSteps = DSteps,
        GradientPenaltyWeight = GpWeight,
        R1Weight = R1Weight,
        EmaDecay = Ema,
        LrDecayEpochs = LrDecayEpochs,
        BoundingBoxes = Bbox,
        TrainSize = TrainSize,
        CheckpointEvery = CheckpointEvery,
        KeepCheckpoints = KeepCheckpoints,
        Seed = Seed,
        Threads = Threads,
        Device = Device,
        DataDir = DataDir,
        EvalEvery = EvalEvery,
        EvalSamples = EvalSamples,
    };

    /// <summary>The name in config.json of the setting a flag sets.</summary>
    public static string SettingName(string flag) => flag switch
    {
        "--lr" => "learningRate",
        "--g-lr-scale" => "generatorLrScale",
        "--gp-weight" => "gpWeight",
        "--r1-weight" => "r1Weight",
        "--bbox" => "bbox",
        _ => JsonNamingPolicy.CamelCase.ConvertName(string.Concat(flag.TrimStart('-').Split('-').Select(w => char.ToUpperInvariant(w[0]) + w[1..]))),
    };

    /// <summary>The training options of the engine.</summary>
    public TrainOptions ToTrainOptions()
    {
        var o = TrainOptions.ForModel(Model, Channels);
        o.BatchSize = BatchSize;
        o.LearningRate = LearningRate;
        o.GeneratorLrScale = GeneratorLrScale;
        o.Beta1 = Beta1;
        o.Loss = Loss;
        o.DSteps = DSteps;
        o.GradientPenaltyWeight = GpWeight;
        o.R1Weight = R1Weight;
        o.EmaDecay = Ema;
        o.LrDecayEpochs = LrDecayEpochs;
        o.Seed = Seed;
        return o;
    }

    /// <summary>
    /// The settings that decide the weights a run produces, by flag name; --resume refuses to change
    /// these (epochs, checkpoints, threads, device and data dir may change).
    /// </summary>
    public IEnumerable<(string Flag, string Value)> Fixed()
    {
        yield return ("--model", Model);
        yield return ("--dataset", Dataset);
        yield return ("--channels", Channels.ToString(System.Globalization.CultureInfo.InvariantCulture));
        yield return ("--image-size", Str(ImageSize));
        yield return ("--noise-dim", Str(NoiseDim));
        yield return ("--batch-size", Str(BatchSize));
        yield return ("--lr", Str(LearningRate));
        yield return ("--g-lr-scale", Str(GeneratorLrScale));
        yield return ("--beta1", Str(Beta1));
        yield return ("--loss", Loss);
        yield return ("--d-steps", Str(DSteps));
        yield return ("--gp-weight", Str(GpWeight));
        yield return ("--r1-weight", Str(R1Weight));
        yield return ("--ema", Str(Ema));
        yield return ("--lr-decay-epochs", LrDecayEpochs.Length == 0 ? "none" : string.Join(",", LrDecayEpochs));
        yield return ("--bbox", Bbox ?? "(none)");
        yield return ("--train-size", TrainSize is { } t ? Str(t) : "(all)");
        yield return ("--seed", Seed.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    public static string Str(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    public static string Str(int v) => v.ToString(System.Globalization.CultureInfo.InvariantCulture);

    [JsonIgnore]
    public string DatasetLabel => Dataset.StartsWith("images:", StringComparison.Ordinal)
        ? "images-" + Sanitize(Path.GetFileName(Path.TrimEndingDirectorySeparator(Dataset["images:".Length..])))
        : Dataset;

    private static string Sanitize(string s)
    {
        var chars = s.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' ? c : '-').ToArray();
        var r = new string(chars).Trim('-');
        return r.Length == 0 ? "dir" : r;
    }
}
