using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using Gan.Host.Training;

namespace Gan.Host.Report;

/// <summary>A CSV file with a header, its cells parsed as numbers (empty or bad cells: NaN).</summary>
internal sealed record Csv(string[] Header, double[][] Rows)
{
    public static Csv? Read(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        var lines = File.ReadAllLines(path).Where(l => l.Trim().Length > 0).ToArray();
        if (lines.Length == 0)
        {
            return null;
        }

        var header = lines[0].Split(',').Select(h => h.Trim()).ToArray();
        var rows = lines.Skip(1).Select(l => l.Split(',').Select(v =>
            double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : double.NaN).ToArray()).ToArray();
        return new Csv(header, rows);
    }

    public int Column(string name) => Array.IndexOf(Header, name);

    /// <summary>(column 0, column <paramref name="name"/>) of every row.</summary>
    public IReadOnlyList<(double X, double Y)> Points(string name)
    {
        var i = Column(name);
        return i < 0 ? [] : Rows.Select(r => (r[0], i < r.Length ? r[i] : double.NaN)).ToList();
    }
}

/// <summary>
/// One self-contained HTML page of a run: settings, loss curves, D(x) and D(G(z)), the metrics
/// over time and every epoch's sample grid. Charts are inline SVG and images base64 PNG; a
/// Content-Security-Policy forbids any other resource, so the page never touches the network.
/// </summary>
internal static class ReportPage
{
    private const string Blue = "#1f77b4";
    private const string Orange = "#ff7f0e";
    private const string Green = "#2ca02c";
    private const string Red = "#d62728";
    private static readonly string[] Palette = [Blue, Orange, Green, Red, "#9467bd", "#8c564b"];

    /// <summary>The most per-step points a chart draws (longer logs are averaged in buckets).</summary>
    public const int MaxStepPoints = 1500;

    public static string Build(RunDirectory run)
    {
        var loss = Csv.Read(run.LossCsv);
        var steps = Csv.Read(run.StepsCsv);
        var metrics = Csv.Read(run.MetricsCsv);
        var title = "Gan.Functional run";
        var settings = new List<(string, string)>();
        if (File.Exists(run.ConfigPath))
        {
            using var doc = JsonDocument.Parse(File.ReadAllText(run.ConfigPath));
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                settings.Add((p.Name, p.Value.ValueKind == JsonValueKind.Array ? string.Join(",", p.Value.EnumerateArray()) : p.Value.ToString()));
            }

            var model = settings.FirstOrDefault(s => s.Item1 == "model").Item2;
            var dataset = settings.FirstOrDefault(s => s.Item1 == "dataset").Item2;
            title = $"{model} on {dataset}";
        }

