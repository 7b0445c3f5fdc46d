/// Float32 kernels for batched pairwise L1 distances (minibatch discrimination's ‖Mᵢ − Mⱼ‖₁),
/// x [G, P, C] and y [G, R, C] → [G, P, R]. Composed from broadcasting, the distances build
/// a G·P·R·C difference tensor and its absolute value (mbd28: two 16.8 MB tensors kept per
/// discriminator pass, and as many again for their adjoints); here each distance is summed in
/// vector registers from the two rows, and the adjoint recomputes the signs instead of keeping
/// them. Rows of the output run in parallel.
module internal Gan.Functional.Kernels.PairwiseL1

open System
open System.Numerics
open System.Threading.Tasks

let private lanes = Vector<float32>.Count

/// Runs `body row` for every row in [0, rows), in parallel when the work (rows × perRow
/// multiply-adds) is large enough to pay for waking the other threads.
let private forRows (threads: int) (rows: int) (perRow: int) (body: int -> unit) =
    if threads > 1 && int64 rows * int64 perRow >= 65536L then
        let pieces = min rows (threads * 4)

        Parallel.For(
            0,
            pieces,
            ParallelOptions(MaxDegreeOfParallelism = threads),
            fun piece ->
                for row in rows * piece / pieces .. rows * (piece + 1) / pieces - 1 do
                    body row
        )
        |> ignore
    else
        for row in 0 .. rows - 1 do
            body row

/// d[g, p, r] = Σ_c |x[g, p, c] − y[g, r, c]| into `d` (G·P·R floats).
let forward threads (groups: int) (p: int) (r: int) (c: int) (x: float32[]) (y: float32[]) (d: float32[]) =
    forRows threads (groups * p) (r * c) (fun row ->
        let g = row / p
        let xo = row * c

        for j in 0 .. r - 1 do
            let yo = (g * r + j) * c
            let mutable acc = Vector<float32>.Zero
            let mutable k = 0

            while k + lanes <= c do
                acc <- acc + Vector.Abs(Vector<float32>(x, xo + k) - Vector<float32>(y, yo + k))
                k <- k + lanes

            let mutable s = Vector.Sum acc

            while k < c do
                s <- s + abs (x.[xo + k] - y.[yo + k])
                k <- k + 1

            d.[row * r + j] <- s)

/// dx[g, p, c] = Σ_r gd[g, p, r]·sign(x[g, p, c] − y[g, r, c]) into `dx` (G·P·C floats), with
/// sign 0 = 0 (equal entries, such as a row against itself, contribute nothing).
let backward
    threads
    (groups: int)
    (p: int)
    (r: int)
    (c: int)
    (gd: float32[])
    (x: float32[])
    (y: float32[])
    (dx: float32[])
    =
    forRows threads (groups * p) (r * c) (fun row ->
        let g = row / p
        let xo = row * c
        Array.Clear(dx, xo, c)

        for j in 0 .. r - 1 do
            let gj = gd.[row * r + j]

            if gj <> 0.0f then
                let yo = (g * r + j) * c
                let gv = Vector<float32>(gj)
                let mutable k = 0

                while k + lanes <= c do
                    let diff = Vector<float32>(x, xo + k) - Vector<float32>(y, yo + k)

                    let step =
                        Vector.ConditionalSelect(
                            Vector.GreaterThan(diff, Vector<float32>.Zero),
                            gv,
                            Vector<float32>.Zero
                        )
                        - Vector.ConditionalSelect(
                            Vector.LessThan(diff, Vector<float32>.Zero),
                            gv,
                            Vector<float32>.Zero
                        )

                    (Vector<float32>(dx, xo + k) + step).CopyTo(dx, xo + k)
                    k <- k + lanes

                while k < c do
                    let diff = x.[xo + k] - y.[yo + k]

                    if diff > 0.0f then
                        dx.[xo + k] <- dx.[xo + k] + gj
                    elif diff < 0.0f then
                        dx.[xo + k] <- dx.[xo + k] - gj

                    k <- k + 1)
