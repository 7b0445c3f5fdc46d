namespace Gan.Functional.Nn

open Gan.Functional

/// Spatial padding of a convolution.
type Padding =
    /// TensorFlow/Keras 'same': output = ⌈input / stride⌉, any odd pixel of padding going to the
    /// bottom/right; resolved per input size.
    | Same
    /// No padding (Keras 'valid').
    | Valid
    /// The same number of zeros on every side (PyTorch's `padding=p`).
    | Pad of int
    /// Explicit top, bottom, left, right.
    | PadAsym of top: int * bottom: int * left: int * right: int

/// Settings of a Linear layer: y = x·Wᵀ + b with W [Out, In].
type LinearConfig = {
    In: int
    Out: int
    Bias: bool
    WeightInit: Initializer
    BiasInit: Initializer
}

/// Settings of a Conv2d layer (weights [Out, In/Groups, Kernel, Kernel]) or a ConvTranspose2d
/// layer (weights [In, Out/Groups, Kernel, Kernel], PyTorch's layouts).
type ConvConfig = {
    In: int
    Out: int
    Kernel: int
    Stride: int
    Padding: Padding
    /// Extra rows/columns at the bottom/right of a transposed convolution's output.
    OutputPadding: int
    Dilation: int
    Groups: int
    Bias: bool
    WeightInit: Initializer
    BiasInit: Initializer
}

