/// Convolutions through oneDNN's C API (Debian's libdnnl2, API v2): forward, backward-data and
/// backward-weights primitives on oneDNN's own blocked layouts (nChw16c and the like), with
/// reorders from and to the engine's NCHW/OIHW buffers. Primitives are built once per shape and
/// cached; the blocked scratch buffers are pooled arrays, pinned for the call. Used only when
/// oneDNN loaded (see Blas) and the convolution has one group and no dilation; anything oneDNN
/// declines falls back to im2col.
module internal Gan.Functional.Kernels.Dnnl

#nowarn "9" // native pointers: oneDNN reads and writes pinned arrays

open System
open System.Collections.Generic
open System.Runtime.InteropServices
open Gan.Functional

[<Literal>]
let private Lib = "gan_dnnl"

/// dnnl_exec_arg_t: an argument slot and the memory bound to it.
[<Struct; StructLayout(LayoutKind.Sequential)>]
type ExecArg =
    val mutable Arg: int
    val mutable Memory: nativeint
    new(arg, memory) = { Arg = arg; Memory = memory }

module private Native =
    [<DllImport(Lib)>]
    extern int dnnl_engine_create(nativeint& engine, int kind, unativeint index)

    [<DllImport(Lib)>]
    extern int dnnl_stream_create(nativeint& stream, nativeint engine, uint32 flags)

    [<DllImport(Lib)>]
    extern int dnnl_memory_desc_init_by_tag(nativeint md, int ndims, int64[] dims, int dataType, int tag)

    [<DllImport(Lib)>]
    extern int dnnl_dilated_convolution_forward_desc_init(
        nativeint desc,
        int propKind,
        int algKind,
        nativeint src,
        nativeint weights,
        nativeint bias,
        nativeint dst,
        int64[] strides,
        int64[] dilates,
        int64[] padL,
        int64[] padR
    )

    [<DllImport(Lib)>]
    extern int dnnl_dilated_convolution_backward_data_desc_init(
        nativeint desc,
        int algKind,
        nativeint diffSrc,
        nativeint weights,
        nativeint diffDst,
        int64[] strides,
        int64[] dilates,
        int64[] padL,
        int64[] padR
    )

    [<DllImport(Lib)>]
    extern int dnnl_dilated_convolution_backward_weights_desc_init(
        nativeint desc,
        int algKind,
        nativeint src,
        nativeint diffWeights,
        nativeint diffBias,
        nativeint diffDst,
        int64[] strides,
        int64[] dilates,
        int64[] padL,
        int64[] padR
    )

    [<DllImport(Lib)>]
    extern int dnnl_primitive_desc_create(
        nativeint& pd,
        nativeint opDesc,
        nativeint attr,
        nativeint engine,
        nativeint hint
    )

    [<DllImport(Lib)>]
    extern nativeint dnnl_primitive_desc_query_md(nativeint pd, int what, int index)

    [<DllImport(Lib)>]
    extern int dnnl_primitive_desc_query(nativeint pd, int what, int index, nativeint& result)

    [<DllImport(Lib)>]
    extern int dnnl_memory_desc_equal(nativeint a, nativeint b)

    [<DllImport(Lib)>]
    extern unativeint dnnl_memory_desc_get_size(nativeint md)

    [<DllImport(Lib)>]
    extern int dnnl_reorder_primitive_desc_create(
        nativeint& pd,
        nativeint src,
        nativeint srcEngine,
        nativeint dst,
        nativeint dstEngine,
        nativeint attr
    )

    [<DllImport(Lib)>]
    extern int dnnl_primitive_create(nativeint& primitive, nativeint pd)

    [<DllImport(Lib)>]
    extern int dnnl_memory_create(nativeint& memory, nativeint md, nativeint engine, nativeint handle)

    [<DllImport(Lib)>]
    extern int dnnl_memory_set_data_handle(nativeint memory, nativeint handle)

    [<DllImport(Lib)>]
    extern int dnnl_primitive_execute(nativeint primitive, nativeint stream, int nargs, ExecArg[] args)

    [<DllImport(Lib)>]
    extern int dnnl_stream_wait(nativeint stream)


// enum values of oneDNN 2.x (dnnl_types.h)
let private F32, TagAny, TagAbcd = 3, 1, 5
let private ForwardTraining, ConvDirect, ConvWinograd = 64, 1, 2

let private QuerySrc, QueryDiffSrc, QueryWeights, QueryDiffWeights, QueryDst, QueryDiffDst =
    129, 130, 131, 132, 133, 134

let private QueryImplInfo = 8

