import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distilcache.inputs import InputError, InputSpec, Record, Rejection, iter_corpus, iter_input


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


def test_csv_and_tsv_records_with_the_wrong_field_count_are_rejected_as_malformed(tmp_path):
    csv_path = tmp_path / "t.csv"
    csv_path.write_text("id,text\n1,hello, world\n\n2,ok\n3\n", encoding="utf-8")
    items = _items(InputSpec(csv_path))
    assert items[1] == Record("2", "ok", "t.csv")
    assert [(i.row, i.id, i.reason, i.detail) for i in items if isinstance(i, Rejection)] == [
        (1, None, "malformed_record", "line 2: 3 fields, the header has 2"),
        (3, None, "malformed_record", "line 5: 1 field, the header has 2"),  # the blank line 3 is skipped, not counted
    ]

    tsv_path = tmp_path / "t.tsv"
    tsv_path.write_text('id\ttext\n1\thello\textra\n2\tsay "hi\n', encoding="utf-8")
    items = _items(InputSpec(tsv_path))
    assert (items[0].reason, items[0].detail) == ("malformed_record", "line 2: 3 fields, the header has 2")
    assert items[1] == Record("2", 'say "hi', "t.tsv")  # a quote in a .tsv stays text


def test_csv_stray_quote_is_one_malformed_record_and_reading_continues(tmp_path):
    path = tmp_path / "q.csv"
    path.write_text(
        'id,text\n1,"hello\n2,world\n3,"foo" bar\n4,baz\n5,"a, b\nc"\n6,"ab"c\n7,say "hi" there\n8,"never closed\n9,x\n',
        encoding="utf-8",
    )
    items = _items(InputSpec(path))
    # the quote opened on line 2 closes on line 4, where strict parsing stops at the text after it
    assert items == [
        Rejection("q.csv", 1, None, "malformed_record", "lines 2-4: ',' expected after '\"'"),
        Record("4", "baz", "q.csv"),
        Record("5", "a, b\nc", "q.csv"),
        Rejection("q.csv", 4, None, "malformed_record", "line 8: ',' expected after '\"'"),
        Record("7", 'say "hi" there', "q.csv"),  # a quote inside an unquoted field is text
        Rejection("q.csv", 6, None, "malformed_record", "lines 10-11: unexpected end of data"),
    ]


def test_csv_unreadable_header_is_an_input_error_naming_the_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text('"id,text\n1,a\n', encoding="utf-8")
    with pytest.raises(InputError, match=r"h\.csv: unreadable header \(lines 1-2\): unexpected end of data"):
        _items(InputSpec(path))


@pytest.mark.parametrize("suffix, sep", [(".csv", ","), (".tsv", "\t")])
def test_csv_and_tsv_fields_longer_than_the_csv_default_limit_are_read(tmp_path, suffix, sep):
    path = tmp_path / f"long{suffix}"
    long_text = "word " * 40_000  # 200,000 characters, over csv's default limit of 131,072
    path.write_text(f"id{sep}text\n1{sep}{long_text}\n2{sep}short\n", encoding="utf-8")
    assert _items(InputSpec(path)) == [Record("1", long_text, path.name), Record("2", "short", path.name)]


@pytest.mark.parametrize("suffix", [".txt", ".jsonl", ".csv", ".tsv"])
@pytest.mark.parametrize("bom, codec, name", [
    (b"\xff\xfe", "utf-16-le", "UTF-16"),
    (b"\xfe\xff", "utf-16-be", "UTF-16"),
    (b"\xff\xfe\x00\x00", "utf-32-le", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32-be", "UTF-32"),
])
def test_utf16_and_utf32_files_are_refused_before_reading_naming_the_file(tmp_path, suffix, bom, codec, name):
    path = tmp_path / f"wide{suffix}"
    body = {".txt": "hello\n", ".jsonl": '{"id": "a", "text": "hello"}\n',
            ".csv": "id,text\na,hello\n", ".tsv": "id\ttext\na\thello\n"}
    path.write_bytes(bom + body[suffix].encode(codec))
    pattern = (rf"wide\{suffix}: the file is {name} \(byte-order mark\); "
               rf"convert it to UTF-8 first, e\.g\. iconv -f {name} -t UTF-8 wide\{suffix} > wide\.utf8\{suffix}$")
    with pytest.raises(InputError, match=pattern):
        InputSpec(path).check()
    with pytest.raises(InputError, match=pattern):
        _items(InputSpec(path))


def test_utf8_bom_csv_is_still_read(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbfid,text\na,hello\n")
    assert _items(InputSpec(path)) == [Record("a", "hello", "bom.csv")]


def _corrupt_parquet(tmp_path, kind: str):
    path = tmp_path / "data.parquet"
    if kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 8)
        return path
    pq.write_table(pa.table({"id": [str(i) for i in range(1000)], "text": ["some text"] * 1000}), path)
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # footer intact, first data page header overwritten: opens, fails while reading
        path.write_bytes(data[:4] + b"\xab" * 40 + data[44:])
    return path


@pytest.mark.parametrize("kind", ["random bytes", "truncated", "corrupt data page"])
def test_corrupt_parquet_is_an_input_error_naming_the_file(tmp_path, kind):
    path = _corrupt_parquet(tmp_path, kind)
    with pytest.raises(InputError, match=r"data\.parquet: not a readable Parquet file: \S"):
        _items(InputSpec(path))
