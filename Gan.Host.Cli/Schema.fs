namespace Gan.Host.Cli

open Argu

/// `train`: trains a zoo model. Every flag is optional; a model's defaults come from SEEDS.md.
[<RequireQualifiedAccess>]
type TrainArgs =
    | [<Unique>] Model of name: string
    | [<Unique>] Dataset of spec: string
    | [<Unique>] Epochs of count: int
    | [<Unique>] Batch_Size of count: int
    | [<Unique>] Lr of rate: float
    | [<Unique>] G_Lr_Scale of factor: float
    | [<Unique>] Beta1 of beta: float
    | [<Unique>] Noise_Dim of size: int
    | [<Unique>] Loss of name: string
    | [<Unique>] D_Steps of count: int
    | [<Unique>] Gp_Weight of weight: float
    | [<Unique>] R1_Weight of weight: float
    | [<Unique>] Ema of decay: float
    | [<Unique>] Lr_Decay_Epochs of epochs: string
    | [<Unique>] Image_Size of pixels: int
    | [<Unique>] Channels of count: int
    | [<Unique>] Bbox of file: string
    | [<Unique>] Train_Size of count: int
    | [<Unique>] Checkpoint_Every of epochs: int
    | [<Unique>] Keep_Checkpoints of count: int
    | [<Unique>] Seed of seed: uint64
    | [<Unique>] Threads of count: int
    | [<Unique>] Device of name: string
    | [<Unique>] Data_Dir of dir: string
    | [<Unique>] Out of dir: string
    | [<Unique>] Resume
    | [<Unique>] Eval_Every of epochs: int
    | [<Unique>] Eval_Samples of count: int
    | [<Unique>] No_Eval
    | [<Unique>] Sync_Batchnorm

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Model _ ->
                "zoo model: mlp, dcgan28, dcgan64, mbd28, valid64; toy2d (default on ring8/grid25), toy2d-mbd (see the models command). Without it: the first run, mbd28 for 1 epoch at lr 5e-4 with an EMA of G (0.99)."
            | Dataset _ ->
                "mnist (default), fashion-mnist, stacked-mnist (3 digits as 3 channels), emoji (3,786 Noto emoji, 64x64 colour, fetched with npm), ring8 or grid25 (2-D Gaussian mixtures, for toy2d/toy2d-mbd), or images:DIR (a folder tree of PNG/JPEG files)."
            | Epochs _ ->
                "total epochs of the run (default: the model's quick look of a few minutes, see the models command; 1 for the first run; the seed's full schedule is the model's default, e.g. --epochs 120 for mlp). With --resume: the new total."
            | Batch_Size _ -> "examples per step (model default: mlp 256, mbd28 64, ...)."
            | Lr _ -> "the discriminator's learning rate (model default, 2e-4)."
            | G_Lr_Scale _ -> "the generator's learning rate is lr times this (mlp: 5)."
            | Beta1 _ -> "Adam beta1 for both networks, in [0, 1) (default 0.5)."
            | Noise_Dim _ ->
                "length of z; the zoo fixes it per model (mlp 100, mbd28 62), so only that value is accepted."
            | Loss _ -> "GAN loss: bce (non-saturating, default), minimax, wgan, lsgan, hinge, ragan."
            | D_Steps _ -> "discriminator steps per generator step (default 1)."
            | Gp_Weight _ -> "WGAN-GP gradient-penalty weight (default 0: off)."
            | R1_Weight _ -> "R1 penalty weight on real data (default 0: off)."
            | Ema _ -> "decay of an exponential moving average of G's weights, in [0, 1) (default 0: off)."
            | Lr_Decay_Epochs _ ->
                "comma-separated epochs at which both learning rates halve, e.g. 10,20,25 (dcgan64's default), or none."
            | Image_Size _ ->
                "image side in pixels; the zoo fixes it per model (28 or 64), so only that value is accepted."
            | Channels _ -> "1 (grey) or 3 (colour); only dcgan64 takes either (default: 1 on MNIST, 3 on images)."
            | Bbox _ -> "with images:DIR, crop each image by CelebA's bounding-box list (list_bbox_celeba.txt)."
            | Train_Size _ -> "use only the first N training images (default: all)."
            | Checkpoint_Every _ ->
                "write a checkpoint every N epochs (model default, 15 for mlp); one is always written at the end."
            | Keep_Checkpoints _ -> "how many checkpoints to keep (default 3)."
            | Seed _ -> "seed of every random draw: initial weights, noise, shuffling (default 0)."
            | Threads _ -> "CPU worker threads (default 0: one per core)."
            | Device _ ->
                "where the kernels run: auto (default: a CUDA GPU when one works, else cpu), cpu, cuda:N, opencl:N or ilgpu-cpu (ILGPU's CPU accelerator, for tests); the devices command lists what exists."
            | Data_Dir _ ->
                "where datasets live (default: gan-functional/<dataset> under the user's cache directory, e.g. ~/.cache)."
            | Out _ -> "run directory (default: runs/<model>-<dataset>-<time> under the current directory)."
            | Resume -> "continue the run in --out (default: the newest run under runs/) from its last checkpoint."
            | Eval_Every _ ->
                "every N epochs (and after the last), score the generator as evaluate does and append the metrics to metrics.csv (default 0: after the last epoch only, on datasets that have metrics)."
            | Eval_Samples _ ->
                "samples scored after an epoch (default 5000 images, 2500 points for ring8/grid25, 26000 for stacked-mnist)."
            | No_Eval -> "skip the metrics, even after the last epoch."
            | Sync_Batchnorm ->
                "under mpirun: BatchNorm uses the whole global batch's statistics (one allreduce per layer), so N ranks train as one process does; default: each rank's own rows (see docs/distributed.md)."

