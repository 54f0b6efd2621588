"""The public kernel API (`pyrustml.kernels`, a name users and tests rely on): the wrappers live in
pyrustml.engine.kernels; this module re-exports them."""

from .engine.kernels import *  # noqa: F403
