"""Profiles of a column's values (a deterministic sample and its shape) and the field type
they suggest.

Schema alignment compares profiles of the two sides' columns; `infer_type` picks how an
aligned field is compared (see `veclink.linkage.compare`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
from veclink.linkage.compare import parse_date, parse_number

#: values sampled per column for its shape (and embedded values)
SAMPLE = 1000
#: values sampled per column for its vocabulary (word counting is cheap; overlap needs many)
VOCAB_SAMPLE = 20000
_WORD = re.compile(r"[0-9a-z]+")
_NUMBER = re.compile(r"^[-+]?[$€£]?\s*[-+]?\d[\d,]*(\.\d+)?\s*%?$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?.*)?$")
_YEAR = re.compile(r"^(1[0-9]|20)\d{2}$")
# what parse_date's formats could accept: checked first, strptime is slow
_DATE_LIKE = re.compile(r"^(\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{8})$")
_CODE = re.compile(r"^[0-9A-Za-z]*\d[0-9A-Za-z]*([-./ ()]+[0-9A-Za-z]+)*$")
_NAME_CHARS = re.compile(r"^[^\W\d_]+([ .,'-]+[^\W\d_]+)*\.?$")


@dataclasses.dataclass(frozen=True)
class ColumnProfile:
    """What a column's (sampled, non-empty) values look like; shares are in [0, 1]."""

    #: the sampled non-empty values, in row order
    values: tuple[str, ...]
    #: share of all rows that have a value
    fill: float
    #: share of values that are a number (``1,299.00``, ``$5``, ``12%``)
    numeric: float
    #: share of values that are a date (ISO, ``%Y%m%d``, ``d/m/Y`` ...) or a year
    date: float
    #: share of values that are a 4-digit year
    year: float
    #: share of values that look like codes: digits mixed with letters / separators, one token
    code: float
    #: share of values made only of letters with spaces and name punctuation
    name_like: float
    #: mean characters and mean words per value
    mean_chars: float
    mean_words: float
    #: standard deviation of log(1 + characters)
    sd_log_chars: float
    #: share of the characters that are digits
    digit_chars: float
    #: distinct values / sampled values
    distinct: float
    #: word -> count over the sample
    words: Counter[str]
    #: sorted log10(1 + |x|) of the values that are numbers
    magnitudes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))

    @property
    def empty(self) -> bool:
        return not self.values

    def shape(self) -> np.ndarray:
        """The shape as a vector of numbers in [0, 1] (for `shape_similarity`)."""
        return np.array(
            [
                self.numeric,
                self.date,
                self.code,
                self.name_like,
                self.digit_chars,
                min(math.log1p(self.mean_chars) / math.log1p(1000), 1.0),
                min(self.sd_log_chars, 1.0),
                min(math.log1p(self.mean_words) / math.log1p(100), 1.0),
                self.distinct,
            ]
        )


#: weights of `ColumnProfile.shape` components in `shape_similarity`
_SHAPE_WEIGHTS = np.array([2.0, 2.0, 1.0, 1.0, 1.0, 2.0, 0.5, 1.0, 0.5])


def shape_similarity(a: ColumnProfile, b: ColumnProfile) -> float:
    """1 - weighted mean absolute difference of the two shapes (1: same shape)."""
    d = np.abs(a.shape() - b.shape())
    return float(1.0 - (d * _SHAPE_WEIGHTS).sum() / _SHAPE_WEIGHTS.sum())


def sample_rows(n: int, present: Sequence[int], size: int, seed: int) -> list[int]:
    """Up to ``size`` of the ``present`` row numbers, drawn with a seeded generator, sorted."""
    if len(present) <= size:
        return list(present)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(present), size=size, replace=False)
    return sorted(present[i] for i in picked.tolist())


