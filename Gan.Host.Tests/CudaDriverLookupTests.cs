using System.Diagnostics;

namespace Gan.Host.Tests;

/// <summary>A test that builds a native library with a C compiler (cc; Debian: gcc; CI installs it): skipped, saying so, where there is none.</summary>
public sealed class CcFactAttribute : FactAttribute
{
    public CcFactAttribute()
    {
        if (!OperatingSystem.IsLinux())
        {
            Skip = "the driver's library names tested here are Linux's";
        }
        else if (CudaDriverLookupTests.Cc is null)
        {
            Skip = "no C compiler (cc) here (Debian: apt-get install gcc)";
        }
    }
}

/// <summary>
/// ILGPU imports the CUDA driver as "cuda", for which .NET on Linux probes libcuda.so, a name only
/// CUDA's development packages install; the driver itself ships libcuda.so.1. The library's
/// resolver maps the one to the other: without it CUDA silently vanishes from the device list.
/// Checked with a stand-in driver (cuInit succeeds, no device) on LD_LIBRARY_PATH in a fresh
/// process, since a process loads its driver once.
/// </summary>
public class CudaDriverLookupTests
{
    internal static readonly string? Cc = HostContext.FindOnPath(["cc", "gcc"]);

    /// <summary>
    /// A stand-in driver: cuInit succeeds and there are DEVICES devices (a -D of the compiler), each
    /// "Stand-in GPU" of compute capability 9.0, 8 GiB and 132 SMs; it has no cuCtxCreate, so a
    /// device cannot be opened.
    /// </summary>
    private const string StandIn = """
        #include <stdio.h>
        #include <string.h>
        int cuInit(unsigned flags) { fprintf(stderr, "[stand-in libcuda.so.1] cuInit\n"); return 0; }
        int cuDriverGetVersion(int *version) { *version = 12040; return 0; }
        int cuDeviceGetCount(int *count) { fprintf(stderr, "[stand-in libcuda.so.1] cuDeviceGetCount\n"); *count = DEVICES; return 0; }
        int cuDeviceGet(int *device, int ordinal) { *device = ordinal; return 0; }
        int cuDeviceGetName(char *name, int length, int device) { strncpy(name, "Stand-in GPU", length); return 0; }
        int cuDeviceTotalMem_v2(size_t *bytes, int device) { *bytes = (size_t)8 << 30; return 0; }
        int cuDeviceGetAttribute(int *value, int attribute, int device)
        {
            switch (attribute)
            {
                case 75: *value = 9; break;   /* compute capability major */
                case 76: *value = 0; break;   /* minor */
                case 16: *value = 132; break; /* multiprocessors */
                case 10: *value = 32; break;  /* warp size */
                default: *value = 1024;
            }
            return 0;
        }
        """;

    /// <summary>Builds the stand-in with <paramref name="devices"/> devices as libcuda.so.1 (no libcuda.so) in a folder of the sandbox; returns the LD_LIBRARY_PATH that finds it.</summary>
    private static string StandInDriver(TempDir sandbox, int devices)
    {
        var lib = Directory.CreateDirectory(sandbox["lib"]).FullName;
        File.WriteAllText(sandbox["cuda.c"], StandIn);
        Run(Cc!, ["-shared", "-fPIC", $"-DDEVICES={devices}", "-o", Path.Combine(lib, "libcuda.so.1"), sandbox["cuda.c"]], null, out _, out _, expectCode: 0);
        Assert.False(File.Exists(Path.Combine(lib, "libcuda.so")));
        return Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") is { Length: > 0 } before ? $"{lib}:{before}" : lib;
    }

    [CcFact]
    public void Devices_finds_the_NVIDIA_driver_by_its_versioned_name_libcuda_so_1()
    {
        using var sandbox = new TempDir();
        var path = StandInDriver(sandbox, devices: 0);

        Run(Dotnet, [typeof(App).Assembly.Location, "devices"], path, out var stdout, out var stderr, expectCode: 0);

        Assert.Contains("[stand-in libcuda.so.1] cuInit", stderr);
        Assert.Contains("[stand-in libcuda.so.1] cuDeviceGetCount", stderr);
        Assert.Matches(@"(?m)^cuda\s+none\s+the NVIDIA driver \(libcuda\.so\.1\) is installed but reports no CUDA device$", stdout);
    }

    [CcFact]
    public void A_CUDA_device_is_listed_auto_falls_back_to_the_cpu_when_it_cannot_be_opened_and_naming_it_is_an_error()
    {
        using var sandbox = new TempDir();
        var path = StandInDriver(sandbox, devices: 1);
        string[] train = ["train", "--model", "toy2d", "--dataset", "ring8", "--train-size", "8", "--batch-size", "4", "--epochs", "1", "--no-eval"];

        Run(Dotnet, [typeof(App).Assembly.Location, "devices"], path, out var devices, out _, expectCode: 0);
        Run(Dotnet, [typeof(App).Assembly.Location, .. train, "--out", sandbox["auto"]], path, out var auto, out _, expectCode: 0);
        Run(Dotnet, [typeof(App).Assembly.Location, .. train, "--out", sandbox["cuda"], "--device", "cuda:0"], path, out _, out var named, expectCode: 2);
        Run(Dotnet, [typeof(App).Assembly.Location, .. train, "--out", sandbox["cuda1"], "--device", "cuda:1"], path, out _, out var absent, expectCode: 2);

        Assert.Matches(@"(?m)^cuda:0\s+available\s+Stand-in GPU, compute capability 9\.0, 8\.0 GiB, 132 SMs$", devices);
        Assert.Contains("(auto = the first CUDA device that opens and runs a test kernel, else cpu)", devices);
        Assert.Matches(@"^cpu backend, .* \(auto: no CUDA device works here: Could not open cuda:0 \(Stand-in GPU, compute capability 9\.0, 8\.0 GiB, 132 SMs\): .*cuCtxCreate", auto);
        Assert.True(File.Exists(Path.Combine(sandbox["auto"], "checkpoints", "epoch-0001.safetensors")));
        Assert.Matches(@"error: Could not open cuda:0 \(Stand-in GPU, compute capability 9\.0, 8\.0 GiB, 132 SMs\): .*cuCtxCreate", named);
        Assert.Contains("error: There is no device cuda:1: this machine has 1 CUDA device, cuda:0 (Stand-in GPU). The devices here: cpu, cuda:0, ilgpu-cpu.", absent);
        Assert.False(Directory.Exists(sandbox["cuda"]));
    }

    internal static string Dotnet => Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";

    /// <summary>Runs a process with LD_LIBRARY_PATH (and CI=true) set when <paramref name="libraryPath"/> is given, and the variables of <paramref name="environment"/>; asserts its exit code.</summary>
    internal static void Run(string file, string[] args, string? libraryPath, out string stdout, out string stderr, int expectCode, IReadOnlyDictionary<string, string>? environment = null)
    {
        var psi = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        if (libraryPath is not null)
        {
            psi.Environment["LD_LIBRARY_PATH"] = libraryPath;
            psi.Environment["CI"] = "true";
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            psi.Environment[name] = value;
        }

        using var process = Process.Start(psi)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var errors = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(" ", args)} did not end in 2 minutes");
        }

        stdout = output.Result;
        stderr = errors.Result;
        Assert.True(process.ExitCode == expectCode, $"{file} {string.Join(" ", args)} exited {process.ExitCode}: {stderr}{stdout}");
    }
}
