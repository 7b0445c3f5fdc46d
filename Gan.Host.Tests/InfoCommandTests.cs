using System.Text.RegularExpressions;
using Gan.Host.Eval;
using Gan.Host.Training;
using Spectre.Console;

namespace Gan.Host.Tests;

/// <summary>`models`, `devices`, the live progress display and the classifier's view of generated images.</summary>
public class InfoCommandTests
{
    [Fact]
    public void Models_prints_one_line_per_zoo_model_starting_with_its_name_then_G_and_D_counts_and_output_shape()
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, "models");

        Assert.Equal(0, r.Code);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(["mlp", "dcgan28", "dcgan64", "mbd28", "valid64", "toy2d", "toy2d-mbd"], lines.Select(l => l.Split(' ')[0]));
        Assert.All(lines, l => Assert.Matches(@"^\S+\s+G\s+[\d,]+\s+D\s+[\d,]+\s+output (\d+x\d+x\d+|2)\s", l));
        Assert.Contains(lines, l => l.StartsWith("mlp ", StringComparison.Ordinal) && l.Contains("output 1x28x28"));
        Assert.Contains(lines, l => l.StartsWith("dcgan64 ", StringComparison.Ordinal) && l.Contains("output 3x64x64"));
        Assert.Contains("output 1x64x64", Host.Run(sandbox, "models", "--channels", "1").Out);
    }

    [Fact]
    public void Devices_lists_the_cpu_with_its_cores_ILGPUs_cpu_accelerator_and_no_cuda_with_the_reason()
    {
        using var sandbox = new TempDir();

        var r = Host.Run(sandbox, "devices");

        Assert.Equal(0, r.Code);
        var lines = r.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Matches(@"^cpu\s+available\s+\d+ core\(s\) usable by this process; cpu backend, \d+ threads?", lines[0]);
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^ilgpu-cpu\s+available\s+ILGPU's CPU accelerator, \d+ threads"));
        // this machine has no NVIDIA driver: the line says which library was looked for
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^cuda\s+none\s+no NVIDIA driver: libcuda\.so\.1 is not on the library path$"));
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^opencl\s+none\s+ILGPU found no OpenCL platform"));
        // nor cuBLAS: CUDA devices would multiply with the backend's own kernel
        Assert.Contains(lines, l => Regex.IsMatch(l, @"^cublas\s+none\s+cuBLAS not found \(libcublas\.so\.13, libcublas\.so\.12, libcublas\.so\.11, libcublas\.so\.10: none is on the library path\): CUDA devices multiply with the backend's own tiled GEMM kernel$"));
        Assert.Equal("--device accepts: auto, cpu, cuda:N, opencl:N, ilgpu-cpu (auto = cpu here)", lines[^1]);
    }

    [Fact]
    public void The_live_progress_display_shows_the_epoch_step_rate_losses_and_D_outputs()
    {
        var writer = new StringWriter();
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = AnsiSupport.Yes,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.Yes,
            Out = new AnsiConsoleOutput(writer),
        });
        console.Profile.Width = 160;
        var sink = new SpectreProgress(console);

        var result = sink.Run(() =>
        {
            sink.StartEpoch(1, 3, 10, 0);
            sink.Step(new StepStats(4, 10, 12.5, 800, 1.3241, 0.6922, 0.61, 0.55));
            Thread.Sleep(250); // one refresh of the display (every 100 ms)
            sink.Line("a log line");
            return 42;
        });

        Assert.Equal(42, result);
        var text = Regex.Replace(writer.ToString(), @"\x1b\[[0-9;?]*[A-Za-z]", "");
        Assert.Contains("epoch 1/3", text);
        Assert.Contains("4/10 12.5 it/s 800 img/s D 1.324 G 0.692 D(x) 0.61 D(G(z)) 0.55", text);
        Assert.Contains("a log line", text);
    }

    [Fact]
    public void Generated_colour_images_reach_the_classifier_as_grey_28x28_in_zero_to_one()
    {
        // two 3×64×64 images in [−1, 1]: one constant per channel (−1, 0, 1 → grey 0.5), one all 1 (white)
        var plane = 64 * 64;
        var images = new float[2 * 3 * plane];
        Array.Fill(images, -1f, 0, plane);
        Array.Fill(images, 0f, plane, plane);
        Array.Fill(images, 1f, 2 * plane, plane);
        Array.Fill(images, 1f, 3 * plane, 3 * plane);

        var unit = Scorer.ToClassifierInput(images, 2, 3, 64, 64, zeroToOne: false, channels: 1);

        Assert.Equal(2 * 784, unit.Length);
        Assert.All(unit[..784], v => Assert.Equal(128 / 255f, v)); // 0.5 rounded to 8 bits as a PNG would
        Assert.All(unit[784..], v => Assert.Equal(1f, v));
    }
}