let private ArgSrc, ArgDst, ArgWeights, ArgDiffSrc, ArgDiffDst, ArgDiffWeights =
    1, 17, 33, 129, 145, 161

let private ArgFrom, ArgTo = 1, 17

let private check what (status: int) =
    if status <> 0 then
        failwithf "oneDNN %s failed with status %d" what status

/// An opaque, never-freed native block for a descriptor (a memory descriptor is ~700 bytes in
/// oneDNN 2.x and a convolution descriptor ~6 KB; these sizes leave room).
let private block (bytes: int) =
    let p = Marshal.AllocHGlobal bytes

    for i in 0 .. bytes - 1 do
        Marshal.WriteByte(p, i, 0uy)

    p

let private plain (shape: int[]) =
    let md = block 2048
    check "memory_desc_init_by_tag" (Native.dnnl_memory_desc_init_by_tag (md, 4, Array.map int64 shape, F32, TagAbcd))
    md

let private anyLayout (shape: int[]) =
    let md = block 2048
    check "memory_desc_init_by_tag" (Native.dnnl_memory_desc_init_by_tag (md, 4, Array.map int64 shape, F32, TagAny))
    md

type private Engine = { Engine: nativeint; Stream: nativeint }

let private engine =
    lazy
        (let mutable e = 0n
         check "engine_create" (Native.dnnl_engine_create (&e, 1, 0un))
         let mutable s = 0n
         check "stream_create" (Native.dnnl_stream_create (&s, e, 1u))
         { Engine = e; Stream = s })

/// One operand: the engine's plain buffer, and when the primitive wants another layout, a
/// pooled scratch buffer of `Bytes` in that layout with the reorder between them.
type private Operand = {
    User: nativeint
    Internal: nativeint
    Bytes: int
    Reorder: nativeint
}

let private operand (userMd: nativeint) (wanted: nativeint) (input: bool) =
    let e = engine.Value
    let mutable user = 0n
    check "memory_create" (Native.dnnl_memory_create (&user, userMd, e.Engine, 0n))

    if Native.dnnl_memory_desc_equal (userMd, wanted) <> 0 then
        {
            User = user
            Internal = 0n
            Bytes = 0
            Reorder = 0n
        }
    else
        let mutable inner = 0n
        check "memory_create" (Native.dnnl_memory_create (&inner, wanted, e.Engine, 0n))
        let src, dst = if input then userMd, wanted else wanted, userMd
        let mutable rpd = 0n

        check
            "reorder_primitive_desc_create"
            (Native.dnnl_reorder_primitive_desc_create (&rpd, src, e.Engine, dst, e.Engine, 0n))

        let mutable r = 0n
        check "primitive_create" (Native.dnnl_primitive_create (&r, rpd))

        {
            User = user
            Internal = inner
            Bytes = int (Native.dnnl_memory_desc_get_size wanted)
            Reorder = r
        }

/// The memory the primitive itself reads or writes.
let private used (o: Operand) =
    if o.Reorder = 0n then o.User else o.Internal

/// A built convolution primitive and its three operands, in argument-slot order.
type private Plan = {
    Primitive: nativeint
    Slots: int[]
    Operands: Operand[]
    /// Which operand is the output (reordered after the primitive runs).
    Output: int
    Impl: string
}

type private Kind =
    | Forward
    | BackwardData
    | BackwardWeights

// one cache per calling thread: a primitive built on one thread (Winograd's at least) crashed
// when another thread ran it, as when a step runs on a second thread
let private threadPlans =
    new System.Threading.ThreadLocal<Dictionary<struct (Kind * string), Plan option>>(
        (fun () -> Dictionary<struct (Kind * string), Plan option>()),
        true
    )

/// True when a forward or input-gradient convolution of `wShape` under `spec` gets Winograd
/// F(4, 3) (about 2.25× fewer multiplies), which `winograd` (<c>CpuKnobs.DnnlWinograd</c>)
/// allows.
let private usesWinograd (winograd: bool) (spec: ConvSpec) (wShape: int[]) =
    winograd
    && wShape.[2] = 3
    && wShape.[3] = 3
    && spec.StrideH = 1
    && spec.StrideW = 1
    && spec.DilationH = 1
    && spec.DilationW = 1

