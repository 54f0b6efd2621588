"""python -m pyrustml: the same as pyrustml-infer."""

from .cli import entry

entry()
