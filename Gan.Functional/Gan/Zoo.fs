namespace Gan.Functional.Gan

open Gan.Functional
open Gan.Functional.Nn

/// The range of pixel values a generator produces, which the data must be scaled to.
type PixelRange =
    /// tanh output: data scaled as (x − 127.5)/127.5.
    | MinusOneToOne
    /// sigmoid output: data scaled as x/255.
    | ZeroToOne

/// Training settings a seed model comes with (from SEEDS.md), used as defaults.
type ModelDefaults = {
    BatchSize: int
    Lr: float
    /// The generator's learning rate is Lr × this (S1 trains G at 5×).
    GLrScale: float
    Beta1: float
    /// The seed's full schedule.
    Epochs: int
    /// Epochs of a first look when none are asked for: the model's samples become legible in
    /// minutes on 2 cores (docs/quality.md has the measurements).
    QuickEpochs: int
    CheckpointEvery: int
    /// Epochs at which the learning rate is halved (S3: 10, 20, 25); empty for none.
    LrDecayEpochs: int list
    /// Whether the seed updates G through D before D's update (S1: one gradient tape).
    SimultaneousUpdates: bool
}

/// A generator/discriminator pair with what is needed to train and sample it. The
/// discriminator returns one logit per example ([N, 1]); probabilities are σ(logit).
type GanModel = {
    Name: string
    Summary: string
    NoiseDim: int
    /// [C, H, W] of one generated image.
    ImageShape: int[]
    Range: PixelRange
    Generator: Layer
    Discriminator: Layer
    Defaults: ModelDefaults
}

/// What `train` runs when no model is named: a seed model with settings that show a working GAN
/// within minutes on 2 cores (docs/quality.md, "The first run", has the measurements).
type FirstRun = {
    Model: string
    Epochs: int
    /// Both networks' learning rate.
    Lr: float
    /// Decay of the EMA of G's weights that the samples and metrics use.
    EmaDecay: float
}

