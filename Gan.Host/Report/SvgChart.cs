using System.Globalization;
using System.Net;
using System.Text;

namespace Gan.Host.Report;

/// <summary>A named line of (x, y) points; NaN values break the line.</summary>
internal sealed record Series(string Name, IReadOnlyList<(double X, double Y)> Points, string Color, bool Thin = false);

/// <summary>Line charts as inline SVG (no script, no external resource), with axes, ticks and a legend.</summary>
internal static class SvgChart
{
    private static readonly CultureInfo C = CultureInfo.InvariantCulture;
    private const int Width = 640;
    private const int Height = 260;
    private const int Left = 60;
    private const int Right = 16;
    private const int Top = 28;
    private const int Bottom = 40;

    /// <summary>A chart of <paramref name="series"/> titled <paramref name="title"/>, x labelled <paramref name="xLabel"/>.</summary>
    public static string Render(string title, string xLabel, IReadOnlyList<Series> series)
    {
        var finite = series.SelectMany(s => s.Points).Where(p => double.IsFinite(p.X) && double.IsFinite(p.Y)).ToList();
        var sb = new StringBuilder();
        sb.Append(C, $"<svg class=\"chart\" width=\"{Width}\" height=\"{Height}\" viewBox=\"0 0 {Width} {Height}\" role=\"img\" aria-label=\"{E(title)}\">");
        sb.Append(C, $"<text x=\"{Left}\" y=\"18\" class=\"title\">{E(title)}</text>");
        if (finite.Count == 0)
        {
            sb.Append(C, $"<text x=\"{Width / 2}\" y=\"{Height / 2}\" text-anchor=\"middle\" class=\"empty\">no data</text></svg>");
            return sb.ToString();
        }

        var (x0, x1) = Range(finite.Select(p => p.X));
        var (y0, y1) = Range(finite.Select(p => p.Y));
        var xt = Ticks(x0, x1, 6);
        var yt = Ticks(y0, y1, 5);
        (x0, x1) = (Math.Min(x0, xt[0]), Math.Max(x1, xt[^1]));
        (y0, y1) = (Math.Min(y0, yt[0]), Math.Max(y1, yt[^1]));
        double Px(double x) => Left + ((x - x0) / (x1 - x0) * (Width - Left - Right));
        double Py(double y) => Height - Bottom - ((y - y0) / (y1 - y0) * (Height - Top - Bottom));

        foreach (var t in yt)
        {
            sb.Append(C, $"<line x1=\"{Left}\" x2=\"{Width - Right}\" y1=\"{Py(t):0.#}\" y2=\"{Py(t):0.#}\" class=\"grid\"/>");
            sb.Append(C, $"<text x=\"{Left - 6}\" y=\"{Py(t) + 4:0.#}\" text-anchor=\"end\" class=\"tick\">{Label(t, yt)}</text>");
        }

        foreach (var t in xt)
        {
            sb.Append(C, $"<line x1=\"{Px(t):0.#}\" x2=\"{Px(t):0.#}\" y1=\"{Top}\" y2=\"{Height - Bottom}\" class=\"grid\"/>");
            sb.Append(C, $"<text x=\"{Px(t):0.#}\" y=\"{Height - Bottom + 16}\" text-anchor=\"middle\" class=\"tick\">{Label(t, xt)}</text>");
        }

        sb.Append(C, $"<rect x=\"{Left}\" y=\"{Top}\" width=\"{Width - Left - Right}\" height=\"{Height - Top - Bottom}\" class=\"frame\"/>");
        sb.Append(C, $"<text x=\"{(Left + Width - Right) / 2}\" y=\"{Height - 6}\" text-anchor=\"middle\" class=\"axis\">{E(xLabel)}</text>");

        foreach (var s in series)
        {
            foreach (var run in Runs(s.Points))
            {
                if (run.Count == 1)
                {
                    sb.Append(C, $"<circle cx=\"{Px(run[0].X):0.##}\" cy=\"{Py(run[0].Y):0.##}\" r=\"2.5\" fill=\"{s.Color}\"/>");
                    continue;
                }

                sb.Append(C, $"<polyline fill=\"none\" stroke=\"{s.Color}\" stroke-width=\"{(s.Thin ? 0.8 : 1.8)}\"{(s.Thin ? " stroke-opacity=\"0.45\"" : "")} points=\"");
                foreach (var (x, y) in run)
                {
                    sb.Append(C, $"{Px(x):0.##},{Py(y):0.##} ");
                }

                sb.Append("\"/>");
            }
        }

        // the legend sits right-aligned on the title's line, clear of the data
        var lx = Width - Right - series.Sum(s => 28 + (6 * s.Name.Length));
        foreach (var s in series)
        {
            sb.Append(C, $"<rect x=\"{lx}\" y=\"12\" width=\"12\" height=\"3\" fill=\"{s.Color}\"/>");
            sb.Append(C, $"<text x=\"{lx + 16}\" y=\"18\" class=\"legend\">{E(s.Name)}</text>");
            lx += 28 + (6 * s.Name.Length);
        }

        sb.Append("</svg>");
        return sb.ToString();
    }

    /// <summary>At most <paramref name="max"/> points: consecutive buckets averaged (per-step logs can be long).</summary>
    public static IReadOnlyList<(double X, double Y)> Thin(IReadOnlyList<(double X, double Y)> points, int max)
    {
        if (points.Count <= max)
        {
            return points;
        }

        var per = (int)Math.Ceiling(points.Count / (double)max);
        var result = new List<(double, double)>();
        for (var i = 0; i < points.Count; i += per)
        {
            var bucket = points.Skip(i).Take(per).Where(p => double.IsFinite(p.Y)).ToList();
            if (bucket.Count > 0)
            {
                result.Add((bucket.Average(p => p.X), bucket.Average(p => p.Y)));
            }
        }

        return result;
    }

    private static IEnumerable<List<(double X, double Y)>> Runs(IReadOnlyList<(double X, double Y)> points)
    {
        var run = new List<(double, double)>();
        foreach (var p in points)
        {
            if (double.IsFinite(p.X) && double.IsFinite(p.Y))
            {
                run.Add(p);
            }
            else if (run.Count > 0)
            {
                yield return run;
                run = [];
            }
        }

        if (run.Count > 0)
        {
            yield return run;
        }
    }

    private static (double, double) Range(IEnumerable<double> values)
    {
        var list = values.ToList();
        double lo = list.Min(), hi = list.Max();
        if (hi - lo < 1e-12 * Math.Max(1, Math.Abs(hi)))
        {
            var pad = Math.Max(Math.Abs(hi) * 0.1, 1e-3);
            return (lo - pad, hi + pad);
        }

        return (lo, hi);
    }

    /// <summary>"Nice" tick values (1, 2 or 5 × 10^k apart) covering [lo, hi].</summary>
    public static double[] Ticks(double lo, double hi, int target)
    {
        var raw = (hi - lo) / Math.Max(1, target);
        var mag = Math.Pow(10, Math.Floor(Math.Log10(raw)));
        var step = new[] { 1.0, 2.0, 5.0, 10.0 }.Select(m => m * mag).First(s => s >= raw);
        var start = Math.Floor(lo / step) * step;
        var ticks = new List<double>();
        for (var t = start; t <= hi + (step * 0.5) && ticks.Count < 50; t += step)
        {
            ticks.Add(Math.Round(t / step) * step);
        }

        return [.. ticks];
    }

    /// <summary>A tick value with as many decimals as the tick spacing needs (so 1.000002 and 1.000004 differ).</summary>
    private static string Label(double v, double[] ticks)
    {
        var step = ticks.Length > 1 ? Math.Abs(ticks[1] - ticks[0]) : Math.Abs(v);
        if (Math.Abs(v) >= 1e5 || (step > 0 && step < 1e-6))
        {
            return v.ToString("0.###e+0", C);
        }

        var decimals = step > 0 ? Math.Clamp((int)Math.Ceiling(-Math.Log10(step) - 1e-9), 0, 8) : 0;
        return v.ToString("F" + decimals, C);
    }

    private static string E(string s) => WebUtility.HtmlEncode(s);
}
