"""The pure NumPy core: weight layout, grid and tiles, directions, planes, projection, shards and
the description of what a point yields."""
