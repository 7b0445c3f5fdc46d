module LayerTests
