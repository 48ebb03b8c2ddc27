"""What a text file is: its encoding (BOM, UTF-8, else cp1252 / latin-1) and CSV delimiter.

Both guesses are reported (`ReadInfo`) so a job summary can say how each file was read;
an explicit encoding or delimiter always wins over the guess.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import io
from collections import Counter

#: delimiters a CSV / TXT / TSV file is sniffed among
DELIMITERS = (",", ";", "|", "\t")
#: rows of the file looked at when sniffing the delimiter
SNIFF_ROWS = 50
#: characters of the file looked at when sniffing the delimiter
SNIFF_CHARS = 1 << 16

# longest first: the UTF-32 LE mark begins with the UTF-16 LE mark
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReadInfo:
    """How a table file was read."""

    #: ``csv``, ``jsonl``, ``parquet`` or ``sql``
    format: str
    #: text encoding used (None for Parquet / SQL)
    encoding: str | None = None
    #: how the encoding was chosen: ``given``, ``bom``, ``utf-8``, ``fallback`` (or None)
    encoding_source: str | None = None
    #: CSV delimiter used (None for other formats)
    delimiter: str | None = None
    #: how the delimiter was chosen: ``given``, ``sniffed``, ``default`` (or None)
    delimiter_source: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return dataclasses.asdict(self)


def bom_encoding(raw: bytes) -> str | None:
    """The encoding a byte-order mark at the start of ``raw`` names, or None."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            return name
    return None


def detect_encoding(raw: bytes) -> tuple[str, str]:
    """``(encoding, source)`` of a file's bytes (see `decode_detected`)."""
    _, encoding, source = decode_detected(raw)
    return encoding, source


def decode_detected(raw: bytes) -> tuple[str, str, str]:
    """``(text, encoding, source)``: a file's bytes decoded with the encoding they show.

    A BOM names the encoding (``utf-8-sig``, ``utf-16``, ``utf-32``; source ``bom``); else
    strict UTF-8 when the whole file decodes (``utf-8``); else cp1252 when it decodes
    (Windows "latin-1": every byte but five is defined; ``fallback``); else latin-1, which
    decodes any byte sequence (``fallback``). A BOM that does not decode falls through.
    """
    bom = bom_encoding(raw)
    if bom is not None:
        try:
            return raw.decode(bom), bom, "bom"
        except UnicodeDecodeError:
            pass
    for encoding, source in (("utf-8", "utf-8"), ("cp1252", "fallback")):
        try:
            return raw.decode(encoding), encoding, source
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1"), "latin-1", "fallback"


def sniff_delimiter(text: str, default: str = ",") -> tuple[str, str]:
    """``(delimiter, source)`` of CSV text, among `DELIMITERS`.

    Each candidate parses the first `SNIFF_ROWS` rows (quotes respected); the one whose
    rows most consistently share the header's column count (more than one column) wins,
    more columns breaking ties, then `csv.Sniffer`'s own guess, then ``default``. With no
    candidate giving more than one column the source is ``default``.
    """
    sample = text[:SNIFF_CHARS]
    if len(text) > SNIFF_CHARS:  # the last row may be cut
        sample = sample[: sample.rfind("\n") + 1] or sample
    try:
        sniffed: str | None = csv.Sniffer().sniff(sample, delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        sniffed = None
    best: tuple[float, int, int, int] | None = None
    choice = default
    for d in DELIMITERS:
        counts = _row_lengths(sample, d)
        if not counts or counts[0] < 2:
            continue
        header = counts[0]
        consistent = sum(c == header for c in counts) / len(counts)
        mode_count = Counter(counts).most_common(1)[0][1] / len(counts)
        key = (round(max(consistent, mode_count), 3), header, d == sniffed, d == default)
        if best is None or key > best:
            best, choice = key, d
    if best is None:
        return default, "default"
    return choice, "sniffed"


def _row_lengths(sample: str, delimiter: str) -> list[int]:
    reader = csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, skipinitialspace=True)
    out: list[int] = []
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            out.append(len(row))
            if len(out) >= SNIFF_ROWS:
                break
    except csv.Error:
        pass
    return out