def profile_column(
    values: Sequence[str | None],
    *,
    sample: int = SAMPLE,
    vocab_sample: int = VOCAB_SAMPLE,
    seed: int = 0,
) -> ColumnProfile:
    """Profile a column from deterministic samples of its non-empty values.

    Args:
        sample: values whose shape is measured (and kept in ``values``).
        vocab_sample: values whose words are counted (at least ``sample``).
    """
    present = [i for i, v in enumerate(values) if v]
    rows = sample_rows(len(values), present, sample, seed)
    vals = tuple(str(values[i]) for i in rows)
    vocab_rows = sample_rows(len(values), present, max(vocab_sample, sample), seed)
    fill = len(present) / len(values) if len(values) else 0.0
    if not vals:
        return ColumnProfile((), fill, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, Counter())
    numbers = [parse_number(v) for v in vals if _NUMBER.match(v)]
    n = len(vals)
    chars = [len(v) for v in vals]
    n_words = [len(_WORD.findall(v.lower())) for v in vals]
    words: Counter[str] = Counter()
    for i in vocab_rows:
        words.update(_WORD.findall(str(values[i]).lower()))
    digits = sum(sum(c.isdigit() for c in v) for v in vals)
    nonspace = sum(len(v) - v.count(" ") for v in vals) or 1
    log_chars = np.log1p(np.array(chars, float))
    return ColumnProfile(
        values=vals,
        fill=fill,
        numeric=sum(bool(_NUMBER.match(v)) for v in vals) / n,
        date=sum(_is_date(v) for v in vals) / n,
        year=sum(bool(_YEAR.match(v)) for v in vals) / n,
        code=sum(_is_code(v) for v in vals) / n,
        name_like=sum(bool(_NAME_CHARS.match(v)) for v in vals) / n,
        mean_chars=float(np.mean(chars)),
        mean_words=float(np.mean(n_words)),
        sd_log_chars=float(log_chars.std()),
        digit_chars=digits / nonspace,
        distinct=len(set(vals)) / n,
        words=words,
        magnitudes=np.sort(np.log10(1.0 + np.abs(np.array([x for x in numbers if x is not None])))),
    )


def magnitude_similarity(a: ColumnProfile, b: ColumnProfile) -> float:
    """1 - the Kolmogorov-Smirnov distance of two columns' number magnitudes (0 if either
    column has no numbers): prices match prices, years match years, whatever their digits."""
    x, y = a.magnitudes, b.magnitudes
    if not x.size or not y.size:
        return 0.0
    grid = np.concatenate([x, y])
    fx = np.searchsorted(x, grid, side="right") / x.size
    fy = np.searchsorted(y, grid, side="right") / y.size
    return float(1.0 - np.abs(fx - fy).max())


def _is_date(v: str) -> bool:
    if _ISO_DATE.match(v):
        return True
    if _YEAR.match(v):
        return True
    return bool(_DATE_LIKE.match(v)) and parse_date(v) is not None


def _is_code(v: str) -> bool:
    """One token of digits, possibly with letters and separators: ``404/231-1368``, ``KX-TCA92``."""
    if not _CODE.match(v) or _NUMBER.match(v):  # a plain number is no code
        return False
    digits = sum(c.isdigit() for c in v)
    letters = sum(c.isalpha() for c in v)
    return digits >= 3 and digits >= letters


# -------------------------------------------------------------------------- field types

#: a value share from which a column counts as numbers / dates / codes / names
MOSTLY = 0.8
#: a column with at most this many distinct values (and repeated ones) is a category
CATEGORY_MAX_DISTINCT = 30
#: mean characters from which a column is long text
LONG_TEXT_CHARS = 100


def infer_type(profile: ColumnProfile) -> str:
    """The comparison type of a column (one of ``spec.FIELD_TYPES``), from its profile.

    Rules, first that applies:

    1. no values: ``string``;
    2. mostly (>= `MOSTLY`) dates, ISO dates or years: ``date``;
    3. mostly codes (digits with separators or letters: phones, postcodes, ids, model
       numbers), or mostly integers of one fixed length >= 4 digits: ``code``;
    4. mostly numbers: ``number``;
    5. values that repeat: each seen about 10 times or more (distinct ratio <= 0.1), or few
       distinct values (<= `CATEGORY_MAX_DISTINCT`) with distinct ratio <= 0.2: ``category``;
    6. long values (mean >= `LONG_TEXT_CHARS` characters or >= 15 words): ``text``;
    7. mostly short letter-only values of 1-4 words that mostly differ from each other
       (distinct ratio >= 0.5: person or place names, not labels): ``name``;
    8. otherwise ``string``.
    """
    p = profile
    if p.empty:
        return "string"
    if p.date >= MOSTLY:
        return "date"
    if p.code >= MOSTLY or (p.numeric >= MOSTLY and _fixed_length_integers(p.values)):
        return "code"
    if p.numeric >= MOSTLY:
        return "number"
    distinct = len(set(p.values))
    if p.distinct <= 0.1 or (distinct <= CATEGORY_MAX_DISTINCT and p.distinct <= 0.2):
        return "category"
    if p.mean_chars >= LONG_TEXT_CHARS or p.mean_words >= 15:
        return "text"
    if p.name_like >= MOSTLY and p.mean_words <= 4 and p.distinct >= 0.5:
        return "name"
    return "string"


def _fixed_length_integers(values: Sequence[str]) -> bool:
    ints = [v for v in values if v.isdigit()]
    if len(ints) < MOSTLY * len(values):
        return False
    length, count = Counter(len(v) for v in ints).most_common(1)[0]
    return length >= 4 and count >= MOSTLY * len(ints)
