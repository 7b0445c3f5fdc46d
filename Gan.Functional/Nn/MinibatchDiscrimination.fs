namespace Gan.Functional.Nn

open Gan.Functional

/// Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for Training GANs").
module MinibatchDiscrimination =

    /// x [N, In] → [N, B + In]: M = reshape(Linear(x), [N, B, C]);
    /// o_b(xᵢ) = Σ_{j≠i} exp(−‖M_{i,b} − M_{j,b}‖₁); the output is concat(o, x) along axis 1.
    /// The projection is the sub-module "lin" ("lin.weight" [B·C, In], "lin.bias"). In a
    /// data-parallel step the j run over the whole batch: M is gathered from every rank.
    let layer (inFeatures: int) (kernels: int) (kernelDim: int) =
        let lin = Layer.named "lin" (Layers.linear inFeatures (kernels * kernelDim))

        {
            Describe = sprintf "MinibatchDiscrimination(%d, B=%d, C=%d)" inFeatures kernels kernelDim
            Init = lin.Init
            Apply =
                fun vars ctx x ->
                    let n = (Tensor.shape x).[0]
                    let m, _ = lin.Apply vars ctx x
                    // [B, N, C]: per kernel b, the N rows M_{·,b} → L1 distances [B, N, N]
                    let m = Tensor.reshape [| n; kernels; kernelDim |] m

                    // in a data-parallel step, every rank's rows (gathered): the sum runs over the
                    // whole batch, as in one process
                    let all =
                        match ctx.Shard with
                        | Some sh when sh.Reducer.Ranks > 1 -> Tensor.allGather sh.Reducer sh.Offset sh.Total m
                        | _ -> m

                    let m, all = Tensor.permute [| 1; 0; 2 |] m, Tensor.permute [| 1; 0; 2 |] all
                    let d = Tensor.cdistL1 m all
                    // exp(−0) = 1 for j = i: subtracting it leaves the sum over j ≠ i
                    let o = Tensor.sumAxes [| 2 |] false (Tensor.exp (-d)) - 1.0
                    Tensor.concat 1 [ Tensor.transpose 0 1 o; x ], Map.empty
        }