let private forwardPd (alg: int) (x: nativeint) (w: nativeint) (y: nativeint) (spec: ConvSpec) =
    let desc = block 16384
    let strides = [| int64 spec.StrideH; int64 spec.StrideW |]
    let dil = [| 0L; 0L |]
    let padL = [| int64 spec.PadTop; int64 spec.PadLeft |]
    let padR = [| int64 spec.PadBottom; int64 spec.PadRight |]

    check
        "convolution_forward_desc_init"
        (Native.dnnl_dilated_convolution_forward_desc_init (
            desc,
            ForwardTraining,
            alg,
            x,
            w,
            0n,
            y,
            strides,
            dil,
            padL,
            padR
        ))

    let mutable pd = 0n
    check "primitive_desc_create" (Native.dnnl_primitive_desc_create (&pd, desc, 0n, engine.Value.Engine, 0n))
    pd

let private build (alg: int) (kind: Kind) (spec: ConvSpec) (xShape: int[]) (wShape: int[]) (yShape: int[]) =
    let strides = [| int64 spec.StrideH; int64 spec.StrideW |]
    let dil = [| 0L; 0L |]
    let padL = [| int64 spec.PadTop; int64 spec.PadLeft |]
    let padR = [| int64 spec.PadBottom; int64 spec.PadRight |]
    let xAny, wAny, yAny = anyLayout xShape, anyLayout wShape, anyLayout yShape
    let hint = forwardPd alg xAny wAny yAny spec
    let e = engine.Value

    let pd =
        match kind with
        | Forward -> hint
        | BackwardData ->
            let desc = block 16384

            check
                "convolution_backward_data_desc_init"
                (Native.dnnl_dilated_convolution_backward_data_desc_init (
                    desc,
                    alg,
                    xAny,
                    wAny,
                    yAny,
                    strides,
                    dil,
                    padL,
                    padR
                ))

            let mutable pd = 0n
            check "primitive_desc_create" (Native.dnnl_primitive_desc_create (&pd, desc, 0n, e.Engine, hint))
            pd
        | BackwardWeights ->
            let desc = block 16384

            check
                "convolution_backward_weights_desc_init"
                (Native.dnnl_dilated_convolution_backward_weights_desc_init (
                    desc,
                    alg,
                    xAny,
                    wAny,
                    0n,
                    yAny,
                    strides,
                    dil,
                    padL,
                    padR
                ))

            let mutable pd = 0n
            check "primitive_desc_create" (Native.dnnl_primitive_desc_create (&pd, desc, 0n, e.Engine, hint))
            pd

    let q what =
        Native.dnnl_primitive_desc_query_md (pd, what, 0)

    let x, w, y = plain xShape, plain wShape, plain yShape

    // slots and operands; the output is last
    let slots, ops =
        match kind with
        | Forward ->
            [| ArgSrc; ArgWeights; ArgDst |],
            [|
                operand x (q QuerySrc) true
                operand w (q QueryWeights) true
                operand y (q QueryDst) false
            |]
        | BackwardData ->
            [| ArgDiffDst; ArgWeights; ArgDiffSrc |],
            [|
                operand y (q QueryDiffDst) true
                operand w (q QueryWeights) true
                operand x (q QueryDiffSrc) false
            |]
        | BackwardWeights ->
            [| ArgSrc; ArgDiffDst; ArgDiffWeights |],
            [|
                operand x (q QuerySrc) true
                operand y (q QueryDiffDst) true
                operand w (q QueryDiffWeights) false
            |]

    let mutable prim = 0n
    check "primitive_create" (Native.dnnl_primitive_create (&prim, pd))
    let mutable info = 0n

    let impl =
        if Native.dnnl_primitive_desc_query (pd, QueryImplInfo, 0, &info) = 0 && info <> 0n then
            Marshal.PtrToStringAnsi info |> Option.ofObj |> Option.defaultValue "?"
        else
            "?"

    {
        Primitive = prim
        Slots = slots
        Operands = ops
        Output = 2
        Impl = impl
    }

let private plan (winograd: bool) kind (spec: ConvSpec) (xShape: int[]) (wShape: int[]) (yShape: int[]) =
    let dims (s: int[]) = String.Join("x", s)

    // one line, readable in the profile
    let key =
        struct (kind,
                sprintf
                    "x %s w %s y %s stride %d,%d pad %d,%d,%d,%d dilation %d,%d groups %d%s"
                    (dims xShape)
                    (dims wShape)
                    (dims yShape)
                    spec.StrideH
                    spec.StrideW
                    spec.PadTop
                    spec.PadBottom
                    spec.PadLeft
                    spec.PadRight
                    spec.DilationH
                    spec.DilationW
                    spec.Groups
                    (if winograd then "" else " no-winograd"))

    let plans = threadPlans.Value

    lock plans (fun () ->
        match plans.TryGetValue key with
        | true, p -> p
        | _ ->
            let tryBuild alg =
                try
                    Some(build alg kind spec xShape wShape yShape)
                with _ ->
                    None

            // Winograd for the forward pass and the input gradient; the weight gradient stays
            // direct (oneDNN 2.6.3's Winograd backward-weights crashed on this machine)
            let preferred =
                if kind <> BackwardWeights && usesWinograd winograd spec wShape then
                    ConvWinograd
                else
                    ConvDirect

            let p =
                match (if preferred <> ConvDirect then tryBuild preferred else None) with
                | Some p -> Some p
                | None -> tryBuild ConvDirect

            plans.[key] <- p
            p)

