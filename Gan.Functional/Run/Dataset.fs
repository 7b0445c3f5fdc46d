namespace Gan.Functional.Run

open System
open System.IO
open Gan.Functional.Eval

/// A data set a run trains on, parsed once from its name (<c>Dataset.parse</c>).
type Dataset =
    /// MNIST digits, 28×28 grey.
    | Mnist
    /// Fashion-MNIST, 28×28 grey.
    | FashionMnist
    /// Three MNIST digits as the three channels of one image (VEEGAN, PacGAN).
    | StackedMnist
    /// The Noto emoji, 64×64 colour.
    | Emoji
    /// A 2-D Gaussian mixture of <c>Mixtures</c> by name ("ring8", "grid25").
    | Mixture of name: string
    /// Every PNG/JPEG under a folder, each cropped by a CelebA bounding-box list when one is given.
    | Images of dir: string * bbox: string option

/// Names, defaults and evaluation protocol of the data sets.
[<RequireQualifiedAccess>]
module Dataset =

    /// The prefix of an image folder's name: "images:DIR".
    [<Literal>]
    let ImagesPrefix = "images:"

    /// What `--dataset` accepts, for messages.
    let known =
        "mnist, fashion-mnist, stacked-mnist, emoji (64×64 colour), ring8, grid25 (2-D mixtures), images:DIR (a folder of PNG/JPEG files)"

    /// The data set of a name (surrounding spaces ignored), or the message the command line prints.
    let parse (spec: string) : Result<Dataset, string> =
        let s = spec.Trim()

        match s with
        | "mnist" -> Ok Mnist
        | "fashion-mnist" -> Ok FashionMnist
        | "stacked-mnist" -> Ok StackedMnist
        | "emoji" -> Ok Emoji
        | m when List.contains m Mixtures.names -> Ok(Mixture m)
        | i when i.StartsWith(ImagesPrefix, StringComparison.Ordinal) ->
            if i.Length = ImagesPrefix.Length then
                Error "--dataset images:DIR needs a folder after the colon, e.g. images:/data/celeba."
            else
                Ok(Images(i.Substring ImagesPrefix.Length, None))
        | _ -> Error(sprintf "Unknown dataset '%s'; known: %s." spec known)

    /// The name `parse` reads back ("mnist", "ring8", "images:DIR"; the bounding boxes are not part of it).
    let name (d: Dataset) =
        match d with
        | Mnist -> "mnist"
        | FashionMnist -> "fashion-mnist"
        | StackedMnist -> "stacked-mnist"
        | Emoji -> "emoji"
        | Mixture m -> m
        | Images(dir, _) -> ImagesPrefix + dir

    /// The bounding-box list of an image folder, if any.
    let bbox (d: Dataset) =
        match d with
        | Images(_, b) -> b
        | _ -> None

    /// True for the 2-D mixtures.
    let isMixture (d: Dataset) =
        match d with
        | Mixture _ -> true
        | _ -> false

    /// The name in a run directory's name: the dataset's name, "images-FOLDER" for a folder.
    let label (d: Dataset) =
        match d with
        | Images(dir, _) ->
            let folder = Path.GetFileName(Path.TrimEndingDirectorySeparator dir) |> nonNull

            let safe =
                String(
                    folder.ToCharArray()
                    |> Array.map (fun c ->
                        if Char.IsAsciiLetterOrDigit c || c = '-' || c = '_' then
                            c
                        else
                            '-')
                )
                    .Trim('-')

            "images-" + (if safe.Length = 0 then "dir" else safe)
        | other -> name other

    /// The channels of a model that takes either count when none are asked for: colour data 3, grey 1.
    let defaultChannels (d: Dataset) =
        match d with
        | Images _
        | StackedMnist
        | Emoji -> 3
        | Mnist
        | FashionMnist
        | Mixture _ -> 1

    /// The folder under the cache root where the data lives by default; None where there is no
    /// default folder (Fashion-MNIST is looked for in the system's places, mixtures are drawn).
    let cacheFolder (d: Dataset) =
        match d with
        | Images _ -> Some "images"
        | Mnist
        | StackedMnist -> Some "mnist"
        | Emoji -> Some "emoji"
        | FashionMnist
        | Mixture _ -> None

    /// True where the evaluation protocol has metrics for the data set (all but image folders).
    let hasMetrics (d: Dataset) =
        match d with
        | Images _ -> false
        | _ -> true

    /// The samples `evaluate` scores by default: 10,000 images, 1,000 colour images (against
    /// emoji's 378 held-out images), 2,500 points (PacGAN), 26,000 stacked images (VEEGAN).
    let evalSamples (d: Dataset) =
        match d with
        | Mixture _ -> Mixtures.defaultSamples
        | StackedMnist -> Gan.Functional.Eval.StackedMnist.samples
        | Emoji -> 1000
        | Mnist
        | FashionMnist
        | Images _ -> 10000

    /// The samples scored during training by default: half of evaluate's images for mnist,
    /// fashion-mnist and emoji (it runs between epochs); mixtures and Stacked MNIST as evaluate.
    let trainingEvalSamples (d: Dataset) =
        match d with
        | Mnist
        | FashionMnist
        | Emoji -> evalSamples d / 2
        | _ -> evalSamples d

    /// The data set whose classifier backbone scores this one (Stacked MNIST labels each channel
    /// with the MNIST classifier); None where no classifier is used.
    let classifierBackbone (d: Dataset) =
        match d with
        | Mnist
        | StackedMnist -> Some "mnist"
        | FashionMnist -> Some "fashion-mnist"
        | Emoji
        | Mixture _
        | Images _ -> None
