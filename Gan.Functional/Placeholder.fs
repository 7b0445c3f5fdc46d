module Gan.Functional.Placeholder
let x = 1
