using System.Text;
using System.Text.Json;
using Gan.Functional.CSharp;
using Gan.Host.Cli;
using Gan.Host.Commands;
using Gan.Host.Data;
using Gan.Host.Training;

namespace Gan.Host.Distributed;

/// <summary>
/// `train` under mpirun. Rank 0 runs the ordinary train command (the run directory, logs,
/// samples, checkpoints are its alone) and, once its data and model are ready, sends the others
/// its settings, the position in the run and the training state (Share). Every other rank loads
/// its own copy of the data (its own --data-dir when given) and steps in lock-step with rank 0
/// on its slice of each global batch, writing nothing (RunReplica).
/// </summary>
internal static class DistributedTrain
{
    /// <summary>What rank 0 tells the others before the first step.</summary>
    private sealed record Header(string Config, int Count, int Epoch, int Step, bool SyncBatchNorm);

    /// <summary>Rank 0: checks the batch splits over the ranks, then sends settings, position and state.</summary>
    public static void Share(World world, TrainOptions config, GanTrainer trainer, LoadedCheckpoint? from, int count)
    {
        CheckSplit(world.Size, config.BatchSize, count);
        var header = new Header(config.ToJson(), count, from?.CompletedEpochs ?? 0, from?.StepInEpoch ?? 0, world.SyncBatchNorm);
        world.Broadcast(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header)));
        world.Broadcast(World.Pack(trainer.ExportState()));
    }

    /// <summary>Every step's rows must give each rank at least two (BatchNorm's batch statistics need two).</summary>
    public static void CheckSplit(int ranks, int batch, int count)
    {
        var last = count % batch;
        if (batch < 2 * ranks || (last != 0 && last < 2 * ranks))
        {
            var which = batch < 2 * ranks ? $"the batch of {batch}" : $"the last batch of each epoch ({count} examples = {count / batch} × {batch} + {last})";
            throw new UserError(
                $"{ranks} ranks need at least {2 * ranks} examples in every step's batch (two per rank), but {which} has fewer. "
                + $"Use a larger --batch-size, or a --train-size that leaves no small last batch (a multiple of the batch size).",
                ExitCodes.Usage);
        }
    }

    /// <summary>Ranks other than 0: receive, load the data, then step with rank 0 until the run ends.</summary>
    public static int RunReplica(TrainRequest req, HostContext ctx)
    {
        var world = ctx.World;
        var header = JsonSerializer.Deserialize<Header>(world.Broadcast(null))
            ?? throw new InvalidOperationException("rank 0 sent no settings");
        var config = RunConfig.FromJson(header.Config, "the settings rank 0 sent");
        if (req.IsGiven("dataDir"))
        {
            config.DataDir = ctx.Resolve(req.Settings.DataDir);
        }

        world.SyncBatchNorm = header.SyncBatchNorm;
        Engine.ConfigureCpu(config.Threads);
        var fresh = GanTrainer.Create(config);
        using var data = TrainCommand.LoadData(config, ctx);
        var source = TrainCommand.LoadSource(config, data, fresh.Model, ctx);
        if (source.Count != header.Count)
        {
            throw new UserError(
                $"rank {world.Rank} has {source.Count:N0} training examples (data in {config.DataDir}), rank 0 has {header.Count:N0}: every rank needs the same data.");
        }

        var state = World.Unpack(fresh.ExportState(), world.Broadcast(null));
        var trainer = GanTrainer.Restore(config, state);
        world.HostNames(); // rank 0 gathers the machine names for its header
        return Loop(world, config, source, trainer, header.Epoch, header.Step);
    }

    /// <summary>TrainLoop's iteration without its files: the same order, the same collectives.</summary>
    private static int Loop(World world, TrainOptions config, BatchSource data, GanTrainer trainer, int epoch, int step)
    {
        var n = data.Count;
        var batch = config.BatchSize;
        var stepsPerEpoch = (n + batch - 1) / batch;
        var buffer = new float[world.Slice(batch).Count * data.ImageSize];
        for (; epoch < config.Epochs; epoch++, step = 0)
        {
            var order = RunRandom.Permutation(n, config.Seed, epoch);
            for (; step < stepsPerEpoch; step++)
            {
                // rank 0 says whether it was interrupted (it saves the checkpoint)
                if (world.Any(false))
                {
                    return ExitCodes.Interrupted;
                }

                var count = Math.Min(batch, n - (step * batch));
                var (offset, local) = world.Slice(count);
                var images = local * data.ImageSize == buffer.Length ? buffer : new float[local * data.ImageSize];
                data.Fill(order.AsSpan((step * batch) + offset, local), images);
                world.Step(trainer, images, local, offset, count, epoch);
            }
        }

        return ExitCodes.Ok;
    }
}