/// Reorder buffers in oneDNN's layout, one per operand slot and thread, grown to the largest
/// size seen. A thread runs one convolution at a time, so three buffers serve every plan: no
/// garbage per call (fresh arrays measured a higher peak on dcgan64) and no power-of-two rounding
/// or per-size retention of a shared pool.
let private slots =
    new System.Threading.ThreadLocal<float32[][]>(fun () -> Array.create 3 [||])

let private slot (i: int) (floats: int) =
    let s = slots.Value

    if s.[i].Length < floats then
        // drop the old buffer before allocating its successor
        s.[i] <- [||]
        s.[i] <- GC.AllocateUninitializedArray<float32> floats

    s.[i]

/// Runs a plan on three float32 buffers in operand order (the last one is written), each read
/// from its element offset.
let private run (p: Plan) (buffers: float32[][]) (offsets: int[]) =
    let e = engine.Value

    let scratch =
        p.Operands
        |> Array.mapi (fun i o -> if o.Bytes > 0 then slot i (o.Bytes / 4 + 16) else [||])

    let handles = List<GCHandle>()

    let pin (a: float32[]) (offset: int) =
        let h = GCHandle.Alloc(a, GCHandleType.Pinned)
        handles.Add h
        h.AddrOfPinnedObject() + nativeint (4 * offset)

    try
        for i in 0..2 do
            let o = p.Operands.[i]
            check "memory_set_data_handle" (Native.dnnl_memory_set_data_handle (o.User, pin buffers.[i] offsets.[i]))

            if o.Bytes > 0 then
                check "memory_set_data_handle" (Native.dnnl_memory_set_data_handle (o.Internal, pin scratch.[i] 0))

        for i in 0..1 do
            let o = p.Operands.[i]

            if o.Reorder <> 0n then
                check
                    "reorder"
                    (Native.dnnl_primitive_execute (
                        o.Reorder,
                        e.Stream,
                        2,
                        [| ExecArg(ArgFrom, o.User); ExecArg(ArgTo, o.Internal) |]
                    ))

        let args = Array.init 3 (fun i -> ExecArg(p.Slots.[i], used p.Operands.[i]))
        check "convolution" (Native.dnnl_primitive_execute (p.Primitive, e.Stream, 3, args))
        let out = p.Operands.[p.Output]

        if out.Reorder <> 0n then
            check
                "reorder"
                (Native.dnnl_primitive_execute (
                    out.Reorder,
                    e.Stream,
                    2,
                    [| ExecArg(ArgFrom, out.Internal); ExecArg(ArgTo, out.User) |]
                ))

        check "stream_wait" (Native.dnnl_stream_wait e.Stream)
    finally
        for h in handles do
            h.Free()

let private perImage (shape: int[]) = Shape.numel shape / max 1 shape.[0]

/// Images per oneDNN call (<c>CpuKnobs.DnnlBatch</c>; when 0, 32 under Winograd or when the
/// input or output image has 32K floats or more, else 64). The blocked-layout copies and
/// Winograd's transformed tiles scale with it and stay allocated between calls (Winograd on
/// dcgan28's 128 → 64 layer at 28×28: ~88 MB for 64 images); small images gain nothing from
/// smaller calls (docs/knobs.md).
let private chunkFor (knobs: CpuKnobs) (spec: ConvSpec) (xShape: int[]) (yShape: int[]) (wShape: int[]) =
    if knobs.DnnlBatch > 0 then
        knobs.DnnlBatch
    elif
        usesWinograd knobs.DnnlWinograd spec wShape
        || max (perImage xShape) (perImage yShape) >= 32768
    then
        32
    else
        64

let private withBatch (nb: int) (shape: int[]) = Array.append [| nb |] shape.[1..]

/// Runs `body n0 nb` over the batch in chunks of at most `chunk` images; false as soon as a
/// chunk's primitive cannot be built (nothing has been written that the fallback would miss:
/// it recomputes the whole output).
let private inChunks (chunk: int) (n: int) (body: int -> int -> unit option) =
    let mutable n0 = 0
    let mutable ok = true

    while ok && n0 < n do
        let nb = min chunk (n - n0)

        match body n0 nb with
        | Some() -> n0 <- n0 + nb
        | None -> ok <- false

    ok

