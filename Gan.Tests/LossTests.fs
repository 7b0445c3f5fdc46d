module LossTests
