"""A research run: sources, polite fetching, URL safety, extraction, synthesis, the run and its results.

``torq_nb.research`` itself is the function (torq_nb/api.py); import this layer's modules by their full
names, e.g. ``from torq_nb.research.sources import Source``.
"""
