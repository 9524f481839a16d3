"""Recipes that build model files: training, conversion, quantization.

Each recipe is a subpackage with heavy dependencies of its own (an install extra), kept
apart from the app: nothing outside ``stagewise.models.recipes`` imports them.
"""
