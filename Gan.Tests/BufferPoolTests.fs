/// Buffer recycling: the pool hands a dead buffer out again for the same length, once; the
/// backward pass recycles only adjoints nothing holds any more (the suite runs with
/// GAN_POOL_CHECK=1, so a recycled buffer that is still in use turns results into NaN, in
/// these tests and in every other gradient and training test).
module BufferPoolTests

open System
open Xunit
open Gan.Functional
open Gan.Functional.Kernels
open GradCheck

[<Fact>]
let ``the test suite runs with the pool check on`` () =
    // Gan.Tests/pool-check.runsettings sets GAN_POOL_CHECK=1 for every test process
    Assert.True(BufferPool.poison, "GAN_POOL_CHECK=1 is not set: recycling bugs would go unseen")

[<Fact>]
let ``a given buffer is handed out again for its length, and only once`` () =
    // a length no other test uses, so that parallel tests cannot take the buffer
    let n = BufferPool.minLength + 4099
    let a = BufferPool.rent n
    BufferPool.give a
    BufferPool.give a
    let r1 = BufferPool.rent n
    let r2 = BufferPool.rent n
    Assert.Same(a, r1)
    Assert.NotSame(a, r2)
    Assert.Equal(n, r2.Length)

[<Fact>]
let ``a buffer left unclaimed for a whole phase is released`` () =
    let n = BufferPool.minLength + 4133
    let a = BufferPool.rent n
    BufferPool.give a
    // given in phase p; after two boundaries it sat idle through all of phase p + 1
    BufferPool.nextPhase ()
    BufferPool.nextPhase ()
    Assert.NotSame(a, BufferPool.rent n)

[<Fact>]
let ``a step's forward buffers come back when it ends, except those its new state keeps`` () =
    let n, m = BufferPool.minLength + 4201, BufferPool.minLength + 4211
    BufferPool.beginStep (16L <<< 20)
    let a = BufferPool.rent n
    let kept = BufferPool.rent m
    BufferPool.endStep (Collections.Generic.HashSet [ kept ])
    Assert.Same(a, BufferPool.rent n)
    Assert.NotSame(kept, BufferPool.rent m)

[<Fact>]
let ``a step that rents more than the step pool's size gives nothing back`` () =
    // a step pool of 16 MB: the second buffer takes the step over it
    let n = BufferPool.minLength + 4219
    let big = 4 * 1024 * 1024 + 1
    BufferPool.beginStep (16L <<< 20)
    let a = BufferPool.rent n
    BufferPool.nextPhase ()
    let b = BufferPool.rent big
    BufferPool.endStep (Collections.Generic.HashSet())
    Assert.NotSame(a, BufferPool.rent n)
    Assert.NotSame(b, BufferPool.rent big)

[<Fact>]
let ``a step that rents exactly the step pool's size gives everything back`` () =
    // a 1 MB step pool (small, so that the pool's cap has room while other tests fill it)
    let n = BufferPool.minLength + 4223
    let rest = (1024 * 1024 - 4 * n) / 4
    BufferPool.beginStep (1L <<< 20)
    let a = BufferPool.rent n
    let b = BufferPool.rent rest
    BufferPool.endStep (Collections.Generic.HashSet())
    Assert.Equal(1L <<< 20, BufferPool.lastStepGiven ())
    Assert.Same(b, BufferPool.rent rest)
    Assert.Same(a, BufferPool.rent n)

[<Fact>]
let ``a buffer the step gave back and another thread rented since is not given again when the step ends`` () =
    let n = BufferPool.minLength + 4241
    BufferPool.beginStep (16L <<< 20)
    let scratch = BufferPool.rent n
    // dead within the step (a kernel's scratch buffer), then rented by another thread, which
    // owns it from then on
    BufferPool.give scratch
    // a thread of its own (a task could run inline on this thread, inside the step)
    let mutable other: float32[] = [||]
    let t = Threading.Thread(fun () -> other <- BufferPool.rent n)
    t.Start()
    t.Join()
    Assert.Same(scratch, other)
    Array.Fill(other, 7.0f)
    BufferPool.endStep (Collections.Generic.HashSet())
    // not given again: not poisoned under the pool check, not handed out a second time
    Assert.Equal(0L, BufferPool.lastStepGiven ())
    Assert.True(other |> Array.forall (fun v -> v = 7.0f))
    Assert.NotSame(other, BufferPool.rent n)

[<Fact>]
let ``a cancelled step gives nothing back`` () =
    let n = BufferPool.minLength + 4229
    BufferPool.beginStep (16L <<< 20)
    let a = BufferPool.rent n
    BufferPool.cancelStep ()
    BufferPool.endStep (Collections.Generic.HashSet())
    Assert.NotSame(a, BufferPool.rent n)

[<Fact>]
let ``a given buffer is poisoned with NaN under the pool check`` () =
    let a = Array.create (BufferPool.minLength + 4111) 1.0f
    BufferPool.give a
    Assert.True(a |> Array.forall Single.IsNaN)

[<Fact>]
let ``small buffers are left to the GC`` () =
    let n = 97
    let a = BufferPool.rent n
    BufferPool.give a
    Assert.NotSame(a, BufferPool.rent n)

[<Fact>]
let ``rentZeroed gives zeros even after a poisoned buffer came back`` () =
    let n = BufferPool.minLength + 4127
    let a = BufferPool.rent n
    BufferPool.give a
    let z = BufferPool.rentZeroed n
    Assert.Same(a, z)
    Assert.True(z |> Array.forall ((=) 0.0f))

/// A graph with fan-out (x·w used twice), pass-through adjoints (a + b gives g to both, reshape
/// and sumTo return g itself), broadcasting and a shared leaf: everything a refcount can get wrong.
let private tangled (ps: Map<string, Tensor>) =
    let x, w, b = ps.["x"], ps.["w"], ps.["b"]
    let h = Tensor.matmul x w
    let y = Tensor.tanh (h + h + b) // h twice, b broadcast over the rows
    let r = Tensor.reshape [| 64; 8; 64 |] y
    let s = Tensor.sigmoid r * Tensor.exp (Tensor.neg (Tensor.square r))
    // the kinks of (leaky) ReLU sit on exact inputs, so float32 and float64 take the same branch
    let z = y * Tensor.leakyRelu 0.2 x

    Tensor.sum (s + Tensor.reshape [| 64; 8; 64 |] z)
    + Tensor.sum (Tensor.relu (w - 0.1))

[<Fact>]
let ``a first-order backward recycles dead adjoints and leaves every gradient unchanged`` () =
    let key = Random.key 7UL
    let ks = Random.splitN 3 key

    let ps32 =
        Map [
            "x", Tensor.randn ks.[0] [| 64; 512 |]
            "w", Tensor.randn ks.[1] [| 512; 512 |] * 0.05
            "b", Tensor.randn ks.[2] [| 512 |]
        ]

    // float64 buffers are never pooled: the reference gradients
    let ps64 = ps32 |> Map.map (fun _ t -> Tensor.cast Float64 t)
    let expected = Autodiff.grads tangled ps64
    let before = BufferPool.reusedTotal ()
    // float32 against float64 over 512-term sums; a recycling bug gives NaN or foreign values
    let float32Tolerance = { Atol = 2e-4; Rtol = 2e-3 }

    for run in 1..2 do
        let got = Autodiff.grads tangled ps32

        assertGradsClose float32Tolerance (sprintf "run %d" run) got expected

    // the second backward ran on buffers the first one recycled
    Assert.True(BufferPool.reusedTotal () > before, "no buffer was reused")
