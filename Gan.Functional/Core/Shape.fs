namespace Gan.Functional

open System

/// Raised when an operation receives tensors whose shapes (or dtypes) it cannot combine.
/// The message names the operation and every shape involved.
exception ShapeMismatchException of op: string * detail: string with
    override this.Message = sprintf "%s: %s" this.op this.detail

/// Shape arithmetic shared by every layer of the engine. Shapes are row-major `int[]`.
module Shape =

    /// Formats a shape as `[2x3x4]` for error messages.
    let show (shape: int[]) =
        if shape.Length = 0 then
            "[] (scalar)"
        else
            "[" + String.Join("x", shape) + "]"

    /// Throws a <see cref="ShapeMismatchException"/> for `op` with a formatted detail.
    let fail op detail : 'a =
        raise (ShapeMismatchException(op, detail))

    /// Number of elements: the product of the dimensions (1 for a scalar).
    let numel (shape: int[]) =
        let mutable n = 1

        for d in shape do
            n <- n * d

        n

    /// Row-major strides of a contiguous tensor of this shape.
    let strides (shape: int[]) =
        let s = Array.zeroCreate shape.Length
        let mutable acc = 1

        for i in shape.Length - 1 .. -1 .. 0 do
            s.[i] <- acc
            acc <- acc * shape.[i]

        s

    /// Validates that every dimension is non-negative.
    let check op (shape: int[]) =
        if shape |> Array.exists (fun d -> d < 0) then
            fail op (sprintf "negative dimension in shape %s" (show shape))

    /// NumPy broadcasting of two shapes: align from the right; each pair of dimensions must be
    /// equal or one of them 1.
    let broadcast op (a: int[]) (b: int[]) =
        let r = max a.Length b.Length

        Array.init r (fun i ->
            let da = if i < r - a.Length then 1 else a.[i - (r - a.Length)]
            let db = if i < r - b.Length then 1 else b.[i - (r - b.Length)]

            if da = db || db = 1 then
                da
            elif da = 1 then
                db
            else
                fail op (sprintf "shapes %s and %s cannot be broadcast together" (show a) (show b)))

    /// True when `shape` broadcasts to `target` without changing `target`.
    let broadcastsTo (shape: int[]) (target: int[]) =
        shape.Length <= target.Length
        && (let off = target.Length - shape.Length

            shape
            |> Array.mapi (fun i d -> d = 1 || d = target.[i + off])
            |> Array.forall id)

    /// Resolves a possibly negative axis against a rank, failing with the op's name when out of range.
    let axis op rank (a: int) =
        let a' = if a < 0 then a + rank else a

        if a' < 0 || a' >= rank then
            fail op (sprintf "axis %d is out of range for rank %d" a rank)

        a'

    /// Resolves, sorts and de-duplicates a list of axes; an empty list means every axis.
    let axes op rank (axs: int[]) =
        if axs.Length = 0 then
            Array.init rank id
        else
            axs |> Array.map (axis op rank) |> Array.distinct |> Array.sort

    /// The shape after reducing `axs` (already resolved) with keepdim: reduced axes become 1.
    let reduceKeep (shape: int[]) (axs: int[]) =
        shape |> Array.mapi (fun i d -> if Array.contains i axs then 1 else d)

    /// The shape after reducing `axs` (already resolved) without keepdim.
    let reduceDrop (shape: int[]) (axs: int[]) =
        shape
        |> Array.indexed
        |> Array.filter (fun (i, _) -> not (Array.contains i axs))
        |> Array.map snd

    /// Resolves a reshape target in which at most one dimension may be -1.
    let reshape op (from: int[]) (target: int[]) =
        let n = numel from
        let unknown = target |> Array.filter (fun d -> d = -1) |> Array.length

        if unknown > 1 then
            fail op (sprintf "more than one -1 in target shape %s" (show target))

        let known = target |> Array.filter (fun d -> d <> -1) |> numel

        let resolved =
            if unknown = 1 then
                if known = 0 || n % known <> 0 then
                    fail op (sprintf "cannot reshape %s into %s" (show from) (show target))

                target |> Array.map (fun d -> if d = -1 then n / known else d)
            else
                Array.copy target

        check op resolved

        if numel resolved <> n then
            fail
                op
                (sprintf
                    "cannot reshape %s (%d elements) into %s (%d elements)"
                    (show from)
                    n
                    (show target)
                    (numel resolved))

        resolved

