"""Build hook for the optional C helpers: the record walker (analyzer/decode/_walk.c), the
payload digests (analyzer/flows/_digest.c) and the record filler (analyzer/flows/_fill.c).

Everything else is configured in pyproject.toml. ``optional=True``: without a C compiler the
install still succeeds and the same work runs in Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("analyzer.decode._walk", ["analyzer/decode/_walk.c"], optional=True),
        Extension("analyzer.flows._digest", ["analyzer/flows/_digest.c"], optional=True),
        Extension("analyzer.flows._fill", ["analyzer/flows/_fill.c"], optional=True),
    ]
)
