"""Repacking the postings' faiss lists into exact buffers, a chunk at a time.

faiss's ``ArrayInvertedLists`` keeps each list in a ``std::vector`` that doubles when it
grows and never shrinks (and no single list's buffer can be replaced from Python), so
`veclink.index.postings.PostingStore` models the capacities and, once the spare capacity is
worth it, copies every list into a fresh ``ArrayInvertedLists`` whose buffers hold the
entries plus HEADROOM; dropping the old one frees its buffers. (A list that outgrows its
buffer is regrown to its entries plus a sixteenth, not doubled, by the store itself; what
repacks reclaim is mostly the capacity that splits, merges and compactions leave behind.)

The copy runs as rebalancing steps of about STEP_BYTES each under the index's *shared*
lock (searches go on; writers wait one step), and lists that writers change after they were
copied are marked dirty and copied again by the final step, which holds the lock alone for
the dirty lists only and swaps the lists in. While it runs both copies exist: the peak is
the postings' bytes twice.
"""

from __future__ import annotations

import faiss
import numpy as np

#: spare capacity a repack leaves each list, as a share of its entries (so that the next
#: appends do not regrow it at once, `veclink.index.postings.PostingStore.add`); below
#: `veclink.index.postings.REPACK_SLACK`
HEADROOM = 0.02
#: bytes copied per rebalancing step (a few milliseconds)
STEP_BYTES = 8 << 20


class Staging:
    """Buffers, reused, that a list's entries are gathered in before the list is refilled
    (`copy_list`, `veclink.index.postings.PostingStore.add`): no allocation per list, which
    for lists above malloc's mmap threshold (~128 KB, 85 entries at 384-d) costs page faults."""

    def __init__(self, code_size: int) -> None:
        self.code_size = code_size
        self.keys = np.empty(0, dtype=np.int64)
        self.codes = np.empty(0, dtype=np.uint8)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, codes) buffers for ``n`` entries; their content is left over."""
        if n > self.keys.size:
            m = max(n, self.keys.size + self.keys.size // 2, 256)
            self.keys = np.empty(m, dtype=np.int64)
            self.codes = np.empty(m * self.code_size, dtype=np.uint8)
        return self.keys[:n], self.codes[: n * self.code_size]

    def gather(
        self, src: faiss.ArrayInvertedLists, list_no: int, n: int, cap: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Buffers for ``cap`` entries whose first ``n`` are list ``list_no``'s entries."""
        keys, codes = self.take(cap)
        if n:
            keys[:n] = faiss.rev_swig_ptr(src.get_ids(list_no), n)
            codes[: n * self.code_size] = faiss.rev_swig_ptr(
                src.get_codes(list_no), n * self.code_size
            )
        return keys, codes


def refill(
    dst: faiss.ArrayInvertedLists, list_no: int, keys: np.ndarray, codes: np.ndarray, n: int
) -> None:
    """Make list ``list_no`` of ``dst`` (any size) hold the first ``n`` of ``keys`` / ``codes``
    in a buffer of exactly ``keys.size`` entries, if that is more than its capacity."""
    dst.resize(list_no, 0)
    dst.add_entries(list_no, keys.size, faiss.swig_ptr(keys), faiss.swig_ptr(codes))
    dst.resize(list_no, n)


def copy_list(
    src: faiss.ArrayInvertedLists,
    dst: faiss.ArrayInvertedLists,
    list_no: int,
    n: int,
    code_size: int,
    headroom: float | None = None,
    staging: Staging | None = None,
) -> int:
    """Copy list ``list_no`` (``n`` entries) into ``dst``'s empty list; returns its capacity.

    An empty ``std::vector`` allocates exactly what it is first given: it gets ``n`` plus
    the headroom, and is cut back to ``n`` (the capacity stays). Without headroom the
    entries go straight from one faiss buffer to the other (one copy).
    """
    if headroom is None:
        headroom = HEADROOM
    cap = n + int(headroom * n)
    dst.resize(list_no, 0)
    if not n:
        return 0
    if cap == n:
        dst.add_entries(list_no, n, src.get_ids(list_no), src.get_codes(list_no))
        return n
    keys, codes = (staging or Staging(code_size)).gather(src, list_no, n, cap)
    refill(dst, list_no, keys, codes, n)
    return cap


def copy_lists(
    src: faiss.ArrayInvertedLists, sizes: np.ndarray, nlist: int, code_size: int
) -> tuple[faiss.ArrayInvertedLists, np.ndarray]:
    """All lists of ``src`` copied at once into ``nlist`` fresh lists: (lists, capacities)."""
    dst = faiss.ArrayInvertedLists(nlist, code_size)
    caps = np.zeros(nlist, dtype=np.int64)
    staging = Staging(code_size)
    for list_no in np.nonzero(sizes)[0].tolist():
        caps[list_no] = copy_list(src, dst, list_no, int(sizes[list_no]), code_size, None, staging)
    return dst, caps


class Repack:
    """One repack in progress: fresh lists filled in steps, then swapped in."""

    def __init__(self, nlist: int, code_size: int) -> None:
        self.lists = faiss.ArrayInvertedLists(nlist, code_size)
        self.caps = np.zeros(nlist, dtype=np.int64)
        self.code_size = code_size
        self.nlist = nlist
        self.cursor = 0  # lists below it are copied
        self.staging = Staging(code_size)
        self._dirty: set[int] = set()

    def dirty(self, list_no: int) -> None:
        """A writer changed ``list_no``; copy it again if it was copied already."""
        if list_no < self.cursor:
            self._dirty.add(list_no)

    def step(self, src: faiss.ArrayInvertedLists, sizes: np.ndarray) -> bool:
        """Copy the next lists, about STEP_BYTES; True when every list has been copied.

        Called under the index's shared lock: nothing changes ``src`` meanwhile.
        """
        budget = STEP_BYTES
        while self.cursor < self.nlist and budget > 0:
            n = int(sizes[self.cursor])
            self.caps[self.cursor] = copy_list(
                src, self.lists, self.cursor, n, self.code_size, None, self.staging
            )
            budget -= n * (self.code_size + 8) + 64
            self.cursor += 1
        return self.cursor >= self.nlist

    def finish(self, src: faiss.ArrayInvertedLists, sizes: np.ndarray) -> None:
        """Copy the lists changed since they were copied (under the exclusive lock)."""
        for list_no in sorted(self._dirty):
            n = int(sizes[list_no])
            self.caps[list_no] = copy_list(
                src, self.lists, list_no, n, self.code_size, None, self.staging
            )
        self._dirty.clear()
