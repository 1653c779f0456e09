"""Group commit: what concurrent callers of one process submit is written together, and each caller is
answered only once the write holding its item is durable.

A database command costs the same round trip, and on FerretDB most of the same CPU, whether it carries
one document or hundreds: writing the items of many requests in one command divides that cost by the
batch size. At most `max_in_flight` writes are in flight at a time; items submitted meanwhile wait for
one of them and go in the next write, so batches grow with the load and the write latency by themselves,
and a lone item waits at most `max_wait` seconds before its write starts (never for a full batch). A
batch holds at most `max_items`. With two writes in flight, one batch gathers and is sent while the other
is at the database (whose commit, not its CPU, bounded one write at a time: bench/README.md).

The write gets the batch's items and returns one result per item, in order; if it raises, every caller
of that batch gets the exception (nothing of it may be answered as written).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class GroupCommit(Generic[Item, Result]):
    def __init__(self, write: Callable[[list[Item]], Awaitable[Sequence[Result]]], *, max_items: int,
                 max_wait: float, max_in_flight: int = 1):
        if max_items < 1 or max_wait < 0 or max_in_flight < 1:
            raise ValueError("a batch holds at least one item, waits no negative time, and one write may run")
        self._write = write
        self.max_items = max_items
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writing: set[asyncio.Task[None]] = set()
        self.batches = 0  # written (or failed), and their items: what a benchmark reads to tell the batch size
        self.items = 0

    async def submit(self, item: Item) -> Result:
        """The write's result for `item`, once the batch holding it is durable."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, answer))
        if len(self._writing) < self.max_in_flight:
            if len(self._pending) >= self.max_items or self.max_wait == 0:
                self._start()
            elif self._timer is None:
                self._timer = loop.call_later(self.max_wait, self._start)
        # A caller cancelled while its item still waits (the client went away) leaves the batch: see _start.
        return await answer

    def _start(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self._writing) >= self.max_in_flight:
            return  # a running write starts the next one when it ends
        batch = [(item, answer) for item, answer in self._pending[:self.max_items] if not answer.done()]
        del self._pending[:self.max_items]
        if batch:
            self._writing.add(asyncio.get_running_loop().create_task(self._write_batch(batch)))
        elif self._pending:
            self._start()

    async def _write_batch(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._write([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the write returned {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:
            for _, answer in batch:
                answer.cancel()  # the loop is closing: nobody is answered as written
            raise
        except Exception as error:
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(error)
        else:
            for (_, answer), result in zip(batch, results, strict=True):
                if not answer.done():  # cancelled meanwhile: its item is written all the same
                    answer.set_result(result)
        finally:
            self.batches += 1
            self.items += len(batch)
            self._writing.discard(asyncio.current_task())  # type: ignore[arg-type]
            if self._pending and len(self._writing) < self.max_in_flight:
                self._start()  # these waited for a whole write already: no further wait
