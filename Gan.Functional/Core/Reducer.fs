namespace Gan.Functional

open System

/// Sums buffers across the ranks (processes) of a data-parallel job: the one collective the
/// engine needs (MPI_Allreduce with MPI_SUM, in place). Every rank calls the same methods in the
/// same order with buffers of the same length; afterwards each rank's buffer holds the
/// elementwise sum over all ranks. The engine does no I/O itself: a host supplies the
/// implementation (Gan.Host binds Open MPI), tests a fake one.
type IReducer =
    /// This process's index in the job, 0 ≤ Rank &lt; Ranks.
    abstract Rank: int
    /// The number of ranks in the job.
    abstract Ranks: int
    /// Replaces `values` by their elementwise sum over all ranks.
    abstract SumInPlace: values: Span<float32> -> unit
    /// Replaces `values` by their elementwise sum over all ranks.
    abstract SumInPlace: values: Span<float> -> unit

/// Reducers that need no other process.
module Reducer =

    /// A job of one rank: the sum is the buffer itself.
    let single = {
        new IReducer with
            member _.Rank = 0
            member _.Ranks = 1
            member _.SumInPlace(_: Span<float32>) = ()
            member _.SumInPlace(_: Span<float>) = ()
    }
