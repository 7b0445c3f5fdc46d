namespace Gan.Functional.CSharp

open Gan.Functional
open Gan.Functional.Gan

/// Latent-space tools: interpolation and vector arithmetic (S3). Vectors are float32 arrays.
[<AbstractClass; Sealed>]
type Latent =
    static member private Walk (f: Tensor -> Tensor -> int -> Tensor) (z0: float32[]) (z1: float32[]) (steps: int) =
        if z0.Length <> z1.Length || z0.Length = 0 then
            invalidArg
                "z1"
                (sprintf "the end points have %d and %d values; they must be equal and non-zero" z0.Length z1.Length)

        if steps < 1 then
            invalidArg "steps" (sprintf "steps must be at least 1, got %d" steps)

        Tensor.toArray (f (Tensor.ofArray [| z0.Length |] z0) (Tensor.ofArray [| z1.Length |] z1) steps)

    /// `steps` points on the segment z0 → z1, ends included: flat [steps, D].
    static member Lerp(z0: float32[], z1: float32[], steps: int) = Latent.Walk Sampling.lerp z0 z1 steps

    /// `steps` points on the great circle z0 → z1 (slerp), ends included: flat [steps, D].
    static member Slerp(z0: float32[], z1: float32[], steps: int) = Latent.Walk Sampling.slerp z0 z1 steps

    /// mean(a) − mean(b) + mean(c) over groups of latent vectors of one length D: [D].
    static member Arithmetic(a: float32[][], b: float32[][], c: float32[][]) : float32[] =
        let stack (name: string) (g: float32[][]) =
            if g.Length = 0 then
                invalidArg name (sprintf "group %s is empty" name)

            let d = g.[0].Length

            if g |> Array.exists (fun v -> v.Length <> d) || d <> a.[0].Length then
                invalidArg name "all vectors must have the same length"

            Tensor.ofArray [| g.Length; d |] (Array.concat g)

        if a.Length = 0 then
            invalidArg "a" "group a is empty"

        Tensor.toArray (Sampling.arithmetic (stack "a" a) (stack "b" b) (stack "c" c))