        var sb = new StringBuilder();
        sb.Append("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
        sb.Append("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">\n");
        sb.Append($"<title>{E(title)} — run report</title>\n<style>{Style}</style></head><body>\n");
        sb.Append($"<h1>{E(title)}</h1>\n<p class=\"where\">{E(run.Root)} · report written {DateTime.Now.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)}</p>\n");

        sb.Append("<h2>Losses</h2>\n<div class=\"charts\">");
        if (steps is not null)
        {
            sb.Append(SvgChart.Render("Loss per step", "step", [
                new Series("D loss", SvgChart.Thin(steps.Points("d_loss"), MaxStepPoints), Blue, Thin: true),
                new Series("G loss", SvgChart.Thin(steps.Points("g_loss"), MaxStepPoints), Orange, Thin: true),
            ]));
        }

        sb.Append(loss is null
            ? "<p>No loss.csv yet: the run has not finished an epoch.</p>"
            : SvgChart.Render("Mean loss per epoch", "epoch", [
                new Series("D loss (Dis_loss)", loss.Points("Dis_loss"), Blue),
                new Series("G loss (Gen_loss)", loss.Points("Gen_loss"), Orange),
            ]));
        sb.Append("</div>\n<h2>Discriminator outputs</h2>\n<div class=\"charts\">");
        if (steps is not null)
        {
            sb.Append(SvgChart.Render("D(x) and D(G(z)) per step", "step", [
                new Series("D(x)", SvgChart.Thin(steps.Points("real_p"), MaxStepPoints), Green, Thin: true),
                new Series("D(G(z))", SvgChart.Thin(steps.Points("fake_p"), MaxStepPoints), Red, Thin: true),
            ]));
        }

        if (loss is not null)
        {
            sb.Append(SvgChart.Render("Mean D(x) and D(G(z)) per epoch", "epoch", [
                new Series("D(x) (Real_P)", loss.Points("Real_P"), Green),
                new Series("D(G(z)) (Fake_P)", loss.Points("Fake_P"), Red),
            ]));
        }

        sb.Append("</div>\n<h2>Metrics over time</h2>\n");
        if (metrics is null)
        {
            sb.Append("<p>No metrics.csv: train with <code>--eval-every K</code> to record the metrics every K epochs (or run <code>evaluate</code>).</p>\n");
        }
        else
        {
            sb.Append("<div class=\"charts\">");
            var i = 0;
            foreach (var name in metrics.Header.Skip(1).Where(h => !h.EndsWith("_std", StringComparison.Ordinal)))
            {
                sb.Append(SvgChart.Render(name, "epoch", [new Series(name, metrics.Points(name), Palette[i++ % Palette.Length])]));
            }

            sb.Append("</div>\n").Append(Table(metrics));
        }

        sb.Append("<h2>Samples</h2>\n<p>G's output on the run's fixed noise after every epoch.</p>\n<div class=\"samples\">");
        var samples = Directory.Exists(run.SamplesDir)
            ? Directory.GetFiles(run.SamplesDir, "epoch-*.png").Order(StringComparer.Ordinal).ToList()
            : [];
        if (samples.Count == 0)
        {
            sb.Append("<p>No sample grids yet.</p>");
        }

        foreach (var f in samples)
        {
            var name = Path.GetFileNameWithoutExtension(f);
            var label = name.StartsWith("epoch-", StringComparison.Ordinal) && int.TryParse(name[6..], NumberStyles.None, CultureInfo.InvariantCulture, out var n)
                ? $"epoch {n}"
                : name;
            sb.Append($"<figure><img alt=\"{E(label)}\" src=\"data:image/png;base64,{Convert.ToBase64String(File.ReadAllBytes(f))}\"><figcaption>{E(label)}</figcaption></figure>");
        }

        sb.Append("</div>\n<h2>Settings</h2>\n<table class=\"settings\">");
        foreach (var (k, v) in settings)
        {
            sb.Append($"<tr><th>{E(k)}</th><td>{E(v)}</td></tr>");
        }

        sb.Append("</table>\n</body></html>\n");
        return sb.ToString();
    }

    private static string Table(Csv csv)
    {
        var sb = new StringBuilder("<table class=\"metrics\"><tr>");
        foreach (var h in csv.Header)
        {
            sb.Append($"<th>{E(h)}</th>");
        }

        sb.Append("</tr>");
        foreach (var r in csv.Rows)
        {
            sb.Append("<tr>");
            foreach (var v in r)
            {
                sb.Append($"<td>{E(Eval.EvalResult.Show(v))}</td>");
            }

            sb.Append("</tr>");
        }

        return sb.Append("</table>\n").ToString();
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);

    private const string Style = """
        body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
        h1 { margin: 0 0 4px; } h2 { margin-top: 28px; border-bottom: 1px solid #ddd; }
        .where { color: #666; margin: 0; }
        .charts { display: flex; flex-wrap: wrap; gap: 12px; }
        .chart { border: 1px solid #eee; background: #fcfcfc; }
        .chart .title { font-weight: 600; font-size: 13px; } .chart .tick, .chart .legend, .chart .axis { font-size: 11px; fill: #444; }
        .chart .grid { stroke: #e6e6e6; } .chart .frame { fill: none; stroke: #999; } .chart .empty { fill: #999; }
        .samples { display: flex; flex-wrap: wrap; gap: 10px; }
        figure { margin: 0; text-align: center; } figcaption { font-size: 12px; color: #555; }
        img { image-rendering: pixelated; width: 180px; border: 1px solid #ddd; }
        table { border-collapse: collapse; margin-top: 8px; } th, td { border: 1px solid #ddd; padding: 2px 8px; text-align: left; font-size: 12px; }
        """;
}
