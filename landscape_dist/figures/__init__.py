"""Figures and output files: static plots, the live preview, the interactive page, the output
formats' writers.

The figures are drawn off screen (matplotlib's Agg backend) and written to files; inside a
Jupyter kernel the notebook's own backend is kept, so that the user's own plots still show.
"""

import sys

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
