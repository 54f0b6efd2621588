"""pyrustml-serve (also python -m pyrustml.serve): the OpenAI-compatible server on uvicorn.

Exit codes: 0 after a clean stop (SIGTERM or Ctrl-C, drained), 1 when the model cannot be
loaded or the port cannot be bound, 2 for a bad option. Each error is one line on stderr.

SIGTERM (or a first Ctrl-C) drains: new requests get 503, the admitted ones run on for at most
--drain-timeout seconds, then uvicorn shuts down (cancelling what is left) and the process
exits 0. A second signal stops at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

from ..cli import add_load_flags

if TYPE_CHECKING:
    from .app import ServerState

PROG = "pyrustml-serve"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        """One line on stderr and exit 2."""
        print(f"{PROG}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _int_at_least(minimum: int, need: str) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum (`need` names it in the error)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {need}, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {need}, got {v}")
        return v

    return parse


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "an integer >= 0")


def _port(text: str) -> int:
    v = _non_negative(text)
    if v > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {v}")
    return v


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text}")
    return v


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Serve a checkpoint over an OpenAI-compatible HTTP API.")
    p.add_argument("model", metavar="MODEL", help="local checkpoint directory or hub repo id")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8080, help="port to bind (default 8080; 0 picks one)")
    p.add_argument("--parallel", "-np", type=_positive, default=None, help="sequences decoded together")
    p.add_argument("--ctx", "-c", type=_positive, default=None, help="context per sequence, in tokens")
    add_load_flags(p, _positive)
    p.add_argument("--api-key", default=os.environ.get("PYRUSTML_API_KEY"), help="require Bearer KEY")
    p.add_argument(
        "--served-model-name",
        "--model-alias",
        "-a",
        dest="name",
        default=None,
        help="the model id clients send and /v1/models lists (default: the directory's name)",
    )
    p.add_argument(
        "--max-queue",
        type=_non_negative,
        default=64,
        help="requests admitted beyond --parallel before 503 + Retry-After (default 64)",
    )
    p.add_argument("--max-body-bytes", type=_positive, default=2 * 1024 * 1024, help="larger bodies get 413")
    p.add_argument(
        "--drain-timeout", type=_seconds, default=30.0, help="seconds running requests get on SIGTERM"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def served_name(source: str) -> str:
    stripped = source.rstrip("/")
    return os.path.basename(stripped) if os.path.isdir(stripped) else stripped


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fail(msg: str, code: int) -> int:
    print(f"{PROG}: error: {msg}", file=sys.stderr)
    return code


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(name)s: %(message)s", stream=sys.stderr)
    if not is_loopback(args.host) and not args.api_key:
        print(
            f"{PROG}: warning: binding {args.host} without --api-key: anyone who can reach this "
            "port can use the model",
            file=sys.stderr,
        )
    # Bind before loading, so a taken port fails in an instant, not after a long load.
    try:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((args.host, args.port))
    except OSError as exc:
        return _fail(f"cannot bind {args.host}:{args.port}: {exc.strerror or exc}", 1)

    import pyrustml
    from pyrustml.errors import PyrustmlError

    try:
        model = pyrustml.load(
            args.model,
            quant=args.quant,
            threads=args.threads,
            revision=args.revision,
            ctx=args.ctx,
            parallel=args.parallel,
        )
    except PyrustmlError as exc:
        sock.close()
        return _fail(str(exc), 1)
    except KeyboardInterrupt:
        sock.close()
        return _fail("interrupted while loading", 130)

    from .app import ServeConfig, create_app

    cfg = ServeConfig(
        model_name=args.name or served_name(args.model),
        api_key=args.api_key or None,
        max_queue=args.max_queue,
        max_body_bytes=args.max_body_bytes,
    )
    app = create_app(model, cfg)
    serve(app, app.state.serve, sock, args.drain_timeout, args.log_level)
    return 0


def serve(app: object, state: ServerState, sock: socket.socket, drain_timeout: float, log_level: str) -> None:
    import uvicorn

    class DrainingServer(uvicorn.Server):
        """uvicorn, except that the first SIGTERM/SIGINT drains instead of closing the listener:
        new requests still reach the app and get 503 until the admitted ones are done."""

        deadline = 0.0

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if not state.draining:
                state.draining = True
                self.deadline = time.monotonic() + drain_timeout
                logging.getLogger("pyrustml.serve").info(
                    "%s: draining %d request(s), at most %.0f s",
                    signal.Signals(sig).name,
                    state.busy,
                    drain_timeout,
                )
            elif self.should_exit:
                self.force_exit = True
            else:
                self.should_exit = True

        @contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            # Like uvicorn's, minus re-raising the signal after shutdown: a drained stop exits 0.
            original = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in original.items():
                    signal.signal(s, handler)

        async def on_tick(self, counter: int) -> bool:
            if state.draining and (state.busy == 0 or time.monotonic() >= self.deadline):
                self.should_exit = True
            return await super().on_tick(counter)

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        log_level=log_level,
        timeout_graceful_shutdown=1,  # what is still running past the drain is cancelled
        lifespan="on",
    )
    DrainingServer(config).run(sockets=[sock])


def entry() -> None:
    sys.exit(main())
