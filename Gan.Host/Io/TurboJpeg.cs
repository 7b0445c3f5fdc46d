using System.Runtime.InteropServices;

namespace Gan.Host.Io;

/// <summary>
/// JPEG through libjpeg-turbo's TurboJPEG library (Debian: libturbojpeg0), loaded at run time
/// when installed. Decoding can scale down by 1/2, 1/4 or 1/8 on the fly, which makes large
/// photos much cheaper to shrink.
/// </summary>
internal static unsafe class TurboJpeg
{
    private const int PixelFormatRgb = 0;
    private const int PixelFormatGray = 6;

    private static readonly Lazy<Api?> Loaded = new(Load);

    /// <summary>The message for a JPEG when the library is missing.</summary>
    public const string MissingMessage =
        "JPEG files need libjpeg-turbo's TurboJPEG library (libturbojpeg.so.0), which is not installed here; "
        + "on Debian/Ubuntu install it with `apt-get install libturbojpeg0`, or convert the images to PNG";

    /// <summary>Tests set this to behave as if the library were not installed.</summary>
    internal static bool PretendMissing { get; set; }

    /// <summary>True when the library could be loaded.</summary>
    public static bool Available => !PretendMissing && Loaded.Value is not null;

    /// <summary>True when <paramref name="bytes"/> start like a JPEG (SOI marker).</summary>
    public static bool HasSignature(ReadOnlySpan<byte> bytes) => bytes.Length >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF;

    private sealed class Api
    {
        public required delegate* unmanaged<nint> InitDecompress;
        public required delegate* unmanaged<nint> InitCompress;
        public required delegate* unmanaged<nint, byte*, CULong, int*, int*, int*, int*, int> DecompressHeader3;
        public required delegate* unmanaged<nint, byte*, CULong, byte*, int, int, int, int, int, int> Decompress2;
        public required delegate* unmanaged<nint, byte*, int, int, int, int, byte**, CULong*, int, int, int, int> Compress2;
        public required delegate* unmanaged<byte*, void> Free;
        public required delegate* unmanaged<nint, int> Destroy;
        public required delegate* unmanaged<nint, byte*> GetErrorStr2;
        public required delegate* unmanaged<int*, ScalingFactor*> GetScalingFactors;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct ScalingFactor
    {
        public int Num;
        public int Denom;
    }

    private static Api? Load()
    {
        string[] names = OperatingSystem.IsWindows() ? ["turbojpeg.dll", "turbojpeg"]
            : OperatingSystem.IsMacOS() ? ["libturbojpeg.0.dylib", "libturbojpeg.dylib"]
            : ["libturbojpeg.so.0", "libturbojpeg.so"];
        foreach (var name in names)
        {
            if (!NativeLibrary.TryLoad(name, out var lib))
            {
                continue;
            }

            try
            {
                return new Api
                {
                    InitDecompress = (delegate* unmanaged<nint>)NativeLibrary.GetExport(lib, "tjInitDecompress"),
                    InitCompress = (delegate* unmanaged<nint>)NativeLibrary.GetExport(lib, "tjInitCompress"),
                    DecompressHeader3 = (delegate* unmanaged<nint, byte*, CULong, int*, int*, int*, int*, int>)NativeLibrary.GetExport(lib, "tjDecompressHeader3"),
                    Decompress2 = (delegate* unmanaged<nint, byte*, CULong, byte*, int, int, int, int, int, int>)NativeLibrary.GetExport(lib, "tjDecompress2"),
                    Compress2 = (delegate* unmanaged<nint, byte*, int, int, int, int, byte**, CULong*, int, int, int, int>)NativeLibrary.GetExport(lib, "tjCompress2"),
                    Free = (delegate* unmanaged<byte*, void>)NativeLibrary.GetExport(lib, "tjFree"),
                    Destroy = (delegate* unmanaged<nint, int>)NativeLibrary.GetExport(lib, "tjDestroy"),
                    GetErrorStr2 = (delegate* unmanaged<nint, byte*>)NativeLibrary.GetExport(lib, "tjGetErrorStr2"),
                    GetScalingFactors = (delegate* unmanaged<int*, ScalingFactor*>)NativeLibrary.GetExport(lib, "tjGetScalingFactors"),
                };
            }
            catch (EntryPointNotFoundException)
            {
                NativeLibrary.Free(lib);
            }
        }

        return null;
    }

