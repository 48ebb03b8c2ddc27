"""Schema alignment: names, content, one-to-one assignment, notes, field types."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from veclink.linkage import Table, read_table
from veclink.linkage.align import align_columns, identity_alignment, name_similarity, name_tokens
from veclink.linkage.profile import infer_type, profile_column

from tests.fixtures.linkage import support

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "linkage"

FIRST = ["anna", "bruno", "carla", "dieter", "elena", "farid", "greta", "hugo", "ines", "jonas"]
LAST = ["meyer", "rossi", "novak", "garcia", "schmidt", "dubois", "kowalski", "silva", "berg"]
ITEMS = ["lamp", "chair", "table", "kettle", "router", "camera", "phone", "speaker", "drill"]
BRANDS = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka"]
CITIES = ["berlin", "paris", "rome", "madrid", "vienna", "oslo", "lisbon", "prague"]


def _products(n: int, seed: int) -> list[dict[str, str]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        brand, item = rng.choice(BRANDS), rng.choice(ITEMS)
        model = f"{rng.choice('ABCXZ')}{rng.randint(100, 999)}"
        rows.append(
            {
                "title": f"{brand} {item} {model}",
                "maker": brand,
                "price": f"{rng.uniform(5, 500):.2f}",
                "city": rng.choice(CITIES),
                "contact": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                "added": f"20{rng.randint(10, 24)}-{rng.randint(1, 12):02d}-{rng.randint(10, 28)}",
            }
        )
    return rows


def _table(rows: list[dict[str, str]], columns: dict[str, str], name: str) -> Table:
    """Rows renamed (old -> new column name, in the dict's order), with an id column."""
    recs = [
        {"id": str(i), **{new: r[old] for old, new in columns.items()}} for i, r in enumerate(rows)
    ]
    return Table.from_records(recs, id_column="id", name=name)


def _pairs(alignment) -> set[tuple[str, str]]:
    return {(m.left, m.right) for m in alignment.matches}


def test_name_normalisation() -> None:
    assert name_tokens("http://www.okkam.org/ontology_restaurant1.owl#phone_number") == [
        "phone",
        "number",
    ]
    assert name_tokens("https://x.org/ontology/releaseDate") == ["release", "date"]
    assert name_tokens("HTTPStatusCode") == ["http", "status", "code"]
    assert name_similarity("http://a.org/onto#phoneNumber", "phone_number") == 1.0
    assert name_similarity("addr", "Address") > 0.4
    assert name_similarity("title", "writer") < 0.2
    assert name_similarity("", "x") == 0.0
    assert name_similarity("#", "#") == 1.0  # nothing left to split: the raw names decide


def test_renamed_and_shuffled_columns_align_by_content() -> None:
    left = _table(
        _products(300, 1),
        {"title": "title", "maker": "manufacturer", "price": "price", "added": "date_added"},
        "left",
    )
    # other records, other names, other order: only the content says what corresponds
    right = _table(
        _products(250, 2),
        {"added": "c1", "price": "c2", "title": "c3", "maker": "c4"},
        "right",
    )
    al = align_columns(left, right)
    assert _pairs(al) == {
        ("title", "c3"),
        ("manufacturer", "c4"),
        ("price", "c2"),
        ("date_added", "c1"),
    }
    types = {m.left: m.type for m in al.matches}
    assert types["price"] == "number" and types["date_added"] == "date"
    assert all(m.name_score < 0.5 for m in al.matches)
    assert al.left_only == () and al.right_only == ()


def test_title_aligns_with_name_when_names_disagree() -> None:
    rows = _products(200, 3)
    left = _table(rows, {"title": "title", "price": "price"}, "left")
    right = _table(_products(200, 4), {"price": "cost", "title": "name"}, "right")
    al = align_columns(left, right)
    assert ("title", "name") in _pairs(al)
    m = next(m for m in al.matches if m.left == "title")
    assert m.content_score > m.name_score


def test_a_column_without_partner_and_an_empty_column_stay_unaligned() -> None:
    left = _table(_products(200, 5), {"title": "title", "city": "city", "contact": "owner"}, "l")
    right_rows = [dict(r, blank="") for r in _products(200, 6)]
    right = _table(right_rows, {"title": "title", "price": "price", "blank": "blank"}, "r")
    al = align_columns(left, right)
    assert _pairs(al) == {("title", "title")}
    assert set(al.left_only) == {"city", "owner"}
    assert set(al.right_only) == {"price", "blank"}
    assert "right column(s) without any value: ['blank']" in al.notes
    # an empty column stays unaligned even when a column of the same name exists
    left2 = Table.from_records(
        [
            {"id": str(i), "title": r["title"], "blank": "x" if i == 0 else ""}
            for i, r in enumerate(_products(50, 15))
        ],
        id_column="id",
    )
    right2 = _table(
        [dict(r, blank="") for r in _products(50, 16)], {"title": "title", "blank": "blank"}, "r"
    )
    assert _pairs(align_columns(left2, right2)) == {("title", "title")}


def test_url_named_columns_align_with_plain_names() -> None:
    rows = _products(150, 7)
    left = _table(
        rows,
        {"title": "http://x.org/onto#productTitle", "city": "http://x.org/onto#store_city"},
        "l",
    )
    right = _table(_products(150, 8), {"city": "StoreCity", "title": "product_title"}, "r")
    al = align_columns(left, right)
    assert _pairs(al) == {
        ("http://x.org/onto#productTitle", "product_title"),
        ("http://x.org/onto#store_city", "StoreCity"),
    }
    assert all(m.name_score == 1.0 for m in al.matches)


def test_alignment_is_deterministic_and_json_ready() -> None:
    left = _table(_products(120, 9), {"title": "title", "maker": "brand"}, "l")
    right = _table(_products(120, 10), {"maker": "manufacturer", "title": "name"}, "r")
    a = align_columns(left, right, sample=50, seed=3)
    b = align_columns(left, right, sample=50, seed=3)
    assert a == b
    d = json.loads(json.dumps(a.to_dict()))
    assert set(d) == {"matches", "left_only", "right_only", "notes"}
    assert {(m["left"], m["right"]) for m in d["matches"]} == {
        ("title", "name"),
        ("brand", "manufacturer"),
    }


def test_unaligned_column_holding_most_text_is_warned_about() -> None:
    rows = _products(100, 11)
    for r in rows:
        r["notes"] = " ".join(random.Random(len(r["title"])).choices(ITEMS + CITIES, k=40))
    left = _table(rows, {"title": "title", "price": "price"}, "l")
    right = _table(rows, {"title": "title", "notes": "notes"}, "r")
    al = align_columns(left, right)
    assert ("title", "title") in _pairs(al) and "notes" in al.right_only
    assert any("'notes'" in n and "right" in n for n in al.notes)
    assert not any("price" in n for n in al.notes)  # a short column is no cause for alarm


def test_no_alignment_says_so() -> None:
    left = Table.from_records(
        [{"id": str(i), "a": f"{i * 7}.5"} for i in range(40)], id_column="id"
    )
    right = Table.from_records(
        [{"id": str(i), "b": f"{FIRST[i % 10]} {LAST[i % 9]}"} for i in range(40)], id_column="id"
    )
    al = align_columns(left, right)
    assert al.matches == () and al.left_only == ("a",) and al.right_only == ("b",)
    assert any("no column could be aligned" in n for n in al.notes)


def test_encoder_signal_only_adds_evidence() -> None:
    enc = support.HashEncoder(dim=64)
    left = _table(_products(150, 12), {"title": "title", "contact": "person"}, "l")
    right = _table(_products(150, 13), {"contact": "who", "title": "label"}, "r")
    plain = align_columns(left, right)
    with_enc = align_columns(left, right, encoder=enc)
    assert _pairs(with_enc) == _pairs(plain) == {("title", "label"), ("person", "who")}
    for a, b in zip(plain.matches, with_enc.matches, strict=True):
        assert b.content_score >= a.content_score - 1e-9
    assert enc.calls == 2  # one batch per side, a few values per column


def test_identity_alignment_for_dedupe() -> None:
    t = read_table(FIX / "febrl1_sample.csv", id_column="rec_id")
    al = identity_alignment(t)
    assert [m.left for m in al.matches] == list(t.columns)
    types = {m.left: m.type for m in al.matches}
    assert types["date_of_birth"] == "date"
    assert types["postcode"] == "code" and types["soc_sec_id"] == "code"
    assert types["state"] == "category"
    assert types["given_name"] == "name"


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], "string"),
        (["1999", "2004", "1987", "2010"] * 5, "date"),
        (["2001-03-04", "1999-12-31", "2020-01-01T10:00:00"] * 5, "date"),
        (["$399.00", "12.5", "1,299.00", "7"] * 5, "number"),
        (["404/231-1368", "212-677-0606", "310 555 1234"] * 5, "code"),
        ([f"{4000 + i * 37}" for i in range(40)], "code"),
        (["drama", "comedy", "drama", "horror"] * 20, "category"),
        (["a long description of the product " * 3 + str(i) for i in range(20)], "text"),
        ([f"{f} {s}" for f in FIRST for s in LAST], "name"),
        ([f"item {i} (v{i % 3})" for i in range(30)], "string"),
        # multi-valued labels that repeat (genre lists): category, not names
        ([f"{g},{h}" for g in ITEMS for h in CITIES] * 10, "category"),
        # short letter-only values that repeat too much to be names
        ([f"{FIRST[i % 10]} {LAST[i % 3]}" for i in range(90)], "string"),
    ],
)
def test_infer_type_rules(values: list[str], expected: str) -> None:
    assert infer_type(profile_column(values)) == expected


