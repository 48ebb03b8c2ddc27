"""`SharedLock`: the index lock. Searches share it; writes and rebalancing steps hold it alone.

``with lock:`` takes it exclusively and is reentrant for the thread holding it (a write path
may call another that locks). ``with lock.shared():`` lets any number of readers in at once
while no thread holds it exclusively; a thread that already holds it exclusively may also
enter ``shared()``. A waiting writer keeps new readers out, so a stream of searches cannot
starve writes; a reader waits at most for the writer in progress and those queued before it,
and every exclusive section of the partitioned index is one write call or one bounded
rebalancing step.

The searches themselves then run in parallel for real: the scan is faiss, which releases the
GIL.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class SharedLock:
    """Readers-writer lock; the exclusive side is reentrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._owner: int | None = None
        self._depth = 0
        self._writers_waiting = 0

    def __enter__(self) -> SharedLock:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return self
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._owner is not None or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._owner = me
            self._depth = 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth:
            return
        with self._cond:
            self._owner = None
            self._cond.notify_all()

    @contextmanager
    def shared(self) -> Iterator[None]:
        if self._owner == threading.get_ident():  # inside this thread's exclusive section
            yield
            return
        with self._cond:
            while self._owner is not None or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()
