using Gan.Host.Io;

namespace Gan.Host.Tests;

/// <summary>`interpolate` and `arithmetic` on a tiny mlp run.</summary>
public class LatentTests
{
    /// <summary>The 28×28 grey tile at (row, column) of a grid with 2-pixel borders.</summary>
    private static byte[] Tile(RasterImage grid, int row, int col)
    {
        var tile = new byte[784];
        for (var y = 0; y < 28; y++)
        {
            Array.Copy(grid.Pixels, ((2 + (row * 30) + y) * grid.Width) + 2 + (col * 30), tile, y * 28, 28);
        }

        return tile;
    }

    private static RasterImage Read(string path) => ImageCodec.Read(path);

    [Fact]
    public void Interpolate_draws_rows_of_walks_that_start_and_end_at_the_samples_of_the_same_seed()
    {
        using var sandbox = new TempDir();
        var run = EvaluationTests.TinyRun(sandbox);

        var lin = Host.Run(sandbox, "interpolate", "--run", run, "--steps", "5", "--rows", "2", "--seed", "3", "--out", sandbox["lin.png"]);
        var sph = Host.Run(sandbox, "interpolate", "--run", run, "--steps", "5", "--rows", "2", "--seed", "3", "--spherical", "--out", sandbox["sph.png"]);
        var sample = Host.Run(sandbox, "sample", "--run", run, "--count", "4", "--seed", "3", "--out", sandbox["s.png"]);

        Assert.True(lin.Code == 0, lin.Err + lin.Out);
        Assert.True(sph.Code == 0, sph.Err + sph.Out);
        Assert.True(sample.Code == 0, sample.Err);
        var grid = Read(sandbox["lin.png"]);
        Assert.Equal((152, 62), (grid.Width, grid.Height));
        var s = Read(sandbox["s.png"]);
        // row r walks from sample 2r to sample 2r + 1 (sample lays 4 out as 2×2)
        Assert.Equal(Tile(s, 0, 0), Tile(grid, 0, 0));
        Assert.Equal(Tile(s, 0, 1), Tile(grid, 0, 4));
        Assert.Equal(Tile(s, 1, 0), Tile(grid, 1, 0));
        Assert.NotEqual(Tile(grid, 0, 0), Tile(grid, 0, 2));
        // the great circle passes elsewhere than the chord in between
        Assert.NotEqual(Tile(grid, 0, 2), Tile(Read(sandbox["sph.png"]), 0, 2));
        Assert.Contains("2 linear walk(s) of 5 steps", lin.Out);
    }

    [Fact]
    public void Arithmetic_shows_the_chosen_samples_their_means_and_the_result()
    {
        using var sandbox = new TempDir();
        var run = EvaluationTests.TinyRun(sandbox);

        var r = Host.Run(sandbox, "arithmetic", "--run", run, "--a", "0,5", "--b", "2", "--c", "9,3,1", "--seed", "4", "--out", sandbox["a.png"]);
        var sample = Host.Run(sandbox, "sample", "--run", run, "--count", "16", "--seed", "4", "--out", sandbox["s.png"]);

        Assert.True(r.Code == 0, r.Err + r.Out);
        Assert.True(sample.Code == 0, sample.Err);
        var grid = Read(sandbox["a.png"]);
        // 4 rows of max(2, 1, 3) + 1 = 4 columns
        Assert.Equal((122, 122), (grid.Width, grid.Height));
        var s = Read(sandbox["s.png"]);
        Assert.Equal(Tile(s, 0, 0), Tile(grid, 0, 0)); // a[0] = sample 0
        Assert.Equal(Tile(s, 1, 1), Tile(grid, 0, 1)); // a[1] = sample 5 (row 1, column 1 of 4×4)
        Assert.Equal(Tile(s, 2, 1), Tile(grid, 2, 0)); // c[0] = sample 9
        Assert.Equal(new byte[784], Tile(grid, 1, 2)); // b has one sample: blank slots stay black
        Assert.NotEqual(new byte[784], Tile(grid, 3, 3)); // the result
    }

    [Theory]
    [InlineData("arithmetic --run r --a 1 --b 2 --out x.png", "arithmetic needs --a, --b and --c, each a list of sample indices (missing --c)")]
    [InlineData("arithmetic --run r --a 1,x --b 2 --c 3 --out x.png", "--a takes sample indices (0-based whole numbers up to 100000) separated by commas, e.g. 3,7,9 (got '1,x')")]
    [InlineData("arithmetic --run r --a 1 --b -2 --c 3 --out x.png", "--b takes sample indices")]
    [InlineData("arithmetic --a 1 --b 2 --c 3 --out x.png", "arithmetic needs --run DIR or --checkpoint FILE")]
    [InlineData("interpolate --run r", "interpolate needs --out FILE.png")]
    [InlineData("interpolate --run r --checkpoint c --out x.png", "interpolate takes --run DIR or --checkpoint FILE, not both")]
    [InlineData("interpolate --run r --steps 1 --out x.png", "--steps must be between 2 and 64 (got 1)")]
    [InlineData("interpolate --run r --rows 0 --out x.png", "--rows must be between 1 and 64 (got 0)")]
    public void Bad_latent_command_lines_are_refused_with_a_usage_error(string line, string expected)
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, line.Split(' '));

        Assert.Equal(2, r.Code);
        Assert.Contains(expected, r.Error);
    }

    [Fact]
    public void Latent_commands_refuse_a_non_png_output_and_a_missing_run()
    {
        using var sandbox = new TempDir();

        var jpg = Host.Run(sandbox, "interpolate", "--run", sandbox["r"], "--out", "x.jpg");
        var missing = Host.Run(sandbox, "arithmetic", "--run", sandbox["r"], "--a", "1", "--b", "2", "--c", "3", "--out", "x.png");

        Assert.Equal((2, "--out x.jpg must name a .png file: interpolate writes PNG."), (jpg.Code, jpg.Error));
        Assert.Equal((1, $"The run directory {sandbox["r"]} (--run) does not exist."), (missing.Code, missing.Error));
    }
}
