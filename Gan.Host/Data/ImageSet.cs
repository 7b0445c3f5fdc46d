using System.IO.MemoryMappedFiles;

namespace Gan.Host.Data;

/// <summary>A set of 8-bit images of one size, each stored planar (C, H, W).</summary>
internal abstract class ImageSet : IDisposable
{
    protected ImageSet(int count, int channels, int height, int width)
    {
        Count = count;
        Channels = channels;
        Height = height;
        Width = width;
    }

    public int Count { get; }
    public int Channels { get; }
    public int Height { get; }
    public int Width { get; }
    public int ImageBytes => Channels * Height * Width;

    /// <summary>The pixels of image <paramref name="index"/>, planar.</summary>
    public abstract ReadOnlySpan<byte> Image(int index);

    /// <summary>The first <paramref name="count"/> images.</summary>
    public abstract ImageSet Take(int count);

    public virtual void Dispose()
    {
    }
}

/// <summary>Images held in one array (MNIST: 60,000 × 784 bytes).</summary>
internal sealed class MemoryImageSet : ImageSet
{
    private readonly byte[] pixels;

    public MemoryImageSet(byte[] pixels, int count, int channels, int height, int width)
        : base(count, channels, height, width)
    {
        if ((long)count * channels * height * width > pixels.Length)
        {
            throw new ArgumentException("pixel buffer too small", nameof(pixels));
        }

        this.pixels = pixels;
    }

    public override ReadOnlySpan<byte> Image(int index) => pixels.AsSpan(index * ImageBytes, ImageBytes);

    public override ImageSet Take(int count) => new MemoryImageSet(pixels, Math.Min(count, Count), Channels, Height, Width);
}

/// <summary>Images in a memory-mapped cache file, so large sets need not fit in one array.</summary>
internal sealed unsafe class MappedImageSet : ImageSet
{
    private readonly MemoryMappedFile file;
    private readonly MemoryMappedViewAccessor view;
    private readonly byte* start;
    private readonly bool owner;

    private MappedImageSet(MemoryMappedFile file, MemoryMappedViewAccessor view, byte* start, int count, int channels, int height, int width, bool owner)
        : base(count, channels, height, width)
    {
        this.file = file;
        this.view = view;
        this.start = start;
        this.owner = owner;
    }

    public static MappedImageSet Open(string path, long offset, int count, int channels, int height, int width)
    {
        var file = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        byte* p = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
        return new MappedImageSet(file, view, p + view.PointerOffset + offset, count, channels, height, width, owner: true);
    }

    public override ReadOnlySpan<byte> Image(int index) => new(start + ((long)index * ImageBytes), ImageBytes);

    public override ImageSet Take(int count) => new MappedImageSet(file, view, start, Math.Min(count, Count), Channels, Height, Width, owner: false);

    public override void Dispose()
    {
        if (owner)
        {
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            file.Dispose();
        }
    }
}