/// `sample`: renders a grid of generated images from a run or a checkpoint.
[<RequireQualifiedAccess>]
type SampleArgs =
    | [<Unique>] Run of dir: string
    | [<Unique>] Checkpoint of file: string
    | [<Unique>] Count of count: int
    | [<Unique>] Out of file: string
    | [<Unique>] Seed of seed: uint64
    | [<Unique>] No_Ema
    | [<Unique>] Threads of count: int
    | [<Unique>] Device of name: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Run _ -> "a run directory; its newest checkpoint is used."
            | Checkpoint _ -> "a checkpoint file (.safetensors) written by train."
            | Count _ -> "how many images (default 16), laid out in a near-square grid."
            | Out _ -> "the PNG file to write (required)."
            | Seed _ -> "seed of the noise (default 0)."
            | No_Ema -> "use the trained generator even when the checkpoint keeps EMA weights."
            | Threads _ -> "CPU worker threads (default 0: one per core)."
            | Device _ ->
                "where the kernels run: auto (default: a CUDA GPU when one works, else cpu), cpu, cuda:N, opencl:N or ilgpu-cpu (ILGPU's CPU accelerator, for tests); the devices command lists what exists."

/// `models`: lists the zoo.
[<RequireQualifiedAccess>]
type ModelsArgs =
    | [<Unique>] Channels of count: int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Channels _ -> "channels of dcgan64 for the counts (default 3)."

/// `devices`: lists what can run here.
[<RequireQualifiedAccess>]
type DevicesArgs =
    | [<Unique>] Threads of count: int

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Threads _ -> "CPU worker threads to configure (default 0: one per core)."

