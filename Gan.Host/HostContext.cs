namespace Gan.Host;

/// <summary>
/// Everything a command touches outside its arguments: output, the working and cache
/// directories, how npm is found, cancellation. Program.cs makes the real one; tests make their own.
/// </summary>
internal sealed class HostContext
{
    public required TextWriter Out { get; init; }
    public required TextWriter Err { get; init; }

    /// <summary>True on a terminal: a live progress display instead of plain lines.</summary>
    public bool Interactive { get; init; }

    /// <summary>Relative paths and the default runs/ folder are resolved against this.</summary>
    public string WorkingDirectory { get; init; } = Environment.CurrentDirectory;

    /// <summary>The default parent of the data directories (…/gan-functional under the user's cache directory).</summary>
    public string CacheRoot { get; init; } = DefaultCacheRoot();

    /// <summary>Folders searched for Fashion-MNIST when --data-dir is not given (before the cache).</summary>
    public IReadOnlyList<string> SystemFashionMnistDirs { get; init; } = ["/usr/share/datasets/fashion-mnist"];

    /// <summary>Finds the npm executable (null when not installed).</summary>
    public Func<string?> FindNpm { get; init; } = () => FindOnPath(OperatingSystem.IsWindows() ? ["npm.cmd", "npm.exe"] : ["npm"]);

    /// <summary>Ctrl-C: the train loop saves a checkpoint and stops when this is cancelled.</summary>
    public CancellationToken Cancel { get; init; }

    /// <summary>Called after every training step with the global step count (tests use it to interrupt).</summary>
    public Action<int>? AfterStep { get; init; }

    /// <summary>The classifier backbone's recipe per dataset (null: the library's fixed one); tests shorten it for tiny data.</summary>
    public Func<string, Gan.Functional.CSharp.ClassifierRecipeOptions>? ClassifierRecipe { get; init; }

    /// <summary>The processes of this run: one, or the ranks of an MPI job (Program.cs starts MPI under mpirun).</summary>
    public Distributed.World World { get; init; } = Distributed.World.Single;

    /// <summary>Set while a training loop can stop cleanly (so Ctrl-C waits for it).</summary>
    public volatile bool TrainingActive;

    /// <summary>The --device the command selected ("auto", "cuda:0", …), for the out-of-memory message.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>What the command is doing on the device, e.g. "training mbd28 at batch size 64" (the out-of-memory message names it).</summary>
    public string DeviceWork { get; set; } = "";

    public string Resolve(string path) => Path.GetFullPath(path, WorkingDirectory);

    public void Info(string line) => Out.WriteLine(line);

    public static string DefaultCacheRoot()
    {
        string baseDir;
        if (OperatingSystem.IsWindows())
        {
            baseDir = Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify);
        }
        else
        {
            var xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
            baseDir = !string.IsNullOrEmpty(xdg) && Path.IsPathRooted(xdg)
                ? xdg
                : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile, Environment.SpecialFolderOption.DoNotVerify), ".cache");
        }

        // no home directory at all (a bare service account): fall back to the temporary directory
        if (string.IsNullOrEmpty(baseDir) || !Path.IsPathRooted(baseDir))
        {
            baseDir = Path.Combine(Path.GetTempPath(), "cache");
        }

        return Path.GetFullPath(Path.Combine(baseDir, "gan-functional"));
    }

    public static string? FindOnPath(IEnumerable<string> names)
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            foreach (var name in names)
            {
                var candidate = Path.Combine(dir, name);
                if (File.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }
}
