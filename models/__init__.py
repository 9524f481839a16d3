"""Stagewise core: models, the llama.cpp engine, the stage format and the beam search.

This package never imports Qt; front ends live in ``desktop``.
"""
