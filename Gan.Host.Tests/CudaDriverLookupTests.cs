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

    private const string StandIn = """
        #include <stdio.h>
        int cuInit(unsigned flags) { fprintf(stderr, "[stand-in libcuda.so.1] cuInit\n"); return 0; }
        int cuDriverGetVersion(int *version) { *version = 12040; return 0; }
        int cuDeviceGetCount(int *count) { fprintf(stderr, "[stand-in libcuda.so.1] cuDeviceGetCount\n"); *count = 0; return 0; }
        """;

    [CcFact]
    public void Devices_finds_the_NVIDIA_driver_by_its_versioned_name_libcuda_so_1()
    {
        using var sandbox = new TempDir();
        var lib = Directory.CreateDirectory(sandbox["lib"]).FullName;
        File.WriteAllText(sandbox["cuda.c"], StandIn);
        Run(Cc!, ["-shared", "-fPIC", "-o", Path.Combine(lib, "libcuda.so.1"), sandbox["cuda.c"]], null, out _, out var ccErrors, expectCode: 0);
        Assert.False(File.Exists(Path.Combine(lib, "libcuda.so")));

        var dotnet = Environment.ProcessPath is { } p && Path.GetFileNameWithoutExtension(p) == "dotnet" ? p : "dotnet";
        var path = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") is { Length: > 0 } before ? $"{lib}:{before}" : lib;
        Run(dotnet, [typeof(App).Assembly.Location, "devices"], path, out var stdout, out var stderr, expectCode: 0);

        Assert.Contains("[stand-in libcuda.so.1] cuInit", stderr);
        Assert.Contains("[stand-in libcuda.so.1] cuDeviceGetCount", stderr);
        Assert.Matches(@"(?m)^cuda\s+none\s+the NVIDIA driver \(libcuda\.so\.1\) is installed but reports no CUDA device$", stdout);
        Assert.Empty(ccErrors);
    }

    private static void Run(string file, string[] args, string? libraryPath, out string stdout, out string stderr, int expectCode)
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
