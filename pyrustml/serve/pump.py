"""The bridge from the engine thread to the event loop, one per request.

A Pump is the request's event sink (Model.submit): the engine thread hands each event straight
to the loop (call_soon_threadsafe into an asyncio.Queue) as the step that made it ends. No
thread waits per request, so a token costs the machine one wakeup (the loop's) rather than two,
and on a machine whose cores all run the step, every extra runnable thread delays it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import PyrustmlError
from ..generate.result import Generation

if TYPE_CHECKING:
    from ..generate.result import TokenLogprob
    from ..generate.sequence import Event
    from ..model import Model, Submission

# (piece, logprob entries that came with it, error): piece None ends the stream.
Item = tuple[str | None, "list[TokenLogprob]", PyrustmlError | None]


class Pump:
    def __init__(self, model: Model, ids: list[int], options: dict[str, Any]) -> None:
        self.generation: Generation | None = None
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self.request: Submission | None = model.submit(ids, self, **options)

    def put(self, event: Event) -> None:
        """On the engine thread, inside its step: hand the event to the loop and return."""
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:
            pass  # the loop is closed: the server is gone, and with it the reader

    async def next(self) -> Item:
        """The next piece of text with the log-probabilities of its tokens, or the end."""
        entries: list[TokenLogprob] = []
        while True:
            kind, value = await self._queue.get()
            if kind == "logprobs":
                assert isinstance(value, list)
                entries.extend(value)
                continue
            if kind == "text":
                if value:
                    return str(value), entries, None
                continue
            self._end()
            if isinstance(value, Generation):
                self.generation = value
                return None, entries, None
            if isinstance(value, PyrustmlError):
                return None, [], value
            return None, [], PyrustmlError(f"internal error: the engine ended a request with {value!r}")

    def _end(self) -> None:
        # The request ended: nothing to cancel, and the sequence holds this pump as its sink:
        # let go of it, so neither waits for the cycle collector.
        self.request = None

    def cancel(self) -> None:
        """The reader is gone: the engine drops the sequence at its next step. Quick (it only
        marks the sequence under the engine's lock), so the loop may call it."""
        if self.request is not None:
            self.request.close()
        self._end()
