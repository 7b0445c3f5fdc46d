using Gan.Host.Data;
using Gan.Host.Io;

namespace Gan.Host.Tests;

public class IdxTests
{
    [Fact]
    public void A_raw_IDX_file_reads_back_its_dimensions_and_bytes()
    {
        using var dir = new TempDir();
        var data = Enumerable.Range(0, 2 * 3 * 4).Select(i => (byte)(i * 7)).ToArray();
        Idx.Write(dir["a.idx"], [2, 3, 4], data, gzip: false);

        var read = Idx.Read(dir["a.idx"]);

        Assert.Equal([2, 3, 4], read.Dimensions);
        Assert.Equal(data, read.Data);
        Assert.Equal(new byte[] { 0, 0, 8, 3 }, File.ReadAllBytes(dir["a.idx"]).Take(4));
    }

    [Fact]
    public void A_gzip_compressed_IDX_file_reads_the_same_as_a_raw_one()
    {
        using var dir = new TempDir();
        var data = Enumerable.Range(0, 5 * 28 * 28).Select(i => (byte)(i % 251)).ToArray();
        Idx.Write(dir["a.gz"], [5, 28, 28], data, gzip: true);

        var bytes = File.ReadAllBytes(dir["a.gz"]);
        Assert.Equal(0x1F, bytes[0]);
        var read = Idx.Read(dir["a.gz"]);

        Assert.Equal([5, 28, 28], read.Dimensions);
        Assert.Equal(data, read.Data);
    }

    [Fact]
    public void A_file_with_a_bad_magic_number_is_rejected_with_the_bytes_it_starts_with()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir["bad"], [0x50, 0x4B, 0x03, 0x04, 0, 0, 0, 1]);

        var e = Assert.Throws<UserError>(() => Idx.Read(dir["bad"]));

        Assert.Contains("not an IDX file", e.Message);
        Assert.Contains("0x504B0304", e.Message);
        Assert.Contains("bad magic number", e.Message);
    }

    [Fact]
    public void A_file_cut_short_inside_its_data_is_reported_as_truncated_with_the_byte_counts()
    {
        using var dir = new TempDir();
        Idx.Write(dir["full"], [10, 28, 28], new byte[10 * 784], gzip: false);
        var bytes = File.ReadAllBytes(dir["full"]);
        File.WriteAllBytes(dir["cut"], bytes[..(bytes.Length - 100)]);

        var e = Assert.Throws<UserError>(() => Idx.Read(dir["cut"]));

        Assert.Contains("truncated", e.Message);
        Assert.Contains("7,840 bytes of data", e.Message);
        Assert.Contains("only 7,740 follow", e.Message);
    }

    [Fact]
    public void A_file_cut_short_inside_its_header_is_reported_as_truncated()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir["cut"], [0, 0, 8, 3, 0, 0, 0, 10, 0, 0]);

        var e = Assert.Throws<UserError>(() => Idx.Read(dir["cut"]));

        Assert.Contains("truncated", e.Message);
        Assert.Contains("header", e.Message);
    }

    [Fact]
    public void A_truncated_gzip_file_is_reported_as_damaged()
    {
        using var dir = new TempDir();
        Idx.Write(dir["a.gz"], [50, 28, 28], Enumerable.Range(0, 50 * 784).Select(i => (byte)(i * 31)).ToArray(), gzip: true);
        var bytes = File.ReadAllBytes(dir["a.gz"]);
        File.WriteAllBytes(dir["cut.gz"], bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<UserError>(() => Idx.Read(dir["cut.gz"]));

        Assert.Contains("damaged gzip file", e.Message);
        Assert.Contains("decompresses to", e.Message);
    }

    [Fact]
    public void A_label_file_given_as_MNIST_images_is_rejected_with_its_shape()
    {
        using var dir = new TempDir();
        var path = dir["train-images-idx3-ubyte"];
        File.WriteAllBytes(path, [0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3]);

        var e = Assert.Throws<UserError>(() => Mnist.Read(path));

        Assert.Contains("shape 3, not N×28×28", e.Message);
    }
}
