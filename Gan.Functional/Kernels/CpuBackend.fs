namespace Gan.Functional.Kernels

open System
open System.Numerics.Tensors
open System.Threading.Tasks
open Gan.Functional

/// Vectorised float32 loops (TensorPrimitives) over runs found by merging dimensions.
module internal Fast =

    /// Merges adjacent output dimensions along which every operand is laid out alike
    /// (contiguous, or broadcast), so loops run over the longest possible runs.
    let merge (shape: int[]) (strides: int[][]) =
        let dims = ResizeArray<int>()
        let st = strides |> Array.map (fun _ -> ResizeArray<int>())

        for d in 0 .. shape.Length - 1 do
            if shape.[d] <> 1 then
                let k = dims.Count

                let fits =
                    k > 0
                    && strides
                       |> Array.forall2 (fun (s: ResizeArray<int>) (src: int[]) -> s.[k - 1] = src.[d] * shape.[d]) st

                if fits then
                    dims.[k - 1] <- dims.[k - 1] * shape.[d]

                    for i in 0 .. st.Length - 1 do
                        st.[i].[k - 1] <- strides.[i].[d]
                else
                    dims.Add shape.[d]

                    for i in 0 .. st.Length - 1 do
                        st.[i].Add strides.[i].[d]

        if dims.Count = 0 then
            dims.Add 1

            for s in st do
                s.Add 0

        dims.ToArray(), st |> Array.map (fun s -> s.ToArray())

    let private parallelThreshold = 1 <<< 16

    /// Runs `body lo hi` over [0, count) split into at most `parts` ranges, in parallel.
    let split parts (count: int) (body: int -> int -> unit) =
        let parts = max 1 (min parts count)

        if parts = 1 then
            body 0 count
        else
            let size = (count + parts - 1) / parts

            Parallel.For(
                0,
                parts,
                fun p ->
                    let lo = p * size
                    let hi = min count (lo + size)

                    if hi > lo then
                        body lo hi
            )
            |> ignore

    /// Runs `body lo hi` over [0, n) in chunks, in parallel when large.
    let chunks threads (n: int) (body: int -> int -> unit) =
        if threads > 1 && n >= parallelThreshold then
            let parts = min threads ((n + parallelThreshold / 2 - 1) / (parallelThreshold / 2))
            let size = (n + parts - 1) / parts

            Parallel.For(
                0,
                parts,
                ParallelOptions(MaxDegreeOfParallelism = threads),
                fun p ->
                    let lo = p * size
                    let hi = min n (lo + size)

                    if hi > lo then
                        body lo hi
            )
            |> ignore
        else
            body 0 n

    let private unaryRun (op: UnaryOp) (x: float32[]) (y: float32[]) (lo: int) (len: int) =
        let a = ReadOnlySpan(x, lo, len)
        let d = Span(y, lo, len)

        match op with
        | Neg -> TensorPrimitives.Negate(a, d)
        | Exp -> TensorPrimitives.Exp(a, d)
        | Log -> TensorPrimitives.Log(a, d)
        | Sqrt -> TensorPrimitives.Sqrt(a, d)
        | Tanh -> TensorPrimitives.Tanh(a, d)
        | Sigmoid -> TensorPrimitives.Sigmoid(a, d)
        | Abs -> TensorPrimitives.Abs(a, d)
        | Sign -> invalidOp "sign has no vectorised kernel"

    let unary threads (op: UnaryOp) (x: float32[]) : float32[] option =
        match op with
        | Sign -> None
        | _ ->
            let y = GC.AllocateUninitializedArray<float32> x.Length
            chunks threads x.Length (fun lo hi -> unaryRun op x y lo (hi - lo))
            Some y

    let private vectorised (op: BinaryOp) =
        match op with
        | Add
        | Sub
        | Mul
        | Div
        | Maximum
        | Minimum -> true
        | _ -> false

    /// y[po..] = a[pa..] op b[pb..] over `len` elements; a stride of 0 reads one value.
    let private binaryRun (op: BinaryOp) (a: float32[]) pa ia (b: float32[]) pb ib (y: float32[]) po len =
        let d = Span(y, po, len)

        match ia, ib with
        | 0, 0 ->
            let av, bv = a.[pa], b.[pb]

            let v =
                match op with
                | Add -> av + bv
                | Sub -> av - bv
                | Mul -> av * bv
                | Div -> av / bv
                | Maximum -> if av >= bv then av else bv
                | _ -> if av <= bv then av else bv

            d.Fill v
        | _, 0 ->
            let x = ReadOnlySpan(a, pa, len)
            let s = b.[pb]

            match op with
            | Add -> TensorPrimitives.Add(x, s, d)
            | Sub -> TensorPrimitives.Subtract(x, s, d)
            | Mul -> TensorPrimitives.Multiply(x, s, d)
            | Div -> TensorPrimitives.Divide(x, s, d)
            | Maximum -> TensorPrimitives.Max(x, s, d)
            | _ -> TensorPrimitives.Min(x, s, d)
        | 0, _ ->
            let s = a.[pa]
            let x = ReadOnlySpan(b, pb, len)

            match op with
            | Add -> TensorPrimitives.Add(x, s, d)
            | Sub -> TensorPrimitives.Subtract(s, x, d)
            | Mul -> TensorPrimitives.Multiply(x, s, d)
            | Div -> TensorPrimitives.Divide(s, x, d)
            | Maximum -> TensorPrimitives.Max(x, s, d)
            | _ -> TensorPrimitives.Min(x, s, d)
        | _ ->
            let x = ReadOnlySpan(a, pa, len)
            let z = ReadOnlySpan(b, pb, len)

            match op with
            | Add -> TensorPrimitives.Add(x, z, d)
            | Sub -> TensorPrimitives.Subtract(x, z, d)
            | Mul -> TensorPrimitives.Multiply(x, z, d)
            | Div -> TensorPrimitives.Divide(x, z, d)
            | Maximum -> TensorPrimitives.Max(x, z, d)
            | _ -> TensorPrimitives.Min(x, z, d)

    /// Broadcast binary op: after merging dimensions, the innermost run has operand strides
    /// of 1 (span kernel) or 0 (scalar kernel); outer positions are decoded per row.
    let binary
        threads
        (op: BinaryOp)
        (a: float32[])
        (aShape: int[])
        (b: float32[])
        (bShape: int[])
        (outShape: int[])
        : float32[] option =
        if not (vectorised op) then
            None
        else
            let n = Shape.numel outShape
            let y = GC.AllocateUninitializedArray<float32> n

            if n > 0 then
                let sa = Strided.broadcastStrides aShape outShape
                let sb = Strided.broadcastStrides bShape outShape
                let dims, st = merge outShape [| sa; sb |]
                let r = dims.Length
                let inner = dims.[r - 1]
                let ia, ib = st.[0].[r - 1], st.[1].[r - 1]

                if n = inner then
                    chunks threads inner (fun lo hi -> binaryRun op a (lo * ia) ia b (lo * ib) ib y lo (hi - lo))
                else
                    let rows = n / inner

                    split (if n >= parallelThreshold then threads else 1) rows (fun r0 r1 ->
                        for row in r0 .. r1 - 1 do
                            let mutable rem = row
                            let mutable pa = 0
                            let mutable pb = 0

                            for d in r - 2 .. -1 .. 0 do
                                let c = rem % dims.[d]
                                rem <- rem / dims.[d]
                                pa <- pa + c * st.[0].[d]
                                pb <- pb + c * st.[1].[d]

                            binaryRun op a pa ia b pb ib y (row * inner) inner)

            Some y

    /// Sum or max over axes (kept as 1): merged dimensions alternate between reduced and kept;
    /// a reduced innermost run folds to one value, a kept one accumulates elementwise.
    let reduce (op: ReduceOp) (x: float32[]) (shape: int[]) (axes: int[]) : float32[] option =
        match op with
        | ReduceMin -> None
        | ReduceSum
        | ReduceMax ->
            let outShape = Shape.reduceKeep shape axes
            let m = Shape.numel outShape
            let init = if op = ReduceSum then 0.0f else Single.NegativeInfinity
            let y = Array.create m init

            if x.Length > 0 then
                let own = Shape.strides outShape

                let so =
                    Array.init shape.Length (fun i -> if Array.contains i axes then 0 else own.[i])

                let sx = Shape.strides shape
                let dims, st = merge shape [| sx; so |]
                let r = dims.Length
                let inner = dims.[r - 1]
                let io = st.[1].[r - 1]
                let rows = x.Length / inner

                for row in 0 .. rows - 1 do
                    let mutable rem = row
                    let mutable px = 0
                    let mutable po = 0

                    for d in r - 2 .. -1 .. 0 do
                        let c = rem % dims.[d]
                        rem <- rem / dims.[d]
                        px <- px + c * st.[0].[d]
                        po <- po + c * st.[1].[d]

                    let src = ReadOnlySpan(x, px, inner)

                    if io = 0 then
                        y.[po] <-
                            if op = ReduceSum then
                                y.[po] + TensorPrimitives.Sum(src)
                            else
                                max y.[po] (TensorPrimitives.Max(src))
                    else
                        let dst = Span(y, po, inner)

                        if op = ReduceSum then
                            TensorPrimitives.Add(ReadOnlySpan(y, po, inner), src, dst)
                        else
                            TensorPrimitives.Max(ReadOnlySpan(y, po, inner), src, dst)

            Some y

