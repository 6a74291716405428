"""Figures and output files: static plots, the live preview, and the output-format registry."""
