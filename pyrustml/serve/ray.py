"""Ray Serve: the same OpenAI routes, each replica a pyrustml engine, behind Ray's HTTP proxy.

    serve run pyrustml.serve.ray:app model=/models/gemma-3-1b-it replicas=2 threads_per_replica=4

or from Python: `serve.run(build_app("/models/gemma-3-1b-it", replicas=2, threads_per_replica=4))`.
Every replica loads the model itself (the path or hub id must resolve on every node), runs the
app of app.py over it, and tags its responses with X-Pyrustml-Instance (host:pid), so a client
can tell which replica answered. Ray's router sends a replica at most 2 x `parallel` requests
at a time (the replica admits that many); the rest wait in Ray's queue.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

from ray import serve
from ray.serve import Application

from ..errors import OptionError

DEFAULT_PARALLEL = 4  # the engine's default number of sequences per replica

__all__ = ["app", "build_app"]


class ReplicaLoad(TypedDict, total=False):
    """pyrustml.load's options that build_app hands every replica as they are."""

    parallel: int | None  # sequences per replica (default DEFAULT_PARALLEL)
    ctx: int | None
    quant: str  # default "q8_0"
    revision: str | None


# eq=False: a dict field has no hash, and settings are never compared.
@dataclass(frozen=True, eq=False)
class ReplicaSettings:
    """What each replica needs to load and serve the model (pickled to the replicas)."""

    model: str
    threads: int
    load: ReplicaLoad
    served_model_name: str
    api_key: str | None
    max_queue: int


def _replica_app(s: ReplicaSettings) -> Any:
    """Runs on the replica, when Ray starts it: load the model, build the ASGI app."""
    import pyrustml

    from .app import ServeConfig, create_app

    model = pyrustml.load(s.model, threads=s.threads, **s.load)
    cfg = ServeConfig(
        model_name=s.served_model_name,
        api_key=s.api_key,
        max_queue=s.max_queue,
        instance=f"{socket.gethostname()}:{os.getpid()}",
    )
    return create_app(model, cfg)


def build_app(
    model: str,
    *,
    replicas: int = 1,
    threads_per_replica: int = 1,
    served_model_name: str | None = None,
    api_key: str | None = None,
    name: str = "pyrustml",
    **load: Unpack[ReplicaLoad],
) -> Application:
    """A Ray Serve application of `replicas` replicas, each reserving threads_per_replica CPUs and
    running an engine with that many threads, loaded with the `load` options (parallel, ctx,
    quant, revision) as pyrustml.load takes them."""
    from .cli import served_name

    if replicas < 1 or threads_per_replica < 1:
        raise OptionError("replicas and threads_per_replica must be at least 1")
    # Checked here, not on each replica when Ray starts it (the keywords are typed, not checked).
    unknown = sorted(set(load) - set(ReplicaLoad.__annotations__))
    if unknown:
        raise OptionError(
            f"build_app got an unknown option {unknown[0]!r} (load options: "
            f"{', '.join(ReplicaLoad.__annotations__)}; threads: threads_per_replica)"
        )
    slots = load.get("parallel") or DEFAULT_PARALLEL
    settings = ReplicaSettings(
        model=model,
        threads=threads_per_replica,
        load=load,
        served_model_name=served_model_name or served_name(model),
        api_key=api_key,
        # Never below Ray's own cap, so Ray's queue, not a 503, absorbs bursts.
        max_queue=2 * slots,
    )

    def build_asgi() -> Any:
        return _replica_app(settings)

    ingress = serve.ingress(build_asgi)()
    deployment = serve.deployment(
        name=name,
        num_replicas=replicas,
        ray_actor_options={"num_cpus": threads_per_replica},
        max_ongoing_requests=2 * slots,  # requests Ray sends one replica at a time
    )(ingress)
    application: Application = deployment.bind()
    return application


def _int(args: Mapping[str, str], key: str) -> int | None:
    v = args.get(key)
    if v is None:
        return None
    try:
        return int(v)
    except ValueError:
        raise OptionError(f"{key} must be an integer, got {v!r}") from None


def app(args: Mapping[str, str]) -> Application:
    """The application builder of `serve run pyrustml.serve.ray:app model=... [replicas=N]
    [threads_per_replica=T] [parallel=N] [ctx=N] [quant=q8_0] [served_model_name=NAME]
    [api_key=KEY]` (Ray passes the key=value arguments as strings)."""
    known = {
        "model",
        "replicas",
        "threads_per_replica",
        "parallel",
        "ctx",
        "quant",
        "revision",
        "served_model_name",
        "api_key",
    }
    unknown = sorted(set(args) - known)
    if unknown:
        raise OptionError(f"unknown arguments {unknown}; known: {sorted(known)}")
    if "model" not in args:
        raise OptionError("model=PATH_OR_REPO_ID is required")
    return build_app(
        args["model"],
        replicas=_int(args, "replicas") or 1,
        threads_per_replica=_int(args, "threads_per_replica") or 1,
        parallel=_int(args, "parallel"),
        ctx=_int(args, "ctx"),
        quant=args.get("quant", "q8_0"),
        revision=args.get("revision"),
        served_model_name=args.get("served_model_name"),
        api_key=args.get("api_key") or os.environ.get("PYRUSTML_API_KEY"),
    )
