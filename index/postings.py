"""Postings (partitions) of the partitioned index, and the per-id version map."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
from veclink.index.codecs import FullVectors, make_codec
from veclink.index.repack import Repack, Staging, copy_lists, refill
from veclink.index.slot_keys import SlotKeys

from veclink.errors import ResourceExhausted


def row_mean(x: np.ndarray) -> np.ndarray:
    """Mean of the rows of a float32 block, as one BLAS vector product.

    Rebalancing re-centres thousands of small postings; ``ndarray.mean`` costs about four
    times as much per call on blocks of this size (its Python-level bookkeeping dominates).
    """
    return (np.ones(len(x), dtype=np.float32) @ x) / np.float32(len(x))


def centroid_rows(cent_pid: np.ndarray, pids: np.ndarray) -> np.ndarray:
    """Centroid rows of partition ids (``cent_pid`` holds the partition id of each row)."""
    order = np.argsort(cent_pid)
    return order[np.searchsorted(cent_pid, pids, sorter=order)]


#: a posting entry's faiss id packs its slot (low bits) and its version's low bits (high bits)
SLOT_BITS = 40
SLOT_MASK = (1 << SLOT_BITS) - 1
#: version bits kept in the faiss id; `PostingStore.ver_bits` (tests shrink it)
VER_BITS = 23
#: partition ids fit the version map's int32 ``loc``
MAX_PARTITION_ID = (1 << 31) - 1
#: `VersionMap.cur_ver` of a slot that is not live (no version bits are this)
NOT_LIVE = np.uint32(0xFFFFFFFF)
#: the version map's per-slot arrays grow by 1 / GROWTH of their capacity
GROWTH = 16
#: a list that must grow is regrown to its entries plus 1 / LIST_GROWTH (`PostingStore.add`)
LIST_GROWTH = 16
#: up to this many queries, faiss runs in the calling thread alone (no OpenMP team)
SMALL_BATCH = 16
#: repack the lists once their buffers' spare capacity exceeds this share of the bytes used
REPACK_SLACK = 0.04
#: ... and is at least this many bytes (small indexes are not worth a pass)
REPACK_MIN_BYTES = 1 << 20
#: once this share of the lists is in use, a repack into twice as many lists begins, so that
#: the lists rarely run out in a write or a split (`PostingStore._grow` copies them all at once)
GROW_AHEAD = 0.5


def _one_omp_thread(n: int) -> int:
    """Run faiss without OpenMP helpers for a small batch of ``n`` queries; returns the
    thread's previous setting for `_restore_omp` (0: unchanged).

    OpenMP's thread count is per calling thread, and a thread that never set it gets one
    helper per core: a single-query faiss call from a server's worker thread then wakes a
    team it cannot use (measured on a busy 2-core machine: 2-10 ms instead of 0.1 ms).
    """
    if n > SMALL_BATCH:
        return 0
    prev = faiss.omp_get_max_threads()
    if prev == 1:
        return 0
    faiss.omp_set_num_threads(1)
    return int(prev)


def _restore_omp(prev: int) -> None:
    if prev:
        faiss.omp_set_num_threads(prev)


class PostingStore:
    """The vectors of every posting, as the inverted lists of one faiss ``IndexIVFFlat``.

    The index owns the lists and edits them in place (``add_entries`` / ``resize``); search
    hands faiss the probed lists of each query (``search_preassigned``), so the scan runs in
    faiss's compiled kernels, with its GIL released. A list entry's faiss id is
    ``slot | (version mod 2**ver_bits) << SLOT_BITS``: the scan returns ids, and the version
    bits let the caller drop stale copies exactly (`PartitionedIndex` keeps any stale copy's
    version within ``2**ver_bits`` of its id's current one, see ``_versions_bumped``).

    List numbers are recycled; ``pid_list`` maps a partition id to its list (-1: none) and
    ``sizes`` holds each list's entry count, for vectorised bookkeeping in the scan.

    With quantised postings (``postings`` "fp16" / "int8", `veclink.index.codecs`) the
    lists are an ``IndexIVFScalarQuantizer``'s and hold codes; ``full`` keeps each slot's
    float32 vector, which `view` returns and the search re-ranks with.
    """

    def __init__(
        self,
        dim: int,
        metric: str,
        nlist: int = 64,
        postings: str = "float32",
        full_path: Path | None = None,
    ) -> None:
        self.dim = dim
        self.codec = make_codec(postings, dim)
        self.code_size = self.codec.code_size
        self.quantized = self.codec.quantized
        #: the full vectors of quantised postings, by slot (None: postings hold them); in
        #: ``full_path`` (memory-mapped) when given
        self.full = FullVectors(dim, full_path) if self.quantized else None
        #: times every posting was re-encoded because the int8 ranges widened
        self.reencodes = 0
        self.metric = metric
        self.ver_bits = VER_BITS
        self.nlist = 0
        self.lists = faiss.ArrayInvertedLists(nlist, self.code_size)
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self._flat = faiss.IndexFlat(dim, faiss_metric)
        #: the centroids, in `CentroidTable` row order, labelled with their list numbers
        self.router = faiss.IndexIDMap(self._flat)
        if self.quantized:
            self.ivf = faiss.IndexIVFScalarQuantizer(
                self.router, dim, nlist, self.codec.qtype, faiss_metric, False
            )
            self.codec.sync(self.ivf)
        else:
            self.ivf = faiss.IndexIVFFlat(self.router, dim, nlist, faiss_metric)
        self.ivf.replace_invlists(self.lists, False)
        self.ivf.is_trained = True
        self.nlist = nlist
        self.sizes = np.zeros(nlist, dtype=np.int64)
        #: entries each list's buffers hold before faiss reallocates them (`add`)
        self.caps = np.zeros(nlist, dtype=np.int64)
        self.used_entries = 0  # sum of sizes
        self.cap_entries = 0  # sum of caps
        #: a `Repack` in progress, and how many finished
        self.repack: Repack | None = None
        self.repacks = 0
        self._staging = Staging(self.code_size)  # (writers only: under the exclusive lock)
        self.pid_list = np.full(64, -1, dtype=np.int64)
        #: the index's version map: entries' full versions are recovered from it (`versions_of`)
        self.versions = VersionMap()
        self._free: list[int] = []
        self._params: dict[int, faiss.SearchParametersIVF] = {}
        self._next = 0
        #: posting entries read (`Posting.view`) and written (`Posting.append`) so far; for
        #: measuring the work of an exclusive lock hold (exact only while one lasts: readers
        #: under the shared lock may race on the count)
        self.entries_read = 0
        self.entries_written = 0

    def entries_touched(self) -> int:
        """Posting entries read or written so far (see ``entries_read``)."""
        return self.entries_read + self.entries_written

    @property
    def ver_mask(self) -> int:
        return (1 << self.ver_bits) - 1

    def versions_of(self, keys: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Full (uint32) versions of the entries with faiss ids ``keys`` (slots ``slots``).

        A key holds its version's low ``ver_bits`` bits; the index keeps every copy's version
        less than ``2**ver_bits`` behind its slot's current one (`PartitionedIndex.
        _versions_bumped`), so the version is the current one minus the low bits' distance:
        exact, with no per-entry version stored beside the lists (4 bytes an entry).
        """
        cur = self.versions.ver.take(slots)
        ver = (keys >> SLOT_BITS).astype(np.uint32)
        np.subtract(cur, ver, out=ver)  # uint32: wraps like the versions
        np.bitwise_and(ver, np.uint32(self.ver_mask), out=ver)
        return np.subtract(cur, ver, out=ver)

    def admit(self, slots: np.ndarray, vecs: np.ndarray) -> None:
        """New current vectors of ``slots``, before they are placed in postings.

        Quantised postings keep them in ``full``; when the int8 ranges must widen to cover
        them, every list is re-encoded at once, so all codes share one quantiser.
        """
        if self.full is None:
            return
        self.full.put(slots, vecs)
        if self.codec.admit(vecs):
            self.codec.sync(self.ivf)
            self.reencode()

    def reencode(self) -> None:
        """Re-encode every list's entries from the full vectors (current quantiser)."""
        assert self.full is not None
        for list_no in np.nonzero(self.sizes[: self._next])[0].tolist():
            n = int(self.sizes[list_no])
            keys = faiss.rev_swig_ptr(self.lists.get_ids(list_no), n).copy()
            codes = self.codec.encode(self.full.take(keys & SLOT_MASK))
            self.lists.update_entries(list_no, 0, n, faiss.swig_ptr(keys), faiss.swig_ptr(codes))
        self.reencodes += 1
        self.repack = None  # it copied codes of the old quantiser

    def create(self, pid: int) -> Posting:
        """A new empty posting for partition ``pid``."""
        if self._free:
            list_no = self._free.pop()
        else:
            if self._next == self.nlist:
                self._grow(2 * self.nlist)
            list_no = self._next
            self._next += 1
        if pid >= self.pid_list.size:
            grown = np.full(max(2 * self.pid_list.size, pid + 1), -1, dtype=np.int64)
            grown[: self.pid_list.size] = self.pid_list
            self.pid_list = grown
        self.pid_list[pid] = list_no
        return Posting(self, list_no)

    def drop(self, pid: int, posting: Posting) -> None:
        """Forget partition ``pid``; its list is emptied and reused."""
        self.lists.resize(posting.list_no, 0)
        self.touched(posting.list_no)
        self.used_entries -= int(self.sizes[posting.list_no])
        self.sizes[posting.list_no] = 0
        self._free.append(posting.list_no)
        self.pid_list[pid] = -1
        posting.n = 0

    def _grow(self, nlist: int) -> None:
        """Move the lists into a larger ``ArrayInvertedLists`` (amortised by doubling)."""
        self.repack = None  # a repack in progress copied into lists of the old number
        new, caps = copy_lists(self.lists, self.sizes, nlist, self.code_size)
        self._install(new, caps)

    def _install(self, lists: faiss.ArrayInvertedLists, caps: np.ndarray) -> None:
        """Make ``lists`` (with modelled capacities ``caps``) the store's lists."""
        nlist = caps.size
        self.ivf.nlist = nlist
        self.ivf.replace_invlists(lists, False)
        self.lists = lists
        self.nlist = nlist
        sizes = np.zeros(nlist, dtype=np.int64)
        sizes[: self.sizes.size] = self.sizes
        self.sizes = sizes
        self.caps = caps
        self.cap_entries = int(caps.sum())

    # ------------------------------------------------------------------ buffers
    # faiss's lists are ``std::vector``s: appending past the capacity reallocates to
    # ``size + max(size, added)`` (libstdc++: about double), and shrinking never frees, so a
    # posting that grew to the split limit and was split keeps a buffer for twice the limit
    # (the float32 layout measured 1.9x the raw vectors' bytes, BENCHMARKS.md). No single
    # list's buffer can be swapped from here, but an *empty* vector grows to exactly what it
    # is given: `add` regrows a full list to its entries plus 1 / LIST_GROWTH by emptying it
    # and adding all its entries back (two copies of the list per regrowth: ~2 x LIST_GROWTH
    # entry copies per entry appended, against the vector's own 1-2; 1/16 spare at most
    # instead of up to 1/1, so repacks come several times less often, BENCHMARKS.md).
    # Splits and merges still leave emptied capacity behind, so the store tracks every
    # list's capacity and, when the spare capacity passes REPACK_SLACK, copies all lists into
    # fresh buffers (`Repack`), a bounded chunk per rebalancing step.

    def add(self, list_no: int, size: int, keys: np.ndarray, codes: np.ndarray) -> None:
        """Append entries (faiss ids ``keys``, ``codes``) to list ``list_no`` of ``size``."""
        added = keys.size
        need = size + added
        cap = int(self.caps[list_no])
        if need > cap:  # regrow the list exactly: empty it, then add everything back
            new = need + need // LIST_GROWTH
            all_keys, all_codes = self._staging.gather(self.lists, list_no, size, new)
            all_keys[size:need] = keys
            all_codes[size * self.code_size : need * self.code_size] = codes.reshape(-1)
            refill(self.lists, list_no, all_keys, all_codes, need)
            self.caps[list_no] = new
            self.cap_entries += new - cap
        else:
            self.lists.add_entries(list_no, added, faiss.swig_ptr(keys), faiss.swig_ptr(codes))
        self.used_entries += added
        self.sizes[list_no] = need
        self.touched(list_no, appended=True)

    def touched(self, list_no: int, appended: bool = False) -> None:
        """List ``list_no`` changed (only ``appended`` to, or else rewritten): a repack in
        progress must copy the change."""
        if self.repack is not None:
            self.repack.dirty(list_no, appended)

    def repack_due(self) -> bool:
        """Whether a repack is in progress, or the lists' spare capacity is worth one, or
        the lists are running out (a repack then doubles their number)."""
        if self.repack is not None or self._next > GROW_AHEAD * self.nlist:
            return True
        slack = (self.cap_entries - self.used_entries) * (self.code_size + 8)
        used = self.used_entries * (self.code_size + 8)
        return slack > max(REPACK_MIN_BYTES, REPACK_SLACK * used)

    def grow_due(self) -> bool:
        """The lists are running out: a repack into twice as many is due or under way."""
        repack = self.repack
        return self._next > GROW_AHEAD * self.nlist or (
            repack is not None and repack.nlist > self.nlist
        )

    def repack_step(self) -> bool:
        """Copy a chunk of lists into a repack (begun if none is); True when all are copied.

        Takes the index's shared lock from the caller: searches run, nothing writes.
        """
        if self.repack is None:
            grow = self._next > GROW_AHEAD * self.nlist
            self.repack = Repack(2 * self.nlist if grow else self.nlist, self.code_size)
        return self.repack.step(self.lists, self.sizes)

    def repack_finish(self) -> faiss.ArrayInvertedLists | None:
        """Copy what changed since, and swap the repacked lists in (exclusive lock).

        Returns the lists replaced: freeing their thousands of buffers takes milliseconds,
        which the caller spends after it releases the lock.
        """
        repack = self.repack
        if repack is None or repack.cursor < self.nlist:
            return None
        repack.finish(self.lists, self.sizes)
        self.repack = None
        old = self.lists
        self._install(repack.lists, repack.caps)
        self.repacks += 1
        return old

    def nbytes(self) -> int:
        """Bytes of the lists' buffers, codes and ids (capacities as tracked by `add`)."""
        return self.cap_entries * (self.code_size + 8)

    # ------------------------------------------------------------------ router
    # A faiss copy of the centroids, row for row the `CentroidTable`'s, routing queries in
    # compiled code; the owner mirrors every centroid change here.

    def route_reset(self, lists: np.ndarray, cents: np.ndarray) -> None:
        self.router.reset()
        if len(lists):
            self.router.add_with_ids(
                np.ascontiguousarray(cents, dtype=np.float32),
                np.ascontiguousarray(lists, dtype=np.int64),
            )

    def route_append(self, list_no: int, centroid: np.ndarray) -> None:
        self.router.add_with_ids(
            np.ascontiguousarray(centroid, dtype=np.float32).reshape(1, -1),
            np.array([list_no], dtype=np.int64),
        )

    def route_move(self, rows: np.ndarray, values: np.ndarray) -> None:
        n = self._flat.ntotal
        xb = faiss.rev_swig_ptr(self._flat.get_xb(), n * self.dim).reshape(n, self.dim)
        xb[rows] = values

    def route_and_scan(
        self, q: np.ndarray, nprobe: int, k: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Route each query to its ``nprobe`` nearest centroids (at most their number) and
        scan their lists: (scores, keys) as `scan`, and the lists probed, nearest first."""
        n = len(q)
        coarse = np.empty((n, nprobe), dtype=np.float32)
        lists = np.empty((n, nprobe), dtype=np.int64)
        prev = _one_omp_thread(n)
        try:
            self.router.search_c(
                n, faiss.swig_ptr(q), nprobe, faiss.swig_ptr(coarse), faiss.swig_ptr(lists)
            )
            scores, keys = self._scan(q, k, lists, coarse)
        finally:
            _restore_omp(prev)
        return scores, keys, lists

    def scan(self, q: np.ndarray, k: int, lists: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """faiss's scan of ``lists`` (n, nprobe; -1 skips) for each query: (scores, keys).

        Scores are higher-is-better (``l2``: negative squared distance), best first; keys
        are the entries' faiss ids, -1 past the end.
        """
        q = np.ascontiguousarray(q, dtype=np.float32)
        lists = np.ascontiguousarray(lists, dtype=np.int64)
        coarse = np.zeros(lists.shape, dtype=np.float32)  # unused by a flat scan
        prev = _one_omp_thread(len(q))
        try:
            return self._scan(q, k, lists, coarse)
        finally:
            _restore_omp(prev)

    def _scan(
        self, q: np.ndarray, k: int, lists: np.ndarray, coarse: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n, width = lists.shape
        dist = np.empty((n, k), dtype=np.float32)
        keys = np.empty((n, k), dtype=np.int64)
        params = self._params.get(width)
        if params is None:  # one per probe width (building one costs more than a scan)
            params = faiss.SearchParametersIVF()
            params.nprobe = width
            self._params[width] = params
        self.ivf.search_preassigned_c(
            n,
            faiss.swig_ptr(q),
            k,
            faiss.swig_ptr(lists),
            faiss.swig_ptr(coarse),
            faiss.swig_ptr(dist),
            faiss.swig_ptr(keys),
            False,
            params,
        )
        if self.metric == "l2":
            np.negative(dist, out=dist)
        return dist, keys


class Posting:
    """The (slot, version, vector) entries of one partition: a list of the `PostingStore`.

    A slot stands for an id (see `VersionMap`); "ids" below means slots. Vectors and the
    packed ids (slot and version bits) live in faiss; `view` recovers the full versions from
    the version map (`PostingStore.versions_of`) and returns arrays that alias faiss's
    memory (ids and vectors): valid until this posting is next changed.
    """

    __slots__ = ("store", "list_no", "n", "stale")

    def __init__(self, store: PostingStore, list_no: int) -> None:
        self.store = store
        self.list_no = list_no
        self.n = 0
        #: entries known to be stale (deleted or replaced); a hint for compaction
        self.stale = 0

    def append(
        self, ids: np.ndarray, ver: np.ndarray, vecs: np.ndarray, encoded: bool = False
    ) -> None:
        """Append entries; ``ver`` must be within ``2**ver_bits`` of each slot's current
        version (any version the index hands out is)."""
        if not ids.size:
            return
        store = self.store
        need = self.n + ids.size
        keys = np.asarray(ids, dtype=np.int64) | (
            (np.asarray(ver, dtype=np.int64) & store.ver_mask) << SLOT_BITS
        )
        codes = np.ascontiguousarray(vecs, dtype=np.uint8) if encoded else store.codec.encode(vecs)
        store.entries_written += ids.size
        store.add(self.list_no, self.n, keys, codes)
        self.n = need

    def view(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(slots, full versions, float32 vectors) of the entries."""
        n, store = self.n, self.store
        store.entries_read += n
        if not n:
            return (
                np.zeros(0, np.int64),
                np.zeros(0, np.uint32),
                np.zeros((0, store.dim), np.float32),
            )
        keys = faiss.rev_swig_ptr(store.lists.get_ids(self.list_no), n)
        slots = keys & SLOT_MASK
        ver = store.versions_of(keys, slots)
        if store.full is not None:  # quantised: the entries' full vectors (a copy)
            return slots, ver, store.full.take(slots)
        codes = faiss.rev_swig_ptr(store.lists.get_codes(self.list_no), n * store.code_size)
        return slots, ver, codes.view(np.float32).reshape(n, store.dim)

    def slots(self) -> tuple[np.ndarray, np.ndarray]:
        """The entries' (slots, full versions), without their vectors (copies)."""
        n = self.n
        if not n:
            return np.zeros(0, np.int64), np.zeros(0, np.uint32)
        keys = faiss.rev_swig_ptr(self.store.lists.get_ids(self.list_no), n)
        slots = keys & SLOT_MASK
        return slots, self.store.versions_of(keys, slots)

    def take_out(self, positions: np.ndarray) -> None:
        """Remove the entries at ``positions`` (distinct) in O(their number), not O(n): the
        last entries that stay fill their places (the order of entries is not kept)."""
        n, m = self.n, positions.size
        if not m:
            return
        store, lists = self.store, self.store.lists
        tail = np.arange(n - m, n)
        fill = tail[~np.isin(tail, positions)]
        holes = np.sort(positions[positions < n - m])
        if holes.size:
            keys = faiss.rev_swig_ptr(lists.get_ids(self.list_no), n)[fill].copy()
            codes = self.codes_at(fill)
            for i, h in enumerate(holes.tolist()):
                lists.update_entries(
                    self.list_no, h, 1, faiss.swig_ptr(keys[i : i + 1]), faiss.swig_ptr(codes[i])
                )
            store.entries_written += holes.size
        lists.resize(self.list_no, n - m)
        store.touched(self.list_no)
        store.used_entries -= m
        self.n = n - m
        store.sizes[self.list_no] = self.n

    def codes_at(self, rows: np.ndarray) -> np.ndarray:
        """A copy of the codes of the entries at ``rows`` (counted as read)."""
        self.store.entries_read += rows.size
        return self.codes()[rows]

    def codes(self) -> np.ndarray:
        """The entries' codes as stored (n, code_size) uint8; aliases faiss's memory."""
        n, store = self.n, self.store
        if not n:
            return np.zeros((0, store.code_size), np.uint8)
        codes = faiss.rev_swig_ptr(store.lists.get_codes(self.list_no), n * store.code_size)
        return codes.reshape(n, store.code_size)

    def keep(self, mask: np.ndarray) -> None:
        """Keep only the entries where ``mask`` is true (in order)."""
        ids, ver, vecs = self.view()
        self.replace(ids[mask], ver[mask], vecs[mask])

    def replace(self, ids: np.ndarray, ver: np.ndarray, vecs: np.ndarray) -> None:
        """Make ``(ids, ver, vecs)`` the whole content (none of it stale).

        The arguments must not be views of this posting (`view`); copies are.
        """
        self.store.lists.resize(self.list_no, 0)
        self.store.touched(self.list_no)
        self.store.used_entries -= self.n
        self.n = self.stale = 0
        self.store.sizes[self.list_no] = 0
        self.append(ids, ver, vecs)


class VersionMap:
    """Per-slot version counters and liveness; an entry is current iff its version matches.

    Callers choose any int64 id >= 0, so ids are not array positions: each id seen gets a
    dense slot (kept after a delete, so a re-added id keeps counting versions up), and
    postings store slots. ``keys`` (`SlotKeys`: sorted runs of ids) maps ids to slots with a
    vectorised binary search per run, and takes new ids in amortised O(log n) copies each
    (a single sorted array cost O(n) per batch); ``ext`` maps slots back to ids.
    Versions are 32-bit so a stale copy can never come back to life by wrap-around.
    """

    def __init__(self) -> None:
        self.keys = SlotKeys()
        self.ext = np.zeros(0, dtype=np.int64)
        self.ver = np.zeros(0, dtype=np.uint32)
        self.live = np.zeros(0, dtype=bool)
        #: partition of the primary copy, -1 when none (int32: partition ids stay below
        #: MAX_PARTITION_ID, `PartitionedIndex.new_partition`)
        self.loc = np.zeros(0, dtype=np.int32)
        #: the version bits in the faiss id (`PostingStore`) of each slot's current copy;
        #: NOT_LIVE when not live (4 bytes a slot: the slot half of the id is the position)
        self.cur_ver = np.zeros(0, dtype=np.uint32)
        self.size = 0  # slots in use (the arrays above have spare capacity)
        self.count = 0  # live ids

    def lookup(self, ids: np.ndarray) -> np.ndarray:
        """Slots of ``ids``; -1 for ids never seen."""
        return self.keys.lookup(ids)

    def assign(self, ids: np.ndarray) -> np.ndarray:
        """Slots of distinct ``ids``, creating slots for ids never seen."""
        slots = self.lookup(ids)
        new = slots < 0
        if new.any():
            fresh = ids[new]
            first = self.size
            if first + fresh.size > SLOT_MASK:
                raise ResourceExhausted(f"an index holds at most {SLOT_MASK} distinct ids")
            self._grow(first + fresh.size)
            slots[new] = np.arange(first, first + fresh.size)
            self.ext[first : first + fresh.size] = fresh
            self.size += fresh.size
            self.keys.insert(fresh, slots[new])
        return slots

    def _grow(self, need: int) -> None:
        cap = self.ver.size
        if need <= cap:
            return
        # by a sixteenth: the map is ~8% of 128-d vectors, so spare slots are worth bounding,
        # and a copy of ~21 bytes a slot every n/16 new ids costs ~0.1 us an id
        new = max(need, cap + cap // GROWTH, 1024)
        self.ext = np.concatenate([self.ext, np.full(new - cap, -1, np.int64)])
        self.ver = np.concatenate([self.ver, np.zeros(new - cap, np.uint32)])
        self.live = np.concatenate([self.live, np.zeros(new - cap, bool)])
        self.loc = np.concatenate([self.loc, np.full(new - cap, -1, np.int32)])
        self.cur_ver = np.concatenate([self.cur_ver, np.full(new - cap, NOT_LIVE, np.uint32)])

    def current(self, slots: np.ndarray, ver: np.ndarray) -> np.ndarray:
        """Mask of entries that are the live, latest copy of their id."""
        return self.live[slots] & (self.ver[slots] == ver)

    def rekey(self, slots: np.ndarray, ver_mask: int) -> None:
        """Refresh ``cur_ver`` of ``slots`` after their version or liveness changed."""
        bits = self.ver[slots] & np.uint32(ver_mask)
        self.cur_ver[slots] = np.where(self.live[slots], bits, NOT_LIVE)

    def current_keys(self, keys: np.ndarray, slots: np.ndarray) -> np.ndarray:
        """Mask of faiss ids ``keys`` (with ``slots = keys & SLOT_MASK``) that are their
        slot's current copy. A -1 key (no entry) maps to the last slot by clipping, and its
        version half (-1) equals no ``cur_ver``."""
        return self.cur_ver.take(slots, mode="clip") == (keys >> SLOT_BITS)

    def live_slots(self, ids: np.ndarray) -> np.ndarray:
        """Slots of ``ids`` (-1 where the id is not live)."""
        slots = self.lookup(ids)
        dead = slots < 0
        dead[~dead] = ~self.live[slots[~dead]]
        slots[dead] = -1
        return slots

    def live_ids(self) -> np.ndarray:
        return self.ext[: self.size][self.live[: self.size]]

    def to_arrays(self) -> dict[str, np.ndarray]:
        n = self.size
        keys, key_slot = self.keys.compact()
        return {
            "vm_keys": keys,
            "vm_key_slot": key_slot,
            "vm_ext": self.ext[:n],
            "vm_ver": self.ver[:n],
            "vm_live": self.live[:n],
            "vm_loc": self.loc[:n],
        }

    @classmethod
    def from_arrays(cls, z: dict[str, np.ndarray] | np.lib.npyio.NpzFile, count: int) -> VersionMap:
        vm = cls()
        vm.ver, vm.live = (z[k].copy() for k in ("vm_ver", "vm_live"))
        vm.loc = z["vm_loc"].astype(np.int32)  # int64 in snapshots before the int32 map
        n = vm.ver.size
        if "vm_ext" in z:
            vm.ext = z["vm_ext"].copy()
            vm.keys = SlotKeys(z["vm_keys"].copy(), z["vm_key_slot"].copy())
        else:  # snapshots from before slots: the slot was the id itself
            vm.ext = np.arange(n, dtype=np.int64)
            keys = np.nonzero(vm.ver)[0].astype(np.int64)
            vm.keys = SlotKeys(keys, keys.copy())
        vm.size, vm.count = n, count
        vm.cur_ver = np.full(n, NOT_LIVE, dtype=np.uint32)
        return vm

    def nbytes(self) -> int:
        arrays = (self.ext, self.ver, self.live, self.loc, self.cur_ver)
        return self.keys.nbytes() + sum(a.nbytes for a in arrays)
