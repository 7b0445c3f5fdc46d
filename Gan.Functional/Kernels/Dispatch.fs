namespace Gan.Functional.Kernels

open Gan.Functional

/// Where tensors live and which backend runs an operation on them.
///
/// The rule (PyTorch's): an operation runs where its inputs are. Inputs on a device run on the
/// backend that owns that device's buffers; inputs on the host run on the selected backend, or
/// on the default CPU backend while a device backend is selected. Inputs on two different
/// places are an error naming both, with one exception: a rank-0 host tensor (a scalar, such
/// as the constants `x * 2.0` or a loss creates) is copied to the other inputs' device.
module internal Placement =
    /// The device backend owning a tensor's buffer, if it lives on a device.
    let ownerOf (r: RawTensor) : IDeviceBackend option =
        match r.Storage with
        | Storage.Device d ->
            match d.Owner with
            | :? IDeviceBackend as b -> Some b
            | _ -> invalidOp (sprintf "the buffer on %s names no device backend as its owner" d.DeviceName)
        | _ -> None

    /// The selected backend when it is a device backend: new tensors are created on its device.
    let selectedDevice () : IDeviceBackend option =
        match Backend.tryGet () with
        | Some(:? IDeviceBackend as d) -> Some d
        | _ -> None

    /// The backend that runs operations on host tensors: the selected one unless it is a device
    /// backend, else the default CPU backend.
    let hostBackend () : IBackend =
        match Backend.tryGet () with
        | Some b when not (b :? IDeviceBackend) -> b
        | _ -> DefaultBackend.get ()

    /// Host tensor `x` moved to the device of the selected backend, if one is selected (the
    /// creation functions' rule, like torch.set_default_device); else `x` itself.
    let onDefault (x: RawTensor) =
        match selectedDevice () with
        | Some d -> d.Upload x
        | None -> x

    /// Host tensor `x` moved to the place of `like` (a device, or the host).
    let onPlaceOf (like: RawTensor) (x: RawTensor) =
        match ownerOf like, ownerOf x with
        | Some d, None -> d.Upload x
        | None, Some _ -> RawTensor.toHost x
        | Some d, Some e when not (obj.ReferenceEquals(d, e)) -> d.Upload(RawTensor.toHost x)
        | _ -> x

    /// The backend for an operation on `xs`, and the inputs as that backend takes them (rank-0
    /// host tensors moved to the device). Fails naming both places when inputs live apart.
    let route (op: string) (xs: RawTensor[]) : IBackend * RawTensor[] =
        let mutable device = None
        let mutable first = -1

        for i in 0 .. xs.Length - 1 do
            match ownerOf xs.[i], device with
            | Some d, None ->
                device <- Some d
                first <- i
            | Some d, Some e when not (obj.ReferenceEquals(d, e)) ->
                Shape.fail
                    op
                    (sprintf
                        "input %d is on %s but input %d is on %s; an operation's inputs must share one device (move tensors with Tensor.toDevice or Tensor.toHost)"
                        first
                        e.DeviceName
                        i
                        d.DeviceName)
            | _ -> ()

        match device with
        | None -> hostBackend (), xs
        | Some d ->
            let moved =
                xs
                |> Array.mapi (fun i x ->
                    match x.Storage with
                    | Storage.Device _ -> x
                    | _ when x.Shape.Length = 0 -> d.Upload x
                    | _ ->
                        Shape.fail
                            op
                            (sprintf
                                "input %d is on %s but input %d %s is on the host; an operation's inputs must share one device (move tensors with Tensor.toDevice or Tensor.toHost; only rank-0 host tensors move by themselves)"
                                first
                                d.DeviceName
                                i
                                (Shape.show x.Shape)))

            d :> IBackend, moved

