"""`SharedLock`: the index lock. Searches share it; writes and rebalancing steps hold it alone.

``with lock:`` takes it exclusively and is reentrant for the thread holding it (a write path
may call another that locks). ``with lock.shared():`` lets any number of readers in at once
while no thread holds it exclusively; a thread that already holds it exclusively may also
enter ``shared()``. A waiting writer keeps new readers out, so a stream of searches cannot
starve writes; and when a writer leaves, the readers waiting at that moment go in before the
next writer (the rebalancing worker takes the lock again straight after each step, and
without this turn it could win every time and hold readers off until it ran out of work).
So a reader waits at most for the writer in progress and those queued before it, and every
exclusive section of the partitioned index is one write call or one bounded rebalancing
step.

The searches themselves then run in parallel for real: the scan is faiss, which releases the
GIL.
"""

from __future__ import annotations

import threading


class SharedLock:
    """Readers-writer lock; the exclusive side is reentrant."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._owner: int | None = None
        self._depth = 0
        self._writers_waiting = 0
        self._readers_waiting = 0
        #: set when a writer leaves with readers waiting: they go next, before any writer
        self._readers_turn = False
        self._shared = _Shared(self)

    def __enter__(self) -> SharedLock:
        me = threading.get_ident()
        if self._owner == me:
            self._depth += 1
            return self
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._owner is not None or self._readers or self._readers_turn:
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
            self._readers_turn = self._readers_waiting > 0
            self._cond.notify_all()

    def shared(self) -> _Shared:
        """``with lock.shared():`` holds the lock shared (see the module notes)."""
        return self._shared

    def _enter_shared(self) -> None:
        if self._owner == threading.get_ident():  # inside this thread's exclusive section
            return
        with self._cond:
            self._readers_waiting += 1
            try:
                while self._owner is not None or (self._writers_waiting and not self._readers_turn):
                    self._cond.wait()
            finally:
                self._readers_waiting -= 1
                if not self._readers_waiting and self._readers_turn:
                    self._readers_turn = False  # every reader that waited is in
                    self._cond.notify_all()
            self._readers += 1

    def _exit_shared(self) -> None:
        if self._owner == threading.get_ident():  # entered inside the exclusive section
            return
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()


class _Shared:
    """The context manager of `SharedLock.shared`: one per lock, it keeps no state (a
    thread that enters it inside its own exclusive section leaves it inside that section
    too, so the exit can tell which entry it ends). A plain class: a generator-based
    context manager costs a few microseconds per search."""

    __slots__ = ("_lock",)

    def __init__(self, lock: SharedLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock._enter_shared()

    def __exit__(self, *exc: object) -> None:
        self._lock._exit_shared()
