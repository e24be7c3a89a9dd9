import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distilcache.precompute.inputs import InputError, InputSpec, Record, Rejection, iter_corpus, iter_input


def _items(spec: InputSpec) -> list[Record | Rejection]:
    return list(iter_input(spec))


def test_txt_every_line_is_a_record_or_a_counted_rejection(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_bytes(
        b"\xef\xbb\xbffirst line\r\n"  # BOM and CRLF
        b"\n"  # empty
        b"   \t \n"  # whitespace only
        b"bad \xff\xfe bytes\n"  # invalid UTF-8
        b"with\x00nul\n"
        b"\xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x98\x80\n"  # 你好 + emoji
        b"last line without newline"
    )
    items = _items(InputSpec(path))
    assert len(items) == 7
    assert items[0] == Record("corpus:1", "first line", "corpus.txt")
    assert [(r.row, r.reason) for r in items if isinstance(r, Rejection)] == [(2, "empty"), (3, "empty"), (4, "invalid_utf8")]
    assert items[3].detail.startswith("byte 4")
    records = [r for r in items if isinstance(r, Record)]
    assert [r.id for r in records] == ["corpus:1", "corpus:5", "corpus:6", "corpus:7"]
    assert records[1].text == "with\x00nul" and records[2].text == "你好 😀" and records[3].text == "last line without newline"


def test_jsonl_fields_are_configurable_and_bad_rows_are_rejected(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [
        json.dumps({"key": "a", "body": "hello"}),
        json.dumps({"key": "b"}),  # no text
        "{not json",
        json.dumps({"body": "no id"}),
        json.dumps({"key": 7, "body": "numeric id"}),
        json.dumps({"key": "c", "body": 3}),
        json.dumps(["a", "list"]),
        "",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    items = _items(InputSpec(path, id_field="key", text_field="body"))
    assert len(items) == len(rows)
    assert [i.id for i in items if isinstance(i, Record)] == ["a", "7"]
    assert [i.reason for i in items if isinstance(i, Rejection)] == [
        "missing_field", "invalid_json", "missing_field", "bad_type", "invalid_json", "empty"
    ]


def test_jsonl_lone_surrogate_escape_is_rejected_as_invalid_utf8(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "x", "text": "bad \\ud800 escape"}\n', encoding="utf-8")
    (item,) = _items(InputSpec(path))
    assert isinstance(item, Rejection) and item.reason == "invalid_utf8"


def test_csv_and_parquet_columns_and_row_number_ids(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('sentence,label\n"multi\nline",1\n,0\nplain,1\n', encoding="utf-8")
    items = _items(InputSpec(csv_path, id_field="", text_field="sentence"))
    assert [(type(i).__name__, i.id) for i in items] == [("Record", "t:1"), ("Rejection", "t:2"), ("Record", "t:3")]
    assert items[0].text == "multi\nline"

    pq_path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"uid": ["u1", None, "u3"], "text": ["one", "two", None]}), pq_path)
    items = _items(InputSpec(pq_path, id_field="uid"))
    assert isinstance(items[0], Record) and items[0].id == "u1"
    assert [i.reason for i in items[1:]] == ["missing_field", "missing_field"]


def test_missing_column_names_the_file_and_the_columns(tmp_path):
    path = tmp_path / "p.parquet"
    pq.write_table(pa.table({"sentence": ["x"]}), path)
    with pytest.raises(InputError, match=r"p\.parquet: no column \['text', 'id'\] \(columns: \['sentence'\]\)"):
        _items(InputSpec(path))


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="unknown input format '.xml'"):
        _items(InputSpec(tmp_path / "a.xml"))
    with pytest.raises(InputError, match="not found"):
        _items(InputSpec(tmp_path / "a.txt"))


def test_duplicate_ids_are_an_error_by_default_or_rejected_when_asked(tmp_path):
    a = tmp_path / "a.jsonl"
    a.write_text('{"id": "x", "text": "one"}\n{"id": "y", "text": "two"}\n', encoding="utf-8")
    b = tmp_path / "b.jsonl"
    b.write_text('{"id": "x", "text": "three"}\n', encoding="utf-8")
    specs = [InputSpec(a), InputSpec(b)]
    with pytest.raises(InputError, match=r"duplicate id 'x': b\.jsonl row 1 repeats a\.jsonl row 1"):
        list(iter_corpus(specs))
    items = list(iter_corpus(specs, keep_first_duplicate=True))
    assert [type(i).__name__ for i in items] == ["Record", "Record", "Rejection"]
    assert items[2].reason == "duplicate_id"
