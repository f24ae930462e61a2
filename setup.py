"""Builds the optional C accelerator of pgoutput decoding; everything else is in pyproject.toml.

``optional=True``: without a compiler (e.g. a slim image) the install still succeeds and the
decoder uses its pure-Python loop.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("paydata._speedups", ["plugins/paydata/_speedups.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ]
)
