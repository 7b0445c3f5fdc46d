using Gan.Functional.CSharp;
using Gan.Host.Cli;
using Gan.Host.Eval;

namespace Gan.Host.Commands;

/// <summary>`classifier`: (re)trains a dataset's classifier backbone with its fixed recipe and caches it.</summary>
internal static class ClassifierCommand
{
    public static int Run(ClassifierRequest req, HostContext ctx)
    {
        ctx.Info(Engine.ConfigureCpu(req.Threads));
        var dataDir = req.DataDir is { } d ? ctx.Resolve(d) : null;
        ClassifierCache.Train(req.Dataset, dataDir, ctx);
        return ExitCodes.Ok;
    }
}
