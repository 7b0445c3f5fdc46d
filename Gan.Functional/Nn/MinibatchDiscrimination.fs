namespace Gan.Functional.Nn

open Gan.Functional

/// Minibatch discrimination (Salimans et al. 2016, "Improved Techniques for Training GANs").
module MinibatchDiscrimination =

    /// x [N, In] → [N, B + In]: M = reshape(Linear(x), [N, B, C]);
    /// o_b(xᵢ) = Σ_{j≠i} exp(−‖M_{i,b} − M_{j,b}‖₁); the output is concat(o, x) along axis 1.
    /// The projection is the sub-module "lin" ("lin.weight" [B·C, In], "lin.bias").
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
                    let m = Tensor.permute [| 1; 0; 2 |] (Tensor.reshape [| n; kernels; kernelDim |] m)
                    let d = Tensor.cdistL1 m m
                    // exp(−0) = 1 for j = i: subtracting it leaves the sum over j ≠ i
                    let o = Tensor.sumAxes [| 2 |] false (Tensor.exp (-d)) - 1.0
                    Tensor.concat 1 [ Tensor.transpose 0 1 o; x ], Map.empty
        }
