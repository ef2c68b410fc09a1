"""Build hook for the optional C record walker (analyzer/decode/_walk.c).

Everything else is configured in pyproject.toml. ``optional=True``: without a C compiler the
install still succeeds and the decoder runs the same walk in Python.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("analyzer.decode._walk", ["analyzer/decode/_walk.c"], optional=True)])