/// The basic layers. Each returns a <see cref="T:Gan.Functional.Nn.Layer"/>; parameter names
/// and layouts follow the equivalent torch.nn module.
module Layers =

    let private param (vars: Variables) (layerName: string) (name: string) =
        match Map.tryFind name vars.Params with
        | Some p -> p
        | None ->
            invalidArg
                "vars"
                (sprintf
                    "%s: parameter '%s' is missing (have: %s)"
                    layerName
                    name
                    (vars.Params |> Map.keys |> String.concat ", "))

    /// "weight" of `shape` and, when `bias`, "bias" [outCount], drawn with the same fan-in.
    let private weightAndBias
        (wInit: Initializer)
        (bInit: Initializer)
        (bias: bool)
        (fanIn: int)
        (shape: int[])
        (outCount: int)
        (key: Key)
        =
        let kw, kb = Random.split key

        let ps =
            [ "weight", Init.draw wInit kw fanIn shape ]
            @ (if bias then
                   [ "bias", Init.draw bInit kb fanIn [| outCount |] ]
               else
                   [])

        {
            Params = Map.ofList ps
            State = Map.empty
        }

    /// Checks an NCHW input with `channels` channels.
    let private requireImages (describe: string) (channels: int) (x: Tensor) =
        let s = Tensor.shape x

        if s.Length <> 4 || s.[1] <> channels then
            Shape.fail describe (sprintf "expected input [N, %d, H, W], got %s" channels (Shape.show s))

        s

    /// Linear settings with PyTorch's default initialisation and a bias.
    let linearConfig (inFeatures: int) (outFeatures: int) = {
        In = inFeatures
        Out = outFeatures
        Bias = true
        WeightInit = TorchDefault
        BiasInit = TorchDefault
    }

    /// y = x·Wᵀ + b; x [N, In] → [N, Out]. Parameters "weight" [Out, In] and "bias" [Out].
    let linearWith (c: LinearConfig) =
        let describe =
            sprintf "Linear(%d → %d%s)" c.In c.Out (if c.Bias then "" else ", no bias")

        {
            Describe = describe
            Init = weightAndBias c.WeightInit c.BiasInit c.Bias c.In [| c.Out; c.In |] c.Out
            Apply =
                fun vars _ x ->
                    let s = Tensor.shape x

                    if s.Length < 1 || s.[s.Length - 1] <> c.In then
                        Shape.fail describe (sprintf "expected input [..., %d], got %s" c.In (Shape.show s))

                    let b = if c.Bias then Some(param vars describe "bias") else None
                    Tensor.linear x (param vars describe "weight") b, Map.empty
        }

    /// Linear(in → out) with PyTorch's defaults.
    let linear (inFeatures: int) (outFeatures: int) =
        linearWith (linearConfig inFeatures outFeatures)

    /// Conv settings: stride 1, no padding, bias, PyTorch's default initialisation.
    let convConfig (inChannels: int) (outChannels: int) (kernel: int) = {
        In = inChannels
        Out = outChannels
        Kernel = kernel
        Stride = 1
        Padding = Valid
        OutputPadding = 0
        Dilation = 1
        Groups = 1
        Bias = true
        WeightInit = TorchDefault
        BiasInit = TorchDefault
    }

    let private samePads (n: int) (k: int) (s: int) (d: int) =
        let outN = (n + s - 1) / s
        let total = max 0 ((outN - 1) * s + (k - 1) * d + 1 - n)
        total / 2, total - total / 2

    /// The ConvSpec of a forward convolution on an input of h×w.
    let internal convSpec (c: ConvConfig) (h: int) (w: int) =
        let t, b, l, r =
            match c.Padding with
            | Valid -> 0, 0, 0, 0
            | Pad p -> p, p, p, p
            | PadAsym(t, b, l, r) -> t, b, l, r
            | Same ->
                let t, b = samePads h c.Kernel c.Stride c.Dilation
                let l, r = samePads w c.Kernel c.Stride c.Dilation
                t, b, l, r

        {
            StrideH = c.Stride
            StrideW = c.Stride
            PadTop = t
            PadBottom = b
            PadLeft = l
            PadRight = r
            DilationH = c.Dilation
            DilationW = c.Dilation
            Groups = c.Groups
        }

    let private addChannelBias (vars: Variables) describe (c: ConvConfig) (y: Tensor) =
        if c.Bias then
            y + Tensor.reshape [| 1; c.Out; 1; 1 |] (param vars describe "bias")
        else
            y

    /// 2-D convolution: x [N, In, H, W] → [N, Out, H', W']. Parameters "weight"
    /// [Out, In/Groups, k, k] and "bias" [Out].
    let conv2dWith (c: ConvConfig) =
        let describe =
            sprintf "Conv2d(%d → %d, k%d s%d %A)" c.In c.Out c.Kernel c.Stride c.Padding

        let fanIn = c.In / c.Groups * c.Kernel * c.Kernel

        {
            Describe = describe
            Init =
                weightAndBias
                    c.WeightInit
                    c.BiasInit
                    c.Bias
                    fanIn
                    [| c.Out; c.In / c.Groups; c.Kernel; c.Kernel |]
                    c.Out
            Apply =
                fun vars _ x ->
                    let s = requireImages describe c.In x

                    let y = Tensor.conv2d (convSpec c s.[2] s.[3]) x (param vars describe "weight")
                    addChannelBias vars describe c y, Map.empty
        }

    /// Conv2d(in → out, kernel) with stride and padding.
    let conv2d (inChannels: int) (outChannels: int) (kernel: int) (stride: int) (padding: Padding) =
        conv2dWith {
            convConfig inChannels outChannels kernel with
                Stride = stride
                Padding = padding
        }

    /// The padding and output padding of a transposed convolution on an input of n pixels.
    let private transposePads (c: ConvConfig) =
        match c.Padding with
        | Valid -> (0, 0), c.OutputPadding
        | Pad p -> (p, p), c.OutputPadding
        | PadAsym(t, b, _, _) -> (t, b), c.OutputPadding
        | Same ->
            // Keras 'same' for a transposed convolution: output = input · stride.
            let total = c.Dilation * (c.Kernel - 1) + 1 - c.Stride

            if total >= 0 then
                (total / 2, total - total / 2), 0
            else
                (0, 0), -total

    /// Transposed 2-D convolution: x [N, In, H, W] → [N, Out, H', W'] with
    /// H' = (H − 1)·stride − pads + dilation·(k − 1) + outputPadding + 1 ('same': H·stride).
    /// Parameters "weight" [In, Out/Groups, k, k] and "bias" [Out].
    let convTranspose2dWith (c: ConvConfig) =
        let describe =
            sprintf "ConvTranspose2d(%d → %d, k%d s%d %A)" c.In c.Out c.Kernel c.Stride c.Padding
        // PyTorch computes the fan-in of a transposed weight from its dimension 1.
        let fanIn = c.Out / c.Groups * c.Kernel * c.Kernel
        let (pt, pb), op = transposePads c

        let pl, pr =
            match c.Padding with
            | PadAsym(_, _, l, r) -> l, r
            | _ -> pt, pb

        let spec = {
            StrideH = c.Stride
            StrideW = c.Stride
            PadTop = pt
            PadBottom = pb
            PadLeft = pl
            PadRight = pr
            DilationH = c.Dilation
            DilationW = c.Dilation
            Groups = c.Groups
        }

        {
            Describe = describe
            Init =
                weightAndBias
                    c.WeightInit
                    c.BiasInit
                    c.Bias
                    fanIn
                    [| c.In; c.Out / c.Groups; c.Kernel; c.Kernel |]
                    c.Out
            Apply =
                fun vars _ x ->
                    requireImages describe c.In x |> ignore

                    let y = Tensor.convTranspose2d spec op op x (param vars describe "weight")
                    addChannelBias vars describe c y, Map.empty
        }

    /// ConvTranspose2d(in → out, kernel) with stride and padding.
    let convTranspose2d (inChannels: int) (outChannels: int) (kernel: int) (stride: int) (padding: Padding) =
        convTranspose2dWith {
            convConfig inChannels outChannels kernel with
                Stride = stride
                Padding = padding
        }

    /// max(x, 0).
    let relu = Layer.ofFunction "ReLU" Tensor.relu

    /// x for x > 0, αx otherwise.
    let leakyRelu (alpha: float) =
        Layer.ofFunction (sprintf "LeakyReLU(%g)" alpha) (Tensor.leakyRelu alpha)

    /// tanh x.
    let tanh = Layer.ofFunction "Tanh" Tensor.tanh

    /// 1 / (1 + e⁻ˣ).
    let sigmoid = Layer.ofFunction "Sigmoid" Tensor.sigmoid

    /// [N, …] → [N, ∏…].
    let flatten = Layer.ofFunction "Flatten" (Tensor.flatten 1)

    /// [N, ∏shape] → [N, shape…].
    let unflatten (shape: int[]) =
        Layer.ofFunction (sprintf "Unflatten(%s)" (Shape.show shape)) (fun x ->
            Tensor.reshape (Array.append [| (Tensor.shape x).[0] |] shape) x)

    /// Nearest-neighbour upsampling of H and W by an integer factor.
    let upsampleNearest (scale: int) =
        Layer.ofFunction (sprintf "Upsample(×%d, nearest)" scale) (Tensor.upsampleNearest scale scale)

    /// Zero padding of H and W: PyTorch's ZeroPad2d((left, right, top, bottom)).
    let zeroPad2d (left: int) (right: int) (top: int) (bottom: int) =
        Layer.ofFunction
            (sprintf "ZeroPad2d(%d, %d, %d, %d)" left right top bottom)
            (Tensor.pad2d left right top bottom)

    /// Dropout: in train mode zeroes each element with probability p and scales the rest by
    /// 1/(1 − p), from the context's key; the identity in eval mode. In a data-parallel step the
    /// mask is drawn for the whole batch and this rank takes its rows, so a row's mask depends on
    /// its global index only (N ranks drop what one process drops).
    let dropout (p: float) =
        if p < 0.0 || p >= 1.0 then
            invalidArg "p" (sprintf "dropout probability must be in [0, 1), got %g" p)

        {
            Describe = sprintf "Dropout(%g)" p
            Init = fun _ -> Layer.emptyVariables
            Apply =
                fun _ ctx x ->
                    match ctx.Mode with
                    | Eval -> x, Map.empty
                    | Train when p = 0.0 -> x, Map.empty
                    | Train ->
                        let s = Tensor.shape x

                        // in a data-parallel step, this rank's rows of the whole batch's mask
                        let mask =
                            match ctx.Shard with
                            | Some sh when sh.Total <> s.[0] ->
                                let whole = Array.copy s
                                whole.[0] <- sh.Total
                                Tensor.narrow 0 sh.Offset s.[0] (Tensor.bernoulli ctx.Key (1.0 - p) whole)
                            | _ -> Tensor.bernoulli ctx.Key (1.0 - p) s

                        let keep = Tensor.cast (Tensor.dtype x) mask

                        x * (keep * (1.0 / (1.0 - p))), Map.empty
        }

    /// A lookup table: integer indices [N] (stored as floats) → rows [N, dim] of "weight"
    /// [count, dim], drawn from N(0, 1) as PyTorch's Embedding.
    let embedding (count: int) (dim: int) =
        let describe = sprintf "Embedding(%d, %d)" count dim

        {
            Describe = describe
            Init =
                fun key -> {
                    Params = Map.ofList [ "weight", Tensor.randn key [| count; dim |] ]
                    State = Map.empty
                }
            Apply =
                fun vars _ x ->
                    let idx = Tensor.toArray64 x |> Array.map (fun v -> int (round v))

                    for i in idx do
                        if i < 0 || i >= count then
                            Shape.fail describe (sprintf "index %d is outside [0, %d)" i count)

                    let rows = Tensor.indexSelect 0 idx (param vars describe "weight")
                    Tensor.reshape (Array.append (Tensor.shape x) [| dim |]) rows, Map.empty
        }
