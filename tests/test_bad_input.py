"""Bad input loses nothing: every input row is one cache row or one counted, explained rejection."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from conftest import CORPUS
from distilcache import open_cache
from distilcache.precompute import InputError, InputSpec, PrecomputeConfig, precompute
from distilcache.inputs import Record, Rejection, iter_input
from distilcache.weighting import IdfTable, weighted_tokens

NASTY = [
    "e\u0301\u0301\u0301 combining marks",  # 1
    "\u05e9\u05dc\u05d5\u05dd \u202eRTL override\u202c",  # 2 Hebrew + bidi controls
    "zero\u200bwidth\u200d\u2060joiners\ufeff",  # 3
    "\u200b\u200b\u200b",  # 4 nothing but zero-width: no tokens, still a row
    "emoji 👩‍👩‍👧 🇨🇳 🤖 ok",  # 5
    "nul\x00byte inside",  # 6
    "",  # 7 empty: rejected
    " \t ",  # 8 whitespace: rejected
    "今天天气很好",  # 9
]


def test_every_kind_of_bad_line_becomes_a_row_or_a_counted_rejection(teacher_dir, tmp_path):
    path = tmp_path / "nasty.txt"
    long_line = "今天天气很好" * 175_000  # about 1 MB of text (3 MB of UTF-8)
    body = b"".join(line.encode("utf-8") + (b"\r\n" if i % 2 else b"\n") for i, line in enumerate(NASTY))  # mixed CRLF/LF
    path.write_bytes(body + b"bad \xc3\x28 utf8\n" + long_line.encode() + b"\n" + b"last line, no newline")
    manifest = precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(path)], output=tmp_path / "cache", device="cpu"))

    (entry,) = manifest["inputs"]
    assert entry["input_rows"] == 12 == entry["rows"] + entry["rejected"]
    assert manifest["rejected"]["by_reason"] == {"empty": 2, "invalid_utf8": 1}
    rejected = [json.loads(line) for line in (tmp_path / "cache" / "rejected.jsonl").read_text().splitlines()]
    assert [(r["row"], r["reason"]) for r in rejected] == [(7, "empty"), (8, "empty"), (10, "invalid_utf8")]

    cache = open_cache(tmp_path / "cache")
    table = cache.table()
    assert table["id"].to_pylist() == [f"nasty:{n}" for n in (1, 2, 3, 4, 5, 6, 9, 11, 12)]
    texts = table["text"].to_pylist()
    assert texts[:6] == NASTY[:6] and texts[7] == long_line  # stored exactly as read (CR stripped)
    assert table["truncated"].to_pylist()[7] is True
    assert np.isfinite(cache.vectors()).all()
    assert manifest["stats"]["rows_without_tokens"] == 1
    for weights in table["weights"].to_pylist():
        assert weights == [] or abs(sum(weights) - 1) < 1e-5


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_missing_text_column_stops_before_any_work_naming_the_file(teacher_dir, tmp_path, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":  # jsonl has no header: each row missing the field is rejected instead
        path.write_text('{"id": "a", "body": "x"}\n{"id": "b", "text": "今天"}\n', encoding="utf-8")
        manifest = precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(path)], output=tmp_path / "c", device="cpu"))
        assert manifest["rejected"]["by_reason"] == {"missing_field": 1} and manifest["total_rows"] == 1
        return
    if fmt == "csv":
        path.write_text("id,body\na,x\n", encoding="utf-8")
    else:
        pq.write_table(pa.table({"id": ["a"], "body": ["x"]}), path)
    with pytest.raises(InputError, match=rf"data\.{fmt}: no column \['text'\]"):
        precompute(PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(path)], output=tmp_path / "c", device="cpu"))
    assert not (tmp_path / "c" / "manifest.json").exists()


@pytest.fixture(scope="module")
def tokenizer(teacher_dir):
    return AutoTokenizer.from_pretrained(str(teacher_dir))


IDF = IdfTable.from_texts(CORPUS)
line_text = st.text(st.characters(exclude_characters="\n", exclude_categories=("Cs",)), max_size=40)
raw_line = st.one_of(line_text.map(lambda t: t.encode("utf-8")), st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(raw_line, max_size=12), crlf=st.booleans())
def test_any_lines_are_all_accounted_for_and_weights_stay_finite(tokenizer, tmp_path, lines, crlf):
    path = tmp_path / "fuzz.txt"
    path.write_bytes(b"".join(line + (b"\r\n" if crlf else b"\n") for line in lines))
    items = list(iter_input(InputSpec(path)))
    assert len(items) == len(lines)  # input rows = records + rejections
    assert [i.row for i in items if isinstance(i, Rejection)] == [n for n, i in enumerate(items, 1) if isinstance(i, Rejection)]
    records = [i for i in items if isinstance(i, Record)]
    for record in records:
        assert record.text.strip() and "\n" not in record.text
    for tokens in weighted_tokens([r.text for r in records], tokenizer, 64, IDF, 0.1):
        assert np.isfinite(tokens.weights).all() and (tokens.weights >= 0).all()
        assert len(tokens.weights) == len(tokens.token_ids)
        if len(tokens.weights):
            assert abs(tokens.weights.sum() - 1) < 1e-5