    private static Api Require() => (PretendMissing ? null : Loaded.Value) ?? throw new NotSupportedException(MissingMessage);

    /// <summary>
    /// Decodes a JPEG to 8-bit grey (<paramref name="channels"/> 1) or RGB (3), scaled down by the
    /// smallest of libjpeg-turbo's factors that is at least <paramref name="minScale"/>(width, height)
    /// (null: full size). Returns the image and the factor used (num/denom).
    /// </summary>
    public static (RasterImage Image, int Num, int Denom) Decode(byte[] jpeg, int channels, Func<int, int, double>? minScale = null)
    {
        var api = Require();
        var handle = api.InitDecompress();
        if (handle == 0)
        {
            throw new InvalidOperationException("tjInitDecompress failed");
        }

        try
        {
            fixed (byte* src = jpeg)
            {
                int w, h, sub, cs;
                if (api.DecompressHeader3(handle, src, new CULong((nuint)jpeg.Length), &w, &h, &sub, &cs) != 0)
                {
                    throw new InvalidDataException(Error(api, handle));
                }

                int count;
                var factors = api.GetScalingFactors(&count);
                int bestNum = 1, bestDen = 1, bestW = w, bestH = h;
                var least = minScale?.Invoke(w, h) ?? 1.0;
                for (var i = 0; factors is not null && i < count; i++)
                {
                    var f = factors[i];
                    if (f.Num > f.Denom || (double)f.Num / f.Denom < least)
                    {
                        continue;
                    }

                    int sw = ((w * f.Num) + f.Denom - 1) / f.Denom, sh = ((h * f.Num) + f.Denom - 1) / f.Denom;
                    if ((long)sw * sh < (long)bestW * bestH)
                    {
                        (bestNum, bestDen, bestW, bestH) = (f.Num, f.Denom, sw, sh);
                    }
                }

                var pixels = new byte[(long)bestW * bestH * channels];
                fixed (byte* dst = pixels)
                {
                    var format = channels == 1 ? PixelFormatGray : PixelFormatRgb;
                    if (api.Decompress2(handle, src, new CULong((nuint)jpeg.Length), dst, bestW, bestW * channels, bestH, format, 0) != 0)
                    {
                        throw new InvalidDataException(Error(api, handle));
                    }
                }

                return (new RasterImage(bestW, bestH, channels, pixels), bestNum, bestDen);
            }
        }
        finally
        {
            api.Destroy(handle);
        }
    }

    /// <summary>Encodes an 8-bit grey or RGB image (quality 1–100, 4:4:4).</summary>
    public static byte[] Encode(RasterImage image, int quality = 95)
    {
        var api = Require();
        var handle = api.InitCompress();
        if (handle == 0)
        {
            throw new InvalidOperationException("tjInitCompress failed");
        }

        try
        {
            byte* jpeg = null;
            var size = new CULong(0);
            fixed (byte* src = image.Pixels)
            {
                var format = image.Channels == 1 ? PixelFormatGray : PixelFormatRgb;
                var subsampling = image.Channels == 1 ? 3 : 0; // TJSAMP_GRAY : TJSAMP_444
                if (api.Compress2(handle, src, image.Width, image.Width * image.Channels, image.Height, format, &jpeg, &size, subsampling, quality, 0) != 0)
                {
                    throw new InvalidOperationException(Error(api, handle));
                }
            }

            try
            {
                return new ReadOnlySpan<byte>(jpeg, checked((int)size.Value)).ToArray();
            }
            finally
            {
                api.Free(jpeg);
            }
        }
        finally
        {
            api.Destroy(handle);
        }
    }

    private static string Error(Api api, nint handle)
    {
        var p = api.GetErrorStr2(handle);
        return p is null ? "unknown libjpeg-turbo error" : Marshal.PtrToStringUTF8((nint)p) ?? "unknown libjpeg-turbo error";
    }
}