/// The five seed models of SEEDS.md and two MLP GANs for 2-D mixtures, by name.
module Zoo =

    let private gan lr = {
        BatchSize = 64
        Lr = lr
        GLrScale = 1.0
        Beta1 = 0.5
        Epochs = 20
        QuickEpochs = 2
        CheckpointEvery = 5
        LrDecayEpochs = []
        SimultaneousUpdates = false
    }

    /// S1: the vanilla MLP GAN on MNIST (GAN-01).
    let mlp =
        let l = Layers.linear

        {
            Name = "mlp"
            Summary = "S1 vanilla MLP GAN (MNIST 28x28, z 100)"
            NoiseDim = 100
            ImageShape = [| 1; 28; 28 |]
            Range = MinusOneToOne
            Generator =
                Layer.sequential [
                    l 100 128
                    Layers.relu
                    l 128 256
                    Layers.relu
                    l 256 512
                    Layers.relu
                    l 512 784
                    Layers.tanh
                    Layers.unflatten [| 1; 28; 28 |]
                ]
            Discriminator =
                Layer.sequential [
                    Layers.flatten
                    l 784 512
                    Layers.relu
                    l 512 256
                    Layers.relu
                    l 256 128
                    Layers.relu
                    l 128 1
                ]
            Defaults = {
                BatchSize = 256
                Lr = 2e-4
                GLrScale = 5.0
                Beta1 = 0.5
                Epochs = 120
                QuickEpochs = 10
                CheckpointEvery = 15
                LrDecayEpochs = []
                SimultaneousUpdates = true
            }
        }

    /// S2: the Keras DCGAN on MNIST with nearest upsampling. The article's final ReLU is tanh
    /// here (ReLU cannot produce the negative half of [−1, 1] data).
    let dcgan28 =
        let bn c =
            Normalization.batchNormWith (Normalization.kerasBatchNormConfig c 0.8 1e-3)

        let conv i o s = Layers.conv2d i o 3 s Same
        let lrelu = Layers.leakyRelu 0.2

        {
            Name = "dcgan28"
            Summary = "S2 Keras DCGAN with upsampling (MNIST 28x28, z 100)"
            NoiseDim = 100
            ImageShape = [| 1; 28; 28 |]
            Range = MinusOneToOne
            Generator =
                Layer.sequential [
                    Layers.linear 100 (128 * 7 * 7)
                    Layers.relu
                    Layers.unflatten [| 128; 7; 7 |]
                    Layers.upsampleNearest 2
                    conv 128 128 1
                    Layers.relu
                    bn 128
                    Layers.upsampleNearest 2
                    conv 128 64 1
                    Layers.relu
                    bn 64
                    conv 64 1 1
                    Layers.tanh
                ]
            Discriminator =
                Layer.sequential [
                    conv 1 32 2
                    lrelu
                    Layers.dropout 0.25
                    conv 32 64 2
                    Layers.zeroPad2d 0 1 0 1
                    bn 64
                    lrelu
                    Layers.dropout 0.25
                    conv 64 128 2
                    bn 128
                    lrelu
                    Layers.dropout 0.25
                    conv 128 256 1
                    bn 256
                    lrelu
                    Layers.dropout 0.25
                    Layers.flatten
                    Layers.linear (256 * 4 * 4) 1
                ]
            Defaults = gan 2e-4
        }

    /// S3: the standard 64×64 DCGAN (Radford et al.) for `channels`-channel images: no biases,
    /// weights N(0, 0.02), BatchNorm scale N(1, 0.02).
    let dcgan64With (channels: int) =
        let w = Normal(0.0, 0.02)

        let bn c =
            Normalization.batchNormWith {
                Normalization.batchNormConfig c with
                    ScaleInit = Normal(1.0, 0.02)
            }

        let up i o s p =
            Layers.convTranspose2dWith {
                Layers.convConfig i o 4 with
                    Stride = s
                    Padding = Pad p
                    Bias = false
                    WeightInit = w
            }

        let down i o s p =
            Layers.conv2dWith {
                Layers.convConfig i o 4 with
                    Stride = s
                    Padding = Pad p
                    Bias = false
                    WeightInit = w
            }

        let lrelu = Layers.leakyRelu 0.2

        {
            Name = "dcgan64"
            Summary = sprintf "S3 DCGAN 64x64 (%d channel%s, z 100)" channels (if channels = 1 then "" else "s")
            NoiseDim = 100
            ImageShape = [| channels; 64; 64 |]
            Range = MinusOneToOne
            Generator =
                Layer.sequential [
                    Layers.unflatten [| 100; 1; 1 |]
                    up 100 512 1 0
                    bn 512
                    Layers.relu
                    up 512 256 2 1
                    bn 256
                    Layers.relu
                    up 256 128 2 1
                    bn 128
                    Layers.relu
                    up 128 64 2 1
                    bn 64
                    Layers.relu
                    up 64 channels 2 1
                    Layers.tanh
                ]
            Discriminator =
                Layer.sequential [
                    down channels 64 2 1
                    lrelu
                    down 64 128 2 1
                    bn 128
                    lrelu
                    down 128 256 2 1
                    bn 256
                    lrelu
                    down 256 512 2 1
                    bn 512
                    lrelu
                    down 512 1 1 0
                    Layers.flatten
                ]
            Defaults = {
                gan 2e-4 with
                    Epochs = 30
                    QuickEpochs = 1
                    LrDecayEpochs = [ 10; 20; 25 ]
            }
        }

    /// S3 in colour.
    let dcgan64 = dcgan64With 3

    /// S4: the InfoGAN-style MNIST GAN with minibatch discrimination (z 62, sigmoid output).
    let mbd28 =
        let n = Normal(0.0, 0.02)
        let zero = Constant 0.0

        let bn c =
            Normalization.batchNormWith (Normalization.kerasBatchNormConfig c 0.9 1e-5)

        let lin i o =
            Layers.linearWith {
                Layers.linearConfig i o with
                    WeightInit = n
                    BiasInit = zero
            }

        let convT i o =
            Layers.convTranspose2dWith {
                Layers.convConfig i o 4 with
                    Stride = 2
                    Padding = Same
                    WeightInit = n
                    BiasInit = zero
            }

        let conv i o =
            Layers.conv2dWith {
                Layers.convConfig i o 4 with
                    Stride = 2
                    Padding = Same
                    WeightInit = TruncatedNormal 0.02
                    BiasInit = zero
            }

        let lrelu = Layers.leakyRelu 0.2

        {
            Name = "mbd28"
            Summary = "S4 InfoGAN-style GAN with minibatch discrimination (MNIST 28x28, z 62)"
            NoiseDim = 62
            ImageShape = [| 1; 28; 28 |]
            Range = ZeroToOne
            Generator =
                Layer.sequential [
                    lin 62 1024
                    bn 1024
                    Layers.relu
                    lin 1024 (128 * 7 * 7)
                    bn (128 * 7 * 7)
                    Layers.relu
                    Layers.unflatten [| 128; 7; 7 |]
                    convT 128 64
                    bn 64
                    Layers.relu
                    convT 64 1
                    Layers.sigmoid
                ]
            Discriminator =
                Layer.sequential [
                    conv 1 64
                    lrelu
                    conv 64 128
                    bn 128
                    lrelu
                    Layers.flatten
                    MinibatchDiscrimination.layer (128 * 7 * 7) 32 32
                    lin (128 * 7 * 7 + 32) 1024
                    bn 1024
                    lrelu
                    lin 1024 1
                ]
            Defaults = { gan 2e-4 with Epochs = 25 }
        }

    /// S5: the subclassed-model GAN for 64×64 colour images with 'valid' convolutions.
    /// LeakyReLU slope 0.2; BatchNorm with Keras's defaults (momentum 0.99, eps 1e-3).
    let valid64 =
        let bn c =
            Normalization.batchNormWith (Normalization.kerasBatchNormConfig c 0.99 1e-3)

        let lrelu = Layers.leakyRelu 0.2

        {
            Name = "valid64"
            Summary = "S5 subclassed GAN, 'valid' convolutions (64x64 colour, z 100)"
            NoiseDim = 100
            ImageShape = [| 3; 64; 64 |]
            Range = MinusOneToOne
            Generator =
                Layer.sequential [
                    Layers.linear 100 (3 * 3 * 512)
                    Layers.unflatten [| 512; 3; 3 |]
                    lrelu
                    Layers.convTranspose2d 512 256 3 3 Valid
                    bn 256
                    Layers.convTranspose2d 256 128 5 2 Valid
                    bn 128
                    Layers.convTranspose2d 128 3 4 3 Valid
                    Layers.tanh
                ]
            Discriminator =
                Layer.sequential [
                    Layers.conv2d 3 64 5 3 Valid
                    lrelu
                    Layers.conv2d 64 128 5 3 Valid
                    bn 128
                    lrelu
                    Layers.conv2d 128 256 5 3 Valid
                    bn 256
                    lrelu
                    Layers.flatten
                    Layers.linear 256 1
                ]
            Defaults = { gan 2e-4 with QuickEpochs = 1 }
        }

    /// An MLP GAN for 2-D points (the Gaussian mixtures ring8 and grid25), in the spirit of
    /// VEEGAN's and PacGAN's 2-D experiments. G: z [N, noiseDim] → `layers` × (Linear(width) →
    /// ReLU) → Linear(2), linear output [N, 2] in the data's raw coordinates (so `Range` does not
    /// apply; it says MinusOneToOne only to fill the field). D: `layers` × (Linear(width) →
    /// LeakyReLU(0.2)) → [with `minibatchDiscrimination`: minibatch discrimination, 16 kernels
    /// of 4 dimensions, its 16 features divided by N − 1] → Linear(1), one logit per point.
    /// ImageShape is [| 2 |]. Defaults: batches of 100, Adam(β1 0.5) at 1e-3 for both networks,
    /// 20 epochs. Raises ArgumentException unless noiseDim, width and layers are positive.
    let toy2dWith (noiseDim: int) (width: int) (layers: int) (minibatchDiscrimination: bool) : GanModel =
        if noiseDim < 1 || width < 1 || layers < 1 then
            invalidArg
                "width"
                (sprintf "toy2dWith: noiseDim, width and layers must be positive, got %d, %d, %d" noiseDim width layers)

        let hidden (first: int) (activation: Layer) = [
            for i in 0 .. layers - 1 do
                Layers.linear (if i = 0 then first else width) width
                activation
        ]

        let kernels, kernelDim = 16, 4

        let head =
            if minibatchDiscrimination then
                [
                    MinibatchDiscrimination.layer width kernels kernelDim
                    // o_b sums over the N − 1 other points: divided by N − 1 it is O(1), as the
                    // features beside it are, whatever the batch size
                    Layer.ofFunction "MeanMinibatchFeatures" (fun x ->
                        let n = (Tensor.shape x).[0]
                        let o = Tensor.narrow 1 0 kernels x / float (max 1 (n - 1))
                        Tensor.concat 1 [ o; Tensor.narrow 1 kernels width x ])
                    Layers.linear (width + kernels) 1
                ]
            else
                [ Layers.linear width 1 ]

        {
            Name = (if minibatchDiscrimination then "toy2d-mbd" else "toy2d")
            Summary =
                sprintf
                    "MLP GAN for 2-D mixtures ring8/grid25 (z %d, %dx%d hidden%s)"
                    noiseDim
                    layers
                    width
                    (if minibatchDiscrimination then
                         ", minibatch discrimination in D"
                     else
                         "")
            NoiseDim = noiseDim
            ImageShape = [| 2 |]
            Range = MinusOneToOne
            Generator = Layer.sequential (hidden noiseDim Layers.relu @ [ Layers.linear width 2 ])
            Discriminator = Layer.sequential (hidden 2 (Layers.leakyRelu 0.2) @ head)
            Defaults = {
                gan 1e-3 with
                    BatchSize = 100
                    QuickEpochs = 10
            }
        }

    /// toy2d: <see cref="toy2dWith"/> with z of 2 dimensions (PacGAN's) and 3 hidden layers of
    /// 128 units, no minibatch discrimination.
    let toy2d = toy2dWith 2 128 3 false

    /// toy2d-mbd: <see cref="toy2d"/> with minibatch discrimination in D.
    let toy2dMbd = toy2dWith 2 128 3 true

    /// The first run: S4 (`mbd28`, the seed that learns fastest on MNIST) for one epoch, at a
    /// higher learning rate than its seed recipe's 2e-4 and with an EMA of G (a short one: a long
    /// EMA still remembers the initial weights after one epoch).
    let firstRun = {
        Model = "mbd28"
        Epochs = 1
        Lr = 5e-4
        EmaDecay = 0.99
    }

    /// Every model's name: the five seed models, then the two 2-D models.
    let names = [ "mlp"; "dcgan28"; "dcgan64"; "mbd28"; "valid64"; "toy2d"; "toy2d-mbd" ]

    /// A model by name; `channels` applies to dcgan64 (1 or 3). Unknown names raise an
    /// ArgumentException listing the known ones.
    let byName (name: string) (channels: int) =
        match name with
        | "mlp" -> mlp
        | "dcgan28" -> dcgan28
        | "dcgan64" -> dcgan64With channels
        | "mbd28" -> mbd28
        | "valid64" -> valid64
        | "toy2d" -> toy2d
        | "toy2d-mbd" -> toy2dMbd
        | other -> invalidArg "name" (sprintf "unknown model '%s'; known models: %s" other (String.concat ", " names))
