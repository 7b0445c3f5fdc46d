using System.Globalization;
using System.Text.RegularExpressions;
using Gan.Host.Io;

namespace Gan.Host.Training;

/// <summary>A checkpoint file and where in the run it was written.</summary>
internal sealed record CheckpointRef(string Path, int CompletedEpochs, int StepInEpoch);

/// <summary>The files of a run directory (--out).</summary>
internal sealed partial class RunDirectory(string root)
{
    public string Root { get; } = root;
    public string ConfigPath => Path.Combine(Root, "config.json");
    public string LossCsv => Path.Combine(Root, "loss.csv");
    public string StepsCsv => Path.Combine(Root, "steps.csv");
    public string MetricsCsv => Path.Combine(Root, "metrics.csv");
    public string TrainLog => Path.Combine(Root, "train.log");
    public string SamplesDir => Path.Combine(Root, "samples");
    public string CheckpointsDir => Path.Combine(Root, "checkpoints");

    public const string LossHeader = "epoch,Real_P,Fake_P,Gen_loss,Dis_loss";
    public const string StepsHeader = "step,epoch,d_loss,g_loss,real_p,fake_p,seconds";

    public bool HasConfig => File.Exists(ConfigPath);

    /// <summary>The one-writer lock of the run directory (see <see cref="WriterLock"/>).</summary>
    public string LockPath => Path.Combine(Root, "run.lock");

    /// <summary>Takes the run directory's lock, or refuses naming the process that holds it.</summary>
    public WriterLock TakeLock(HostContext ctx) => WriterLock.Acquire(LockPath, $"the run directory {Root}", ctx.Info);

    /// <summary>
    /// True when the directory holds nothing but what an interrupted start leaves (the lock file,
    /// temporary files): a new run may use it.
    /// </summary>
    public bool HoldsOnlyLeftovers() => Directory.EnumerateFileSystemEntries(Root).All(e =>
        Path.GetFileName(e) is var n && (n == "run.lock" || n.StartsWith("run.lock.stale-", StringComparison.Ordinal) || n.Contains(AtomicFile.TempMarker, StringComparison.Ordinal)));

    public string SamplePath(int epoch) => Path.Combine(SamplesDir, $"epoch-{epoch:D4}.png");

    /// <summary>
    /// The checkpoint name for a position: epoch-0003.safetensors after 3 whole epochs;
    /// epoch-0004-step-000123.safetensors 123 steps into the 4th (an interrupted epoch).
    /// </summary>
    public static string CheckpointName(int completedEpochs, int stepInEpoch) => stepInEpoch == 0
        ? $"epoch-{completedEpochs:D4}.safetensors"
        : $"epoch-{completedEpochs + 1:D4}-step-{stepInEpoch:D6}.safetensors";

    public string CheckpointPath(int completedEpochs, int stepInEpoch) => Path.Combine(CheckpointsDir, CheckpointName(completedEpochs, stepInEpoch));

    [GeneratedRegex(@"^epoch-(\d{4,})(?:-step-(\d{6,}))?\.safetensors$")]
    private static partial Regex CheckpointPattern();

    /// <summary>The checkpoints of the run, oldest first.</summary>
    public IReadOnlyList<CheckpointRef> Checkpoints()
    {
        if (!Directory.Exists(CheckpointsDir))
        {
            return [];
        }

        var list = new List<CheckpointRef>();
        foreach (var f in Directory.EnumerateFiles(CheckpointsDir, "*.safetensors"))
        {
            var m = CheckpointPattern().Match(Path.GetFileName(f));
            if (!m.Success)
            {
                continue;
            }

            var epoch = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            list.Add(m.Groups[2].Success
                ? new CheckpointRef(f, epoch - 1, int.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))
                : new CheckpointRef(f, epoch, 0));
        }

        return list.OrderBy(c => c.CompletedEpochs).ThenBy(c => c.StepInEpoch).ToList();
    }

    /// <summary>Deletes all but the newest <paramref name="keep"/> checkpoints.</summary>
    public void Prune(int keep)
    {
        var all = Checkpoints();
        foreach (var c in all.Take(Math.Max(0, all.Count - keep)))
        {
            File.Delete(c.Path);
        }
    }

    /// <summary>
    /// Keeps the header and the rows whose first column is at most <paramref name="last"/>; a last
    /// row without its newline (cut off by a crash mid-append) is dropped too.
    /// </summary>
    public static void TruncateCsv(string path, long last)
    {
        if (!File.Exists(path))
        {
            return;
        }

        var text = File.ReadAllText(path);
        var complete = text.LastIndexOf('\n') + 1;
        var lines = text[..complete].Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var kept = lines.Take(1).Concat(lines.Skip(1).Where(l =>
        {
            var first = l.Split(',')[0];
            return long.TryParse(first, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) && v <= last;
        })).ToList();
        AtomicFile.WriteAllText(path, kept.Count == 0 ? "" : string.Join("\n", kept) + "\n");
    }

    /// <summary>Flushes the run's logs to disk, so the rows a checkpoint covers survive a power cut with it.</summary>
    public void SyncLogs()
    {
        AtomicFile.SyncFile(LossCsv);
        AtomicFile.SyncFile(StepsCsv);
        AtomicFile.SyncFile(MetricsCsv);
    }

    public static void AppendLine(string path, string header, string line)
    {
        var isNew = !File.Exists(path) || new FileInfo(path).Length == 0;
        using var w = new StreamWriter(path, append: true, new System.Text.UTF8Encoding(false));
        if (isNew)
        {
            w.Write(header + "\n");
        }

        w.Write(line + "\n");
    }
}