/// `bench`: times full training steps of zoo models on random data.
[<RequireQualifiedAccess>]
type BenchArgs =
    | [<Unique>] Model of name: string
    | [<Unique>] Batch of count: int
    | [<Unique>] Steps of count: int
    | [<Unique>] Warmup of count: int
    | [<Unique>] Threads of count: int
    | [<Unique>] Device of name: string
    | [<Unique>] Profile
    | [<Unique>] Profile_Shapes
    | [<Unique>] Sync_Batchnorm
    | [<Unique>] Check
    | [<Unique>] Allreduce
    | [<Unique>] Ab of overrides: string

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Ab _ ->
                "A/B: alternate steps between the environment's CPU knobs and these GAN_* overrides (NAME=VALUE,...), on one model; prints both medians and the median ratio of neighbouring steps."
            | Model _ -> "zoo model to time, or all (each in its own process) (default all)."
            | Batch _ -> "examples per step (default: 256 for mlp, 64 for the others)."
            | Steps _ -> "timed steps (default 10); the median and minimum are printed."
            | Warmup _ -> "untimed steps first (default 3)."
            | Threads _ -> "CPU worker threads (default 0: one per core)."
            | Device _ ->
                "where the kernels run: auto (default: a CUDA GPU when one works, else cpu), cpu, cuda:N, opencl:N or ilgpu-cpu (ILGPU's CPU accelerator, for tests); the devices command lists what exists."
            | Profile -> "also print, on stderr, where the time of a step goes, kernel by kernel."
            | Profile_Shapes -> "like --profile, with each kernel split by its operands' shapes."
            | Sync_Batchnorm -> "under mpirun: synchronised BatchNorm (as train --sync-batchnorm)."
            | Allreduce ->
                "under mpirun: time MPI_Allreduce itself on float32 buffers of 4 KB to 64 MB (one line per size) instead of training steps."
            | Check ->
                "under mpirun: also check that the ranks' weights after --steps SGD steps are identical and equal one process's on the whole batch (with --sync-batchnorm); exit 1 if not."

/// The command line of Gan.Host.
[<RequireQualifiedAccess>]
type HostArgs =
    | [<CliPrefix(CliPrefix.None)>] Train of ParseResults<TrainArgs>
    | [<CliPrefix(CliPrefix.None)>] Sample of ParseResults<SampleArgs>
    | [<CliPrefix(CliPrefix.None)>] Classifier of ParseResults<ClassifierArgs>
    | [<CliPrefix(CliPrefix.None)>] Evaluate of ParseResults<EvaluateArgs>
    | [<CliPrefix(CliPrefix.None)>] Interpolate of ParseResults<InterpolateArgs>
    | [<CliPrefix(CliPrefix.None)>] Arithmetic of ParseResults<ArithmeticArgs>
    | [<CliPrefix(CliPrefix.None)>] Report of ParseResults<ReportArgs>
    | [<CliPrefix(CliPrefix.None)>] Models of ParseResults<ModelsArgs>
    | [<CliPrefix(CliPrefix.None)>] Devices of ParseResults<DevicesArgs>
    | [<CliPrefix(CliPrefix.None)>] Bench of ParseResults<BenchArgs>

    interface IArgParserTemplate with
        member a.Usage =
            match a with
            | Train _ ->
                "train a zoo model (the default command: no arguments train the first run, mbd28 on MNIST for 1 epoch)."
            | Sample _ -> "render a PNG grid of generated images from a run or a checkpoint."
            | Classifier _ -> "(re)train the metrics' classifier backbone of mnist or fashion-mnist and cache it."
            | Evaluate _ ->
                "score a run's generator, or a folder of images: IS, FCD, KID, class coverage; mode metrics; colour: FID, KID, precision/recall, density/coverage on ImageNet ResNet-18 features."
            | Interpolate _ -> "a PNG of latent walks (linear or spherical) between random z."
            | Arithmetic _ -> "a PNG of latent vector arithmetic on chosen samples: mean(a) - mean(b) + mean(c)."
            | Report _ -> "one self-contained HTML page of a run: losses, D outputs, metrics, every epoch's samples."
            | Models _ -> "list the zoo: name, G and D parameter counts, output shape."
            | Devices _ ->
                "list what can run here: the CPU, its cores and kernels; the GPUs and other devices ILGPU finds."
            | Bench _ -> "time full training steps of zoo models on random data (one line per model)."
