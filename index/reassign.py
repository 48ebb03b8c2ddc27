"""A split's install and its LIRE reassignment, a posting's worth per rebalancing step.

A split moves centroids, so vectors of its neighbourhood (the new postings and the
``reassign_neighbors`` postings nearest to the old centroid) may now sit in the wrong
posting. Reassignment is one local Lloyd step over the neighbourhood: every current primary
entry goes to its nearest centroid among the neighbourhood's, then each centroid moves to
the mean of its posting.

Done in one exclusive hold of the index lock, that is 8 + (new postings) postings' worth of
work (after a k-means split of a posting several times over the limit, 30+ postings; the
longest rebalancing holds measured). Here it is a `Reassignment` that the worker advances
one posting at a time, each step in three parts:

1. under the *shared* lock (searches go on), copy the posting's current primary entries;
2. with no lock held, find each one's nearest neighbourhood centroid (the matrix product);
3. under the *exclusive* lock, apply those decisions to what the posting holds by then:
   an entry moves only if it is still the current version of its id and still the primary
   copy there (a delete or an update meanwhile made it stale: it is dropped, as stale
   entries are; an entry added since stays where the insert put it, its nearest centroid).

A posting over the split limit is left out (the split's own k-means clusters that came out
large, or a neighbour that inserts grew meanwhile): it is due for a split of its own, whose
clustering and reassignment place its entries, and reading it here would make one step the
work of several postings.

The decisions all use the centroids as they were when the split was installed (copied
then); nothing else moves them until the reassignment ends, because the worker finishes it
before any other step. The last step moves each centroid to the mean of the entries its
posting kept or received during the steps. Every step leaves the index consistent (each
current vector in exactly its primary posting, ``loc`` pointing there), so searches,
snapshots and the WAL see nothing half-done.

A split of a posting far over the limit (inserts outpaced the worker; on WordNet in file
order, thousands of entries) is installed the same way, a few new postings per step
(`Carve`), before its reassignment starts.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np
from veclink.index.centroids import clearly_closer

if TYPE_CHECKING:
    from veclink.index.partitioned import PartitionedIndex


@dataclasses.dataclass
class Carve:
    """The install of a split of a posting far over the limit, a few clusters per step.

    The clusters come from the split's plan (k-means outside the lock, `Rebalancer.plan_split`).
    Each step moves the planned entries of the next clusters, about ``budget`` of them, from
    the posting into new postings (`veclink.index.postings.Posting.take_out`: the posting's
    other entries stay where they are, so a step costs the entries it moves, not the
    posting's size); entries the plan did not see (added since), and stale ones, stay in the
    posting. The last step moves the posting's centroid to its own cluster's.
    """

    pid: int
    #: the plan: entries (slot, version) it saw, their clusters, the clusters' centroids
    ids: np.ndarray
    ver: np.ndarray
    label: np.ndarray
    cents: np.ndarray
    #: the posting's centroid before the split (the reassignment's neighbourhood is around it)
    old_centroid: np.ndarray
    new: list[int] = dataclasses.field(default_factory=list)
    next: int = 1  # the next cluster to carve out (cluster 0 stays)

    def remaining(self) -> int:
        """Clusters still to carve out."""
        return len(self.cents) - self.next

    def step(self, index: PartitionedIndex, budget: int) -> bool:
        """Carve the next clusters out (exclusive lock); True once all are."""
        part = index.parts.get(self.pid)
        if part is None:  # cannot happen while the worker runs this alone
            return True
        ids, ver = part.slots()
        order = np.argsort(self.ids, kind="stable")
        pos = np.minimum(np.searchsorted(self.ids, ids, sorter=order), self.ids.size - 1)
        at = order[pos]
        seen = (self.ids[at] == ids) & (self.ver[at] == ver) & index.versions.current(ids, ver)
        label = np.where(seen, self.label[at], 0)
        k = len(self.cents)
        taken: list[np.ndarray] = []
        moved = 0
        while self.next < k and (not taken or moved < budget):
            rows = np.nonzero(label == self.next)[0]
            if rows.size:
                taken.append(rows)
                moved += rows.size
                other = index.new_partition(self.cents[self.next])
                index.parts[other].append(ids[rows], ver[rows], part.codes_at(rows), encoded=True)
                loc = index.versions.loc
                primary = ids[rows][loc[ids[rows]] == self.pid]
                loc[primary] = other
                self.new.append(other)
            self.next += 1
        if taken:
            part.take_out(np.concatenate(taken))
        if self.next < k:
            return False
        row = index.centroids.rows(np.array([self.pid]))
        index.move_centroids(row, self.cents[:1])
        return True


@dataclasses.dataclass(frozen=True)
class Moves:
    """Entries of one posting that step 2 found clearly closer to another centroid."""

    ids: np.ndarray  # slots
    ver: np.ndarray
    dest: np.ndarray  # partition ids

    @classmethod
    def none(cls) -> Moves:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.int64))


@dataclasses.dataclass
class Reassignment:
    """A split's neighbourhood being reassigned, one posting per step."""

    #: the neighbourhood's partitions, in the order they are processed
    pids: np.ndarray
    #: their centroids when the split was installed, and those centroids' squared norms
    cents: np.ndarray
    csq: np.ndarray
    #: per posting processed: the sum and count of the entries it holds after its step, plus
    #: those moved in by later steps (the means the last step moves the centroids to)
    sums: np.ndarray
    counts: np.ndarray
    #: postings left out (over the split limit at their step): their centroids stay
    skipped: np.ndarray
    cursor: int = 0

    @classmethod
    def start(cls, index: PartitionedIndex, rows: np.ndarray) -> Reassignment:
        """The reassignment of the postings of centroid ``rows`` (under the exclusive lock)."""
        cents = index.cents[rows].astype(np.float32)  # a copy
        return cls(
            pids=index.cent_pid[rows].copy(),
            cents=cents,
            csq=(cents * cents).sum(1),
            sums=np.zeros(cents.shape, dtype=np.float64),
            counts=np.zeros(len(rows), dtype=np.int64),
            skipped=np.zeros(len(rows), dtype=bool),
        )

    @property
    def done(self) -> bool:
        return self.cursor >= self.pids.size

    def remaining(self) -> int:
        return self.pids.size - self.cursor

    def copy_entries(self, index: PartitionedIndex) -> tuple[np.ndarray, ...] | None:
        """Step 1 (shared lock): copies of the next posting's current primary entries."""
        q = int(self.pids[self.cursor])
        part = index.parts.get(q)
        if part is None or part.n > index.options["split_limit"]:
            return None
        ids, ver, vecs = part.view()
        vm = index.versions
        primary = vm.current(ids, ver) & (vm.loc[ids] == q)
        return ids[primary], ver[primary], vecs[primary]

    def decide(self, entries: tuple[np.ndarray, ...] | None) -> Moves:
        """Step 2 (no lock): the entries that move, and where (a neighbourhood partition)."""
        if entries is None or not entries[0].size:
            return Moves.none()
        ids, ver, vecs = entries
        d = self.csq[None, :] - 2.0 * (vecs @ self.cents.T)  # squared distance - ||v||^2
        best = d.argmin(1)
        own = d[:, self.cursor]
        # only to a clearly closer centroid: among equidistant ones (copies of one vector
        # split across postings) argmin would pull everything back into the first, and the
        # split would repeat forever
        move = clearly_closer(d[np.arange(best.size), best], own, (vecs * vecs).sum(1))
        return Moves(ids[move], ver[move], self.pids[best[move]])

    def apply(self, index: PartitionedIndex, moves: Moves) -> int:
        """Step 3 (exclusive lock): move the entries still as planned; returns how many moved.

        The posting keeps its other current entries (stale ones are dropped).
        """
        j = self.cursor
        self.cursor += 1
        q = int(self.pids[j])
        part = index.parts.get(q)
        if part is None or part.n > index.options["split_limit"]:
            self.skipped[j] = True
            return 0
        ids, ver, vecs = part.view()
        vm = index.versions
        current = vm.current(ids, ver)
        dest = np.full(ids.size, -1, dtype=np.int64)
        if moves.ids.size and ids.size:
            order = np.argsort(moves.ids, kind="stable")
            pos = np.searchsorted(moves.ids, ids, sorter=order)
            at = order[np.minimum(pos, moves.ids.size - 1)]
            planned = (moves.ids[at] == ids) & (moves.ver[at] == ver)
            planned &= current & (vm.loc[ids] == q)
            dest[planned] = moves.dest[at[planned]]
            for p in np.unique(dest[planned]).tolist():
                if p not in index.parts:  # cannot happen while the worker runs this alone
                    dest[dest == p] = -1
        move = dest >= 0
        stay = current & ~move
        kept_vecs = vecs[stay]
        self.sums[j] = kept_vecs.sum(0, dtype=np.float64)
        self.counts[j] = int(stay.sum())
        if not move.any():
            if not stay.all():  # stale entries only: drop them
                part.replace(ids[stay], ver[stay], kept_vecs)
            return 0
        m_ids, m_ver, m_vecs, m_dest = ids[move], ver[move], vecs[move], dest[move]
        part.replace(ids[stay], ver[stay], kept_vecs)
        vm.loc[m_ids] = m_dest
        index._append_grouped(m_dest, m_ids, m_ver, m_vecs)
        # the destinations already processed count what they received here; the others
        # count it with their own entries at their step
        col = {p: c for c, p in enumerate(self.pids.tolist())}
        for p in np.unique(m_dest).tolist():
            c = col[p]
            if c < self.cursor and not self.skipped[c]:
                sel = m_dest == p
                self.sums[c] += m_vecs[sel].sum(0, dtype=np.float64)
                self.counts[c] += int(sel.sum())
        return int(m_ids.size)

    def finish(self, index: PartitionedIndex) -> list[int]:
        """Last step (exclusive lock): centroids to their postings' means; returns the
        neighbourhood's postings now outside the size limits."""
        alive = np.array([p in index.parts for p in self.pids.tolist()], dtype=bool)
        mean = alive & ~self.skipped & (self.counts > 0)
        if mean.any():
            rows = index.centroids.rows(self.pids[mean])
            means = self.sums[mean] / self.counts[mean, None]
            index.move_centroids(rows, means.astype(np.float32))
        o = index.options
        return [
            p
            for p in self.pids[alive].tolist()
            if not o["merge_limit"] <= index.parts[p].n <= o["split_limit"]
        ]