def test_committed_samples_align_column_for_column() -> None:
    """Abt-Buy and DBLP-ACM samples: identity where the names agree, nothing invented."""
    abt, buy = read_table(FIX / "abt_sample.csv"), read_table(FIX / "buy_sample.csv")
    al = align_columns(abt, buy)
    assert _pairs(al) == {("name", "name"), ("description", "description"), ("price", "price")}
    assert al.right_only == ("manufacturer",)
    assert {m.left: m.type for m in al.matches}["price"] == "number"
    dblp, acm = read_table(FIX / "dblp_sample.csv"), read_table(FIX / "acm_sample.csv")
    al = align_columns(dblp, acm)
    assert _pairs(al) == {(c, c) for c in ("title", "authors", "venue", "year")}
    # hide the right side's names and shuffle its columns: content alone finds the same
    cols = ["year", "authors", "venue", "title"]
    blind = Table(
        name="acm",
        id_column="id",
        ids=acm.ids,
        columns=tuple(f"c{i}" for i in range(4)),
        data={f"c{i}": acm.column(c) for i, c in enumerate(cols)},
    )
    al = align_columns(dblp, blind)
    assert {(m.left, cols[int(m.right[1:])]) for m in al.matches} >= {
        ("title", "title"),
        ("authors", "authors"),
        ("year", "year"),
    }


def test_serialize_appends_unaligned_columns_after_the_fields() -> None:
    from veclink.linkage import FieldSpec
    from veclink.linkage.serialize import serialize, serialize_record

    t = Table.from_records(
        [{"id": "1", "title": "lamp", "http://x.org/o#storeCity": "oslo", "n": ""}],
        id_column="id",
    )
    fields = [FieldSpec(name="title")]
    extra = ["http://x.org/o#storeCity", "n"]
    assert serialize(t, fields, "left", "plain", extra) == ["lamp, oslo"]
    assert serialize(t, fields, "left", "labeled", extra) == ["title: lamp; store city: oslo"]
    rec = {"title": "lamp", "http://x.org/o#storeCity": "oslo"}
    assert serialize_record(rec, fields, "left", "plain", extra) == "lamp, oslo"
    assert serialize_record({"title": "lamp"}, fields, "left", "plain", extra) == "lamp"
