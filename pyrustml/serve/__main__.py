"""python -m pyrustml.serve: the same as pyrustml-serve."""

from .cli import entry

entry()
