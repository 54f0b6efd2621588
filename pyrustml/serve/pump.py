"""The bridge from a TextStream (blocking, fed by the engine thread) to the event loop.

Each admitted request gets one daemon thread that iterates its TextStream and hands every piece
to the loop (call_soon_threadsafe into an asyncio.Queue), so the loop never blocks on the engine
and never hops through a thread pool per token. The thread is a daemon on purpose: a request cut
short (disconnect, the end of a drain) is closed from the loop at once, and a thread still
waiting in the stream for its next piece must never hold the process open at exit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import TYPE_CHECKING

from ..errors import PyrustmlError

if TYPE_CHECKING:
    from ..generate.result import TokenLogprob
    from ..model import TextStream
    from .metrics import ServerCounters

log = logging.getLogger("pyrustml.serve")

# (piece, logprob entries that came with it, error): piece None ends the stream.
Item = tuple[str | None, "list[TokenLogprob]", PyrustmlError | None]


class Pump:
    def __init__(self, stream: TextStream, with_logprobs: bool, counters: ServerCounters) -> None:
        self.stream = stream
        self.counters = counters
        self.with_logprobs = with_logprobs
        self.sent = 0  # logprob entries handed over so far
        self.finished = False  # the stream ran to its end (or failed): nothing to cancel
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Item] = asyncio.Queue()
        self._thread = threading.Thread(target=self._run, name="pyrustml-serve-stream", daemon=True)
        counters.thread_started()
        self._thread.start()

    def _run(self) -> None:
        try:
            for piece in self.stream:
                self._put((piece, self._new_logprobs(), None))
            if self.stream.generation is None:  # cancelled: nobody reads this any more
                self._put((None, [], PyrustmlError("the request was cancelled")))
            else:
                self._put((None, self._new_logprobs(), None))
        except PyrustmlError as exc:
            self._put((None, [], exc))
        except Exception as exc:  # the server outlives any request
            log.exception("stream failed")
            self._put((None, [], PyrustmlError(f"internal error: {type(exc).__name__}")))
        finally:
            self.counters.thread_ended()

    def _new_logprobs(self) -> list[TokenLogprob]:
        if not self.with_logprobs:
            return []
        entries = self.stream.logprobs[self.sent :]
        self.sent += len(entries)
        return entries

    def _put(self, item: Item) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:
            pass  # the loop is closed: the server is gone, and with it the reader

    async def next(self) -> Item:
        item = await self._queue.get()
        if item[0] is None:
            self.finished = True
        return item

    def cancel(self) -> None:
        """The reader is gone: the engine drops the sequence at its next step. Quick (it only
        marks the sequence under the engine's lock), so the loop may call it."""
        if not self.finished:
            self.stream.close()