/// The backend the engine calls: every kernel goes to the backend that owns its inputs
/// (<see cref="T:Gan.Functional.Kernels.Placement"/>). Its name is the selected backend's.
[<Sealed>]
type internal DispatchBackend private () =
    static let instance = DispatchBackend()

    static let one op (x: RawTensor) =
        let b, r = Placement.route op [| x |]
        b, r.[0]

    static let two op (x: RawTensor) (y: RawTensor) =
        let b, r = Placement.route op [| x; y |]
        b, r.[0], r.[1]

    static let optimizerOf (b: IBackend) =
        match b with
        | :? IFusedOptimizer as f -> f
        | _ -> ReferenceBackend.Instance :> IFusedOptimizer

    /// The one instance.
    static member Instance = instance

    interface IBackend with
        member _.Name =
            match Backend.tryGet () with
            | Some b -> b.Name
            | None -> (DefaultBackend.get ()).Name

        member _.Unary(op, x) =
            let b, x = one "unary" x
            b.Unary(op, x)

        member _.Binary(op, a, c, outShape) =
            let b, a, c = two (sprintf "%A" op) a c
            b.Binary(op, a, c, outShape)

        member _.Where(mask, a, c) =
            let b, r = Placement.route "where" [| mask; a; c |]
            b.Where(r.[0], r.[1], r.[2])

        member _.Reduce(op, x, axes) =
            let b, x = one "reduce" x
            b.Reduce(op, x, axes)

        member _.ArgMax(x, axis) =
            let b, x = one "argmax" x
            b.ArgMax(x, axis)

        member _.View(x, offset, strides, shape) =
            let b, x = one "view" x
            b.View(x, offset, strides, shape)

        member _.Embed(x, shape, offset, strides) =
            let b, x = one "embed" x
            b.Embed(x, shape, offset, strides)

        member _.Concat(xs, axis) =
            let b, xs = Placement.route "concat" xs
            b.Concat(xs, axis)

        member _.Take(x, index, shape) =
            let b, x = one "take" x
            b.Take(x, index, shape)

        member _.ScatterAdd(src, index, shape) =
            let b, src = one "scatter_add" src
            b.ScatterAdd(src, index, shape)

        member _.MatMul(a, transA, c, transB, outShape) =
            let b, a, c = two "matmul" a c
            b.MatMul(a, transA, c, transB, outShape)

        member _.Conv2d(x, w, spec) =
            let b, x, w = two "conv2d" x w
            b.Conv2d(x, w, spec)

        member _.Conv2dInputGrad(g, w, spec, xShape) =
            let b, g, w = two "conv_transpose2d" g w
            b.Conv2dInputGrad(g, w, spec, xShape)

        member _.Conv2dWeightGrad(x, g, spec, wShape) =
            let b, x, g = two "conv2d_weight" x g
            b.Conv2dWeightGrad(x, g, spec, wShape)

        member _.MaxPool2dIndices(x, kh, kw, spec) =
            let b, x = one "max_pool2d" x
            b.MaxPool2dIndices(x, kh, kw, spec)

        member _.Cast(x, dtype) =
            let b, x = one "cast" x
            b.Cast(x, dtype)

        member _.LeakyRelu(x, alpha) =
            let b, x = one "leaky_relu" x
            b.LeakyRelu(x, alpha)

        member _.LeakyReluBackward(g, x, alpha) =
            let b, g, x = two "leaky_relu_backward" g x
            b.LeakyReluBackward(g, x, alpha)

        member _.PairwiseL1(x, y) =
            let b, x, y = two "pairwise_l1" x y
            b.PairwiseL1(x, y)

        member _.PairwiseL1Backward(g, x, y) =
            let b, r = Placement.route "pairwise_l1_backward" [| g; x; y |]
            b.PairwiseL1Backward(r.[0], r.[1], r.[2])

        member _.BatchNormForward(x, gamma, beta, eps) =
            let b, r = Placement.route "batch_norm" [| x; gamma; beta |]
            b.BatchNormForward(r.[0], r.[1], r.[2], eps)

        member _.BatchNormBackward(g, x, gamma, mean, var, eps) =
            let b, r = Placement.route "batch_norm_backward" [| g; x; gamma; mean; var |]
            b.BatchNormBackward(r.[0], r.[1], r.[2], r.[3], r.[4], eps)

        member _.Recycle x =
            let b, x = one "recycle" x
            b.Recycle x

        member _.NextPhase() =
            (Placement.hostBackend ()).NextPhase()
            Placement.selectedDevice () |> Option.iter (fun d -> d.NextPhase())

    interface IFusedOptimizer with
        member _.AdamStep(p, g, m, v, c) =
            let b, r = Placement.route "adam" [| p; g; m; v |]
            (optimizerOf b).AdamStep(r.[0], r.[1], r.[2], r.[3], c)

        member _.AdamStepDonated(p, g, m, v, c) =
            let b, r = Placement.route "adam" [| p; g; m; v |]
            (optimizerOf b).AdamStepDonated(r.[0], r.[1], r.[2], r.[3], c)
