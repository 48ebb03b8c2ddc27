"""Print the column alignment veclink finds for each linkage task of the development suite.

    python bench/linkage_alignment.py [--blind] [TASK ...]

``--blind`` hides the right table's column names and shuffles its columns, so that only
the values decide (a check that the alignment is not carried by the names alone).
Data: ../shared/data/linkage (Abt-Buy, DBLP-ACM, ccer/D1, D5, D6, D7, D10).
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from veclink.linkage import Table, read_table
from veclink.linkage.align import align_columns

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "linkage"
TASKS = {
    "abt-buy": ("Abt-Buy/Abt.csv", "Abt-Buy/Buy.csv"),
    "dblp-acm": ("DBLP-ACM/DBLP2.csv", "DBLP-ACM/ACM.csv"),
    "D1": ("ccer/D1/rest1.csv", "ccer/D1/rest2.csv"),
    "D5": ("ccer/D5/imdb.csv", "ccer/D5/tmdb.csv"),
    "D6": ("ccer/D6/imdb.csv", "ccer/D6/tvdb.csv"),
    "D7": ("ccer/D7/tmdb.csv", "ccer/D7/tvdb.csv"),
    "D10": ("ccer/D10/imdb.csv", "ccer/D10/dbpedia.csv"),
}


def _short(column: str) -> str:
    return column.rsplit("/", 1)[-1].rsplit("#", 1)[-1]


def _blind(table: Table, seed: int = 1) -> tuple[Table, dict[str, str]]:
    cols = list(table.columns)
    random.Random(seed).shuffle(cols)
    names = {c: f"c{i}" for i, c in enumerate(cols)}
    blind = Table(
        name=table.name,
        id_column=table.id_column,
        ids=table.ids,
        columns=tuple(names[c] for c in cols),
        data={names[c]: table.column(c) for c in cols},
        info=table.info,
    )
    return blind, {v: k for k, v in names.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="*", help=f"default: all of {', '.join(TASKS)}")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--blind", action="store_true", help="hide and shuffle the right columns")
    args = ap.parse_args()
    unknown = [t for t in args.tasks if t not in TASKS]
    if unknown:
        ap.error(f"unknown task(s) {unknown}; choose from {', '.join(TASKS)}")
    for task in args.tasks or list(TASKS):
        left, right = (read_table(args.data / f) for f in TASKS[task])
        real = {c: c for c in right.columns}
        if args.blind:
            right, real = _blind(right)
        t0 = time.perf_counter()
        al = align_columns(left, right)
        seconds = time.perf_counter() - t0
        li, ri = left.info, right.info
        print(
            f"== {task} ({seconds:.1f}s)  left {li.encoding} {li.delimiter!r}, "
            f"right {ri.encoding} {ri.delimiter!r}"
        )
        for m in al.matches:
            print(
                f"   {_short(m.left):20s} <-> {_short(real[m.right]):20s} score={m.score:.2f} "
                f"name={m.name_score:.2f} content={m.content_score:.2f} type={m.type}"
            )
        print(f"   left only:  {[_short(c) for c in al.left_only]}")
        print(f"   right only: {[_short(real[c]) for c in al.right_only]}")
        for note in al.notes:
            print(f"   note: {note}")


if __name__ == "__main__":
    main()
