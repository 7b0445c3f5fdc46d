namespace Gan.Functional

/// Rewrites of the tape: where a pattern of primitives has a cheaper equivalent, the forward
/// functions record that instead. Each is exact up to float rounding and covered by tests that
/// compare both forms' values and gradients (Gan.Tests/FusionTests.fs, GradientTests.fs).
/// The patterns are active patterns over the nodes of one nesting level.
module internal Rewrites =

    /// The op of `t` when it is tracked at level `tag`, with its node.
    let private (|At|_|) (tag: int64) (t: Tensor) =
        match t with
        | TRev n when n.Tag = tag -> Some(n.Op, n)
        | _ -> None

    /// x's source [N, C, h, w] when x is its nearest ×2 upsampling as `upsampleNearest 2 2`
    /// records it at one nesting level: reshape to [N, C, h, 1, w, 1], expand to
    /// [N, C, h, 2, w, 2], reshape.
    let private (|NearestUpsample2x|_|) (x: Tensor) =
        match x with
        | TRev up ->
            match up.Op with
            | Reshape(At up.Tag (Expand(At up.Tag (Reshape src, split)), wide)) ->
                let s = Prim.shape src

                if
                    s.Length = 4
                    && Prim.shape split.Primal = [| s.[0]; s.[1]; s.[2]; 1; s.[3]; 1 |]
                    && Prim.shape wide.Primal = [| s.[0]; s.[1]; s.[2]; 2; s.[3]; 2 |]
                then
                    Some src
                else
                    None
            | _ -> None
        | TConst _ -> None

    /// x's node when it is the output of a first-order BatchNorm (a training step: the node's
    /// primal and inputs are constants one level out), with the node's inputs and statistics.
    let private (|FirstOrderBatchNorm|_|) (x: Tensor) =
        match x with
        | TRev n when Tape.tagOf n.Primal = 0L ->
            match n.Op with
            | BatchNorm(bx, gamma, beta, eps, mean, var) when
                [ bx; gamma; beta ]
                |> List.forall (fun t -> Tape.tagOf (Tape.primalAt n.Tag t) = 0L)
                ->
                Some(n, bx, gamma, beta, eps, mean, var)
            | _ -> None
        | _ -> None

    /// A 3×3, padding-1 convolution of x's nearest ×2 upsampling, computed at x's resolution
    /// (sub-pixel convolution): output pixel (2i + py, 2j + px) sees only the low-resolution
    /// rows i − 1 + py + a and columns j − 1 + px + b, a, b ∈ {0, 1}, so each of the four
    /// parities is a 2×2 convolution whose taps are sums of the 3×3 ones: rows
    /// py = 0: {k0}, {k1 + k2}; py = 1: {k0 + k1}, {k2} (columns alike). The four run as one
    /// conv2d with 4·O output channels over x padded by 1 ([N, 4·O, h + 1, w + 1]), and a
    /// strided view interleaves them into [N, O, 2h, 2w]. 16 multiply-adds per low-resolution
    /// pixel and channel pair instead of 36, no upsampled tensor kept for the backward pass,
    /// and every step an existing primitive, so gradients of any order follow.
    let private subpixelConv3x3 (x: Tensor) (w: Tensor) =
        let s, ws = Prim.shape x, Prim.shape w
        let n, h, wd, o, c = s.[0], s.[2], s.[3], ws.[0], ws.[1]
        // tap k of three lands on low-resolution tap a for output parity p
        let lands p a k =
            match p, a, k with
            | 0, 0, 0
            | 0, 1, 1
            | 0, 1, 2
            | 1, 0, 0
            | 1, 0, 1
            | 1, 1, 2 -> 1.0
            | _ -> 0.0
        // M[(ky, kx), (py, px, a, b)]
        let m =
            Array.init 144 (fun idx ->
                let k, col = idx / 16, idx % 16
                lands (col / 8) (col / 2 % 2) (k / 3) * lands (col / 4 % 2) (col % 2) (k % 3))

        let w2 =
            Prim.matmulT
                (Prim.reshape [| o * c; 9 |] w)
                false
                (TConst(
                    Gan.Functional.Kernels.Placement.onPlaceOf
                        (Tape.raw w)
                        (RawTensor.cast (Prim.dtype w) (RawTensor.ofFloat64 [| 9; 16 |] m))
                ))
                false
            |> Prim.reshape [| o; c; 2; 2; 2; 2 |]
            |> Prim.permute [| 2; 3; 0; 1; 4; 5 |]
            |> Prim.reshape [| 4 * o; c; 2; 2 |]

        let y = Prim.conv2d (ConvSpec.create 1 1 1 1) x w2
        let w1 = wd + 1
        let plane = (h + 1) * w1
        // (n, co, i, py, j, px) → y[n, (py·2 + px)·O + co, i + py, j + px]
        let strides = [| 4 * o * plane; plane; w1; 2 * o * plane + w1; 1; o * plane + 1 |]

        Prim.stridedView 0 strides [| n; o; h; 2; wd; 2 |] y
        |> Prim.reshape [| n; o; 2 * h; 2 * wd |]

    /// 2-D cross-correlation (Prim.conv2d), except that a 3×3, stride-1, padding-1 convolution
    /// of a tracked `upsampleNearest 2 2` output runs in the sub-pixel form on the upsampling's
    /// input (<c>Knobs.fuseUpsampleConv</c>, GAN_FUSE_UPSAMPLE_CONV=0, turns it off).
    let conv2d (spec: ConvSpec) (x: Tensor) (w: Tensor) =
        let ws = Prim.shape w

        match x with
        | NearestUpsample2x src when
            Knobs.fuseUpsampleConv
            && spec = ConvSpec.create 1 1 1 1
            && ws.Length = 4
            && ws.[2] = 3
            && ws.[3] = 3
            && ws.[1] = (Prim.shape src).[1]
            && Prim.dtype src = Prim.dtype w
            ->
            subpixelConv3x3 src w
        | _ -> Prim.conv2d spec x w

    /// y = x where x > 0, αx elsewhere (Prim.leakyRelu), except that applied (α ≥ 0) to the
    /// output of a first-order BatchNorm node, the two are recorded as one BatchNormAct node on
    /// the BatchNorm's inputs, so the normalised values die with the BatchNorm node unless
    /// something else holds them (whatever does keeps its own path through that node; both
    /// paths' gradients add up as usual).
    let leakyRelu (alpha: float) (x: Tensor) =
        match x with
        | FirstOrderBatchNorm(n, bx, gamma, beta, eps, mean, var) when alpha >= 0.0 ->
            let y = Prim.backend().LeakyRelu(Tape.raw x, alpha)
            TRev(Node(TConst y, n.Tag, BatchNormAct(bx, gamma, beta, eps, mean, var, alpha)))
        | _ -> Prim.leakyRelu alpha x
