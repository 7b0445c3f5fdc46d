/// Running FsCheck properties from xunit: every run logs its seed, and a failing run can be
/// replayed exactly by setting FSCHECK_REPLAY="seed,gamma" (the two numbers it prints).
module Prop

open System
open FsCheck
open FsCheck.FSharp

let private replay () =
    match Environment.GetEnvironmentVariable "FSCHECK_REPLAY" with
    | null
    | "" -> None
    | s ->
        let parts = s.Split(',')
        Some(UInt64.Parse(parts.[0].Trim()), UInt64.Parse(parts.[1].Trim()))

/// Checks `property` over `maxTest` generated cases; throws (failing the xunit test) with the
/// counterexample and the replay seed when it does not hold.
let checkN (name: string) (maxTest: int) (property: Property) =
    let seed =
        match replay () with
        | Some r -> r
        | None -> uint64 (Random.Shared.NextInt64(1L, Int64.MaxValue)), 1297UL

    Console.WriteLine(sprintf "[fscheck] %s FSCHECK_REPLAY=%d,%d" name (fst seed) (snd seed))

    let replay = {
        Rnd = Rnd(fst seed, snd seed)
        Size = None
    }

    let config =
        Config.QuickThrowOnFailure.WithMaxTest(maxTest).WithReplay(Some replay).WithName(name)

    Check.One(config, property)

/// <see cref="checkN"/> with 100 cases.
let check name property = checkN name 100 property