/// Geometry of a 2-D convolution over NCHW input and `[out, in/groups, kh, kw]` weights.
/// Padding is asymmetric (top, bottom, left, right), as Keras 'same' and ZeroPad2d need.
type ConvSpec = {
    StrideH: int
    StrideW: int
    PadTop: int
    PadBottom: int
    PadLeft: int
    PadRight: int
    DilationH: int
    DilationW: int
    Groups: int
}

/// Constructors and shape rules for <see cref="ConvSpec"/>.
module ConvSpec =

    /// Stride 1, no padding, no dilation, one group.
    let unit = {
        StrideH = 1
        StrideW = 1
        PadTop = 0
        PadBottom = 0
        PadLeft = 0
        PadRight = 0
        DilationH = 1
        DilationW = 1
        Groups = 1
    }

    /// Symmetric geometry from scalars, as PyTorch's `Conv2d(stride, padding, dilation, groups)`.
    let create stride padding dilation groups = {
        StrideH = stride
        StrideW = stride
        PadTop = padding
        PadBottom = padding
        PadLeft = padding
        PadRight = padding
        DilationH = dilation
        DilationW = dilation
        Groups = groups
    }

    /// Output spatial size of one axis: floor((n + pads - d(k-1) - 1) / s) + 1.
    let outSize n padA padB k stride dilation =
        (n + padA + padB - dilation * (k - 1) - 1) / stride + 1

    let private validate op (s: ConvSpec) =
        if s.StrideH < 1 || s.StrideW < 1 then
            Shape.fail op (sprintf "stride must be >= 1, got %dx%d" s.StrideH s.StrideW)

        if s.DilationH < 1 || s.DilationW < 1 then
            Shape.fail op (sprintf "dilation must be >= 1, got %dx%d" s.DilationH s.DilationW)

        if s.Groups < 1 then
            Shape.fail op (sprintf "groups must be >= 1, got %d" s.Groups)

        if s.PadTop < 0 || s.PadBottom < 0 || s.PadLeft < 0 || s.PadRight < 0 then
            Shape.fail op "padding must be non-negative"

    /// Output shape `[n, out, oh, ow]` of conv2d for input `[n, c, h, w]` and weight
    /// `[out, c/groups, kh, kw]`; throws naming `op` and both shapes when they do not fit.
    let outputShape op (s: ConvSpec) (x: int[]) (w: int[]) =
        validate op s

        if x.Length <> 4 || w.Length <> 4 then
            Shape.fail
                op
                (sprintf
                    "expected 4-D input [N,C,H,W] and weight [O,C/g,kH,kW], got %s and %s"
                    (Shape.show x)
                    (Shape.show w))

        if x.[1] % s.Groups <> 0 || w.[0] % s.Groups <> 0 || x.[1] / s.Groups <> w.[1] then
            Shape.fail
                op
                (sprintf
                    "input %s and weight %s disagree on channels with groups=%d"
                    (Shape.show x)
                    (Shape.show w)
                    s.Groups)

        let oh = outSize x.[2] s.PadTop s.PadBottom w.[2] s.StrideH s.DilationH
        let ow = outSize x.[3] s.PadLeft s.PadRight w.[3] s.StrideW s.DilationW

        if oh < 1 || ow < 1 then
            Shape.fail
                op
                (sprintf "input %s is too small for weight %s with this padding/dilation" (Shape.show x) (Shape.show w))

        [| x.[0]; w.[0]; oh; ow |]