let private eligible (knobs: CpuKnobs) (spec: ConvSpec) =
    knobs.DnnlConv
    && spec.Groups = 1
    && spec.DilationH = 1
    && spec.DilationW = 1
    && Blas.dnnlAvailable knobs

/// Runs `kind` in calls of `chunkFor` images for the two convolutions whose operand and result
/// both lead with the batch: the forward pass (src → dst) and the input gradient
/// (diff_dst → diff_src). None as soon as oneDNN declines a call.
let private batchMajor
    (knobs: CpuKnobs)
    kind
    spec
    (src: float32[])
    (srcShape: int[])
    (w: float32[])
    (wShape: int[])
    (dstShape: int[])
    =
    let dst = BufferPool.rent (Shape.numel dstShape)

    let ok =
        inChunks (chunkFor knobs spec srcShape dstShape wShape) srcShape.[0] (fun n0 nb ->
            let s, d = withBatch nb srcShape, withBatch nb dstShape
            // a plan is keyed by (x, w, y) shapes: the input gradient's x is its result
            let xs, ys = if kind = Forward then s, d else d, s

            plan knobs.DnnlWinograd kind spec xs wShape ys
            |> Option.map (fun p -> run p [| src; w; dst |] [| n0 * perImage srcShape; 0; n0 * perImage dstShape |]))

    if ok then Some dst else None

/// y = conv2d(x, w), or None when oneDNN is absent or declines.
let conv2d (knobs: CpuKnobs) (spec: ConvSpec) (x: float32[]) (xShape: int[]) (w: float32[]) (wShape: int[]) =
    if not (eligible knobs spec) then
        None
    else
        batchMajor knobs Forward spec x xShape w wShape (ConvSpec.outputShape "conv2d" spec xShape wShape)

/// dx = conv2dᵀ(g, w) of shape xShape, or None.
let conv2dInputGrad
    (knobs: CpuKnobs)
    (spec: ConvSpec)
    (g: float32[])
    (gShape: int[])
    (w: float32[])
    (wShape: int[])
    (xShape: int[])
    =
    // oneDNN pads fewer than 16 input channels up to a block of 16 here (measured several times
    // slower than im2col for RGB inputs)
    if not (eligible knobs spec) || xShape.[1] < 16 then
        None
    else
        batchMajor knobs BackwardData spec g gShape w wShape xShape

/// dW of shape wShape, or None.
let conv2dWeightGrad
    (knobs: CpuKnobs)
    (spec: ConvSpec)
    (x: float32[])
    (xShape: int[])
    (g: float32[])
    (gShape: int[])
    (wShape: int[])
    =
    // single-channel images (MNIST's first layer): im2col measured about twice as fast as
    // oneDNN on mbd28's k4 layer (the forward stays on oneDNN, which wins there); from 3
    // channels on oneDNN wins (docs/performance.md, "Measurements behind the code")
    if not (eligible knobs spec) || xShape.[1] = 1 then
        None
    else
        let k = Shape.numel wShape
        let dw = BufferPool.rent k

        let part =
            if xShape.[0] > chunkFor knobs spec xShape gShape wShape then
                Array.zeroCreate<float32> k
            else
                dw

        // chunks as for the other two (smaller blocked copies); their weight gradients add up
        let ok =
            inChunks (chunkFor knobs spec xShape gShape wShape) xShape.[0] (fun n0 nb ->
                let xs, gs = withBatch nb xShape, withBatch nb gShape

                plan knobs.DnnlWinograd BackwardWeights spec xs wShape gs
                |> Option.map (fun p ->
                    if n0 = 0 then
                        run p [| x; g; dw |] [| 0; 0; 0 |]
                    else
                        run p [| x; g; part |] [| n0 * perImage xShape; n0 * perImage gShape; 0 |]
                        System.Numerics.Tensors.TensorPrimitives.Add(ReadOnlySpan part, ReadOnlySpan dw, Span dw)))

        if ok then Some dw else None

/// The oneDNN implementation chosen for each convolution built so far (for the profile).
let implementations () =
    threadPlans.Values
    |> Seq.toList
    |> List.collect (fun plans ->
        lock plans (fun () ->
            plans
            |> Seq.choose (fun kv ->
                let struct (k, shapes) = kv.Key
                kv.Value |> Option.map (fun p -> sprintf "%A %s: %s" k shapes p.Impl))
            |> Seq.toList))
    |> List.distinct
