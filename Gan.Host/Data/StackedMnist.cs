using Gan.Functional.CSharp;

namespace Gan.Host.Data;

/// <summary>
/// Stacked MNIST (VEEGAN, PacGAN): three MNIST digits drawn uniformly and independently as the
/// three channels of one 28×28 image, so there are 1,000 modes (100·d1 + 10·d2 + d3).
/// </summary>
internal static class StackedMnist
{
    /// <summary><paramref name="count"/> stacked images from the digits of <paramref name="mnist"/>, composed by triples drawn from <paramref name="seed"/>.</summary>
    public static ImageSet Build(ImageSet mnist, int count, ulong seed)
    {
        if (mnist.Channels != 1 || mnist.Height != 28 || mnist.Width != 28)
        {
            throw new UserError($"Stacked MNIST is built from 1×28×28 digits; the data holds {mnist.Channels}×{mnist.Height}×{mnist.Width} images.");
        }

        var triples = Mixture.StackedTriples(seed, count, mnist.Count);
        var pixels = new byte[(long)count * 3 * 784];
        Parallel.For(0, count, i =>
        {
            for (var c = 0; c < 3; c++)
            {
                mnist.Image(triples[i][c]).CopyTo(pixels.AsSpan(((i * 3) + c) * 784, 784));
            }
        });
        return new MemoryImageSet(pixels, count, 3, 28, 28);
    }
}