/// The fast CPU backend: float32 GEMM through OpenBLAS (or a managed SIMD kernel),
/// convolutions as im2col + GEMM, vectorised elementwise ops and reductions, parallel across
/// `threads` cores. Everything it does not accelerate (float64, gather/scatter, comparisons)
/// goes to the reference kernels, which it is tested against.
type CpuBackend(threads: int) =
    let reference = ReferenceBackend.Instance :> IBackend
    let threads = if threads <= 0 then Environment.ProcessorCount else threads
    do Blas.setThreads threads

    /// The thread count in use.
    member _.Threads = threads

    /// One line: which GEMM and how many threads, and why.
    member _.Description =
        sprintf "cpu backend, %d thread%s, %s" threads (if threads = 1 then "" else "s") (Blas.info ()).Description

    /// True when OpenBLAS was loaded.
    member _.UsesOpenBlas = (Blas.info ()).UsesOpenBlas

    interface IBackend with
        member _.Name = "cpu"

        member _.Unary(op, x) =
            match x.Storage with
            | Storage.F32 a ->
                match Fast.unary threads op a with
                | Some y -> {
                    Shape = x.Shape
                    Storage = Storage.F32 y
                  }
                | None -> reference.Unary(op, x)
            | Storage.F64 _ -> reference.Unary(op, x)

        member _.Binary(op, a, b, outShape) =
            match a.Storage, b.Storage with
            | Storage.F32 x, Storage.F32 y ->
                match Fast.binary threads op x a.Shape y b.Shape outShape with
                | Some r -> {
                    Shape = outShape
                    Storage = Storage.F32 r
                  }
                | None -> reference.Binary(op, a, b, outShape)
            | _ -> reference.Binary(op, a, b, outShape)

        member _.Where(m, a, b) = reference.Where(m, a, b)

        member _.Reduce(op, x, axes) =
            match x.Storage with
            | Storage.F32 a ->
                match Fast.reduce op a x.Shape axes with
                | Some y -> {
                    Shape = Shape.reduceKeep x.Shape axes
                    Storage = Storage.F32 y
                  }
                | None -> reference.Reduce(op, x, axes)
            | Storage.F64 _ -> reference.Reduce(op, x, axes)

        member _.ArgMax(x, axis) = reference.ArgMax(x, axis)

        member _.View(x, offset, strides, shape) =
            reference.View(x, offset, strides, shape)

        member _.Embed(x, shape, offset, strides) =
            reference.Embed(x, shape, offset, strides)

        member _.Concat(xs, axis) = reference.Concat(xs, axis)
        member _.Take(x, index, shape) = reference.Take(x, index, shape)
        member _.ScatterAdd(src, index, shape) = reference.ScatterAdd(src, index, shape)

        member _.MatMul(a, transA, b, transB, outShape) =
            match a.Storage, b.Storage with
            | Storage.F32 x, Storage.F32 y ->
                let r = outShape.Length
                let m, n = outShape.[r - 2], outShape.[r - 1]

                let k =
                    if transA then
                        a.Shape.[a.Shape.Length - 2]
                    else
                        a.Shape.[a.Shape.Length - 1]

                let c = GC.AllocateUninitializedArray<float32>(Shape.numel outShape)
                let batchShape = outShape.[.. r - 3]
                let sa = Strided.broadcastStrides a.Shape.[.. a.Shape.Length - 3] batchShape
                let sb = Strided.broadcastStrides b.Shape.[.. b.Shape.Length - 3] batchShape

                for bi in 0 .. Shape.numel batchShape - 1 do
                    let mutable rem = bi
                    let mutable ao = 0
                    let mutable bo = 0

                    for d in batchShape.Length - 1 .. -1 .. 0 do
                        let i = rem % batchShape.[d]
                        rem <- rem / batchShape.[d]
                        ao <- ao + i * sa.[d]
                        bo <- bo + i * sb.[d]

                    Blas.sgemm transA transB m n k x (ao * m * k) y (bo * k * n) c (bi * m * n) false

                {
                    Shape = outShape
                    Storage = Storage.F32 c
                }
            | _ -> reference.MatMul(a, transA, b, transB, outShape)

        member _.Conv2d(x, w, spec) =
            match x.Storage, w.Storage with
            | Storage.F32 xa, Storage.F32 wa ->
                let outShape = ConvSpec.outputShape "conv2d" spec x.Shape w.Shape

                {
                    Shape = outShape
                    Storage = Storage.F32(Im2col.conv2d threads spec xa x.Shape wa w.Shape)
                }
            | _ -> reference.Conv2d(x, w, spec)

        member _.Conv2dInputGrad(g, w, spec, xShape) =
            match g.Storage, w.Storage with
            | Storage.F32 ga, Storage.F32 wa -> {
                Shape = xShape
                Storage = Storage.F32(Im2col.conv2dInputGrad threads spec ga wa w.Shape xShape)
              }
            | _ -> reference.Conv2dInputGrad(g, w, spec, xShape)

        member _.Conv2dWeightGrad(x, g, spec, wShape) =
            match x.Storage, g.Storage with
            | Storage.F32 xa, Storage.F32 ga -> {
                Shape = wShape
                Storage = Storage.F32(Im2col.conv2dWeightGrad threads spec xa x.Shape ga wShape)
              }
            | _ -> reference.Conv2dWeightGrad(x, g, spec, wShape)

        member _.MaxPool2dIndices(x, kh, kw, spec) =
            reference.MaxPool2dIndices(x, kh, kw, spec)

        member _.Cast(x, dtype) = reference.Cast(x, dtype)
