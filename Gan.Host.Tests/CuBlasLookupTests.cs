namespace Gan.Host.Tests;

/// <summary>
/// The device backend binds cuBLAS by the names CUDA's runtime ships (libcublas.so.13, .12, .11, .10;
/// .NET alone would probe only libcublas.so). `devices` says whether it loads: checked with the
/// stand-in the library tests use (Gan.Tests/StandIns/cublas.c) as libcublas.so.12 on
/// LD_LIBRARY_PATH in a fresh process, since a process loads its libraries once; and that
/// GAN_CUBLAS=0 keeps it from loading.
/// </summary>
public class CuBlasLookupTests
{
    private static string App => typeof(App).Assembly.Location;

    [CcFact]
    public void Devices_finds_cuBLAS_by_its_versioned_name_and_GAN_CUBLAS_0_turns_it_off()
    {
        using var sandbox = new TempDir();
        var lib = Directory.CreateDirectory(sandbox["lib"]).FullName;
        var source = Path.Combine(AppContext.BaseDirectory, "StandIns", "cublas.c");
        CudaDriverLookupTests.Run(CudaDriverLookupTests.Cc!, ["-shared", "-fPIC", "-Wl,-soname,libcublas.so.12", "-o", Path.Combine(lib, "libcublas.so.12"), source], null, out _, out _, expectCode: 0);
        Assert.False(File.Exists(Path.Combine(lib, "libcublas.so")));
        var path = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") is { Length: > 0 } before ? $"{lib}:{before}" : lib;

        CudaDriverLookupTests.Run(CudaDriverLookupTests.Dotnet, [App, "devices"], path, out var found, out _, expectCode: 0);
        CudaDriverLookupTests.Run(CudaDriverLookupTests.Dotnet, [App, "devices"], path, out var off, out _, expectCode: 0, new Dictionary<string, string> { ["GAN_CUBLAS"] = "0" });

        Assert.Matches(@"(?m)^cublas\s+available\s+libcublas\.so\.12 loads: CUDA devices multiply float32 matrices with cuBLAS \(GAN_CUBLAS=0 turns it off\)$", found);
        Assert.Matches(@"(?m)^cublas\s+off\s+GAN_CUBLAS=0: CUDA devices multiply with the backend's own tiled GEMM kernel$", off);
    }
}
