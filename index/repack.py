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
copied are marked dirty and copied again: by further shared-lock steps while they add up to
more than FINISH_BYTES, then by the final step, which holds the lock alone for those only and
swaps the lists in. When the lists are running out, a repack also doubles their number
(`veclink.index.postings.GROW_AHEAD`). While it runs both copies exist: the peak is
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
#: the swap re-copies, under the exclusive lock, at most about this many bytes of lists that
#: writers changed after their copy; more are re-copied by shared-lock steps first
FINISH_BYTES = 1 << 20
#: ... but after this many such steps the swap takes whatever is left (writes outpace them)
CATCH_UP_STEPS = 8


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
        #: entries each copied list had when it was last copied
        self.copied = np.zeros(nlist, dtype=np.int64)
        #: copied lists rewritten since (copied again whole), and ones only appended to
        #: (their new tail is appended to the copy)
        self._dirty: set[int] = set()
        self._grown: set[int] = set()
        self._catch_up = 0  # steps spent re-copying changed lists

    def dirty(self, list_no: int, appended: bool = False) -> None:
        """A writer changed ``list_no`` (only ``appended`` to it, or else rewrote it); copy
        the change if the list was copied already."""
        if list_no >= self.cursor or list_no in self._dirty:
            return
        if appended:
            self._grown.add(list_no)
        else:
            self._dirty.add(list_no)
            self._grown.discard(list_no)

    def step(self, src: faiss.ArrayInvertedLists, sizes: np.ndarray) -> bool:
        """Copy the next lists, about STEP_BYTES; True when every list has been copied and
        few enough changed since their copy for the swap (`finish`) to be short.

        Called under the index's shared lock: nothing changes ``src`` meanwhile.
        """
        budget = STEP_BYTES
        end = min(self.nlist, sizes.size)  # a repack into more lists: the new ones stay empty
        while self.cursor < end and budget > 0:
            budget -= self._copy(src, self.cursor, int(sizes[self.cursor]))
            self.cursor += 1
        if self.cursor < end:
            return False
        if self._changed_bytes(sizes) <= FINISH_BYTES or self._catch_up >= CATCH_UP_STEPS:
            return True
        self._catch_up += 1  # writes changed many copied lists: copy the changes first
        self._catch_up_changes(src, sizes, budget)
        return self._changed_bytes(sizes) <= FINISH_BYTES

    def finish(self, src: faiss.ArrayInvertedLists, sizes: np.ndarray) -> None:
        """Copy the changes to lists since they were copied (under the exclusive lock)."""
        self._catch_up_changes(src, sizes, None)

    def _catch_up_changes(
        self, src: faiss.ArrayInvertedLists, sizes: np.ndarray, budget: int | None
    ) -> None:
        while self._dirty and (budget is None or budget > 0):
            list_no = self._dirty.pop()
            spent = self._copy(src, list_no, int(sizes[list_no]))
            budget = None if budget is None else budget - spent
        while self._grown and (budget is None or budget > 0):
            list_no = self._grown.pop()
            spent = self._append_tail(src, list_no, int(sizes[list_no]))
            budget = None if budget is None else budget - spent

    def _copy(self, src: faiss.ArrayInvertedLists, list_no: int, n: int) -> int:
        """Copy a whole list; returns the bytes copied."""
        self.caps[list_no] = copy_list(
            src, self.lists, list_no, n, self.code_size, None, self.staging
        )
        self.copied[list_no] = n
        return n * (self.code_size + 8) + 64

    def _append_tail(self, src: faiss.ArrayInvertedLists, list_no: int, n: int) -> int:
        """Append the entries a list gained since its copy; returns the bytes copied."""
        a = int(self.copied[list_no])
        if n <= a:
            return 64
        cs = self.code_size
        ids = faiss.rev_swig_ptr(src.get_ids(list_no), n)[a:].copy()
        codes = faiss.rev_swig_ptr(src.get_codes(list_no), n * cs)[a * cs :].copy()
        self.lists.add_entries(list_no, n - a, faiss.swig_ptr(ids), faiss.swig_ptr(codes))
        if n > self.caps[list_no]:  # the vector reallocates as `PostingStore.grown` models
            self.caps[list_no] = a + max(a, n - a)
        self.copied[list_no] = n
        return (n - a) * (cs + 8) + 64

    def _changed_bytes(self, sizes: np.ndarray) -> int:
        whole = int(sizes[list(self._dirty)].sum()) if self._dirty else 0
        grown = list(self._grown)
        tails = int((sizes[grown] - self.copied[grown]).clip(0).sum()) if grown else 0
        return (whole + tails) * (self.code_size + 8)
