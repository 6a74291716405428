"""The Keras side: model and data sources, the compiled evaluator, quantities, training and paths.

Importing this package does not import TensorFlow; its modules that need it do.
"""
