using Gan.Host.Cli;
using Gan.Host.Commands;
using Gan.Host.Training;
using Spectre.Console;

namespace Gan.Host;

/// <summary>The whole program behind Main: parse, dispatch, turn failures into one paragraph and an exit code.</summary>
internal static class App
{
    public static int Run(string[] args, HostContext ctx)
    {
        var parsed = CommandLine.parse(args);
        try
        {
            // under mpirun, the commands that are not data-parallel run on rank 0 alone
            if (ctx.World.Distributed && !ctx.World.IsRoot
                && parsed.Kind is not (CommandKind.Train or CommandKind.Bench or CommandKind.Devices or CommandKind.Help or CommandKind.Error))
            {
                return ExitCodes.Ok;
            }

            switch (parsed.Kind)
            {
                case CommandKind.Help:
                    ctx.Out.WriteLine(parsed.Text.TrimEnd());
                    return ExitCodes.Ok;
                case CommandKind.Error:
                    return Fail(ctx, parsed.Text, ExitCodes.Usage);
                case CommandKind.Models:
                    return InfoCommands.Models(parsed.Channels, ctx);
                case CommandKind.Classifier:
                    return ClassifierCommand.Run(parsed.Classifier!, ctx);
                case CommandKind.Evaluate:
                    return EvaluateCommand.Run(parsed.Evaluate!, ctx);
                case CommandKind.Interpolate:
                    return LatentCommands.Interpolate(parsed.Interpolate!, ctx);
                case CommandKind.Arithmetic:
                    return LatentCommands.Arithmetic(parsed.Arithmetic!, ctx);
                case CommandKind.Report:
                    return ReportCommand.Run(parsed.Report!, ctx);
                case CommandKind.Devices:
                    return InfoCommands.Devices(parsed.Threads, ctx);
                case CommandKind.Sample:
                    return SampleCommand.Run(parsed.Sample!, ctx);
                case CommandKind.Bench:
                    return BenchCommand.Run(parsed.Bench!, ctx);
                case CommandKind.Train when !ctx.World.IsRoot:
                    return Distributed.DistributedTrain.RunReplica(parsed.Train!, ctx);
                case CommandKind.Train:
                    ProgressSink sink = ctx.Interactive ? new SpectreProgress(AnsiConsole.Console) : new PlainProgress(ctx.Out);
                    return TrainCommand.Run(parsed.Train!, ctx, sink);
                default:
                    return Fail(ctx, $"Unhandled command {parsed.Kind}.", ExitCodes.Usage);
            }
        }
        catch (UserError e)
        {
            return Fail(ctx, e.Message, e.ExitCode);
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<UserError>().FirstOrDefault() is { } first)
        {
            return Fail(ctx, first.Message, first.ExitCode);
        }
        catch (Exception e) when (IoErrors.IsDiskFull(e))
        {
            return Fail(ctx, IoErrors.Describe(e, "write", "a file").Message, ExitCodes.Failed);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return Fail(ctx, $"A file operation failed: {e.Message.TrimEnd('.')}. Check the paths and permissions given on the command line.", ExitCodes.Failed);
        }
        catch (Gan.Functional.DeviceOutOfMemoryException e)
        {
            return Fail(ctx, DeviceSelection.OutOfMemory(e, ctx), ExitCodes.Failed);
        }
        catch (AggregateException e) when (e.InnerExceptions.OfType<Gan.Functional.DeviceOutOfMemoryException>().FirstOrDefault() is { } first)
        {
            return Fail(ctx, DeviceSelection.OutOfMemory(first, ctx), ExitCodes.Failed);
        }
        catch (OutOfMemoryException)
        {
            return Fail(ctx, "Out of memory. Use a smaller --batch-size or --train-size.", ExitCodes.Failed);
        }
        catch (Exception e)
        {
            var detail = Environment.GetEnvironmentVariable("GAN_HOST_DEBUG") == "1" ? "\n" + e : "";
            return Fail(
                ctx,
                $"Internal error ({e.GetType().Name}): {e.Message.TrimEnd('.')}. This is a bug in Gan.Host or Gan.Functional; "
                + $"please report it with the command line (set GAN_HOST_DEBUG=1 for the stack trace).{detail}",
                ExitCodes.Failed);
        }
    }

    private static int Fail(HostContext ctx, string message, int code)
    {
        var world = ctx.World;
        if (!world.Distributed)
        {
            ctx.Err.WriteLine($"error: {message}");
            return code;
        }

        // the other ranks may be waiting for this one in a collective: end the whole job
        ctx.Err.WriteLine($"error (rank {world.Rank} of {world.Size}): {message}");
        ctx.Err.Flush();
        world.Abort(code);
        return code;
    }
}
