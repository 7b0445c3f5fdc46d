module ZooTests
