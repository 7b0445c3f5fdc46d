module Smoke
open Xunit
[<Fact>]
let ``one is one`` () = Assert.Equal(1, Gan.Functional.Placeholder.x)
