"""Read corpora (.txt, .jsonl, .csv, .tsv, .parquet) into (id, text[, target]) records, rejecting bad rows explicitly.

Every input row ends as exactly one Record or one Rejection, in file order, so
rows in = rows out + rejections, always.
"""

import codecs
import csv
import functools
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from distilcache.cache_format.errors import DataFileError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}
LINE_IDS = ""  # an id field of "" means: ids are <file stem>:<row number>
# UTF-32-LE's mark starts with UTF-16-LE's, so the longer marks come first
WIDE_BOMS = [(codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
             (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16")]

# csv's default field limit (131,072 characters) would abort a run on one long text; the
# largest value a C long takes everywhere keeps long texts readable
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


class InputError(DataFileError):
    """An input file cannot be read as asked (unknown format, missing column, duplicate id, wrong encoding)."""


@dataclass(frozen=True)
class InputSpec:
    path: Path
    id_field: str = "id"
    text_field: str = "text"
    # parallel text: the teacher encodes this field, the student reads text_field; a row whose
    # target is missing or empty keeps the plain meaning (the teacher encodes its text)
    target_field: str | None = None

    @property
    def format(self) -> str:
        fmt = FORMATS.get(self.path.suffix.lower())
        if fmt is None:
            raise InputError(f"{self.path}: unknown input format {self.path.suffix!r}; expected one of {sorted(FORMATS)}")
        return fmt

    def check(self) -> None:
        """Fail early on an unknown format, a missing file, a UTF-16/32 text or a target field a .txt cannot have."""
        if self.format and not self.path.is_file():
            raise InputError(f"{self.path}: input file not found")
        if self.format != "parquet":
            _refuse_wide_encoding(self.path)
        if self.format == "txt" and self.target_field is not None:
            raise InputError(f"{self.path}: a .txt input has no fields; targets need .jsonl, .csv, .tsv or .parquet")

    def row_id(self, row_number: int) -> str:
        return f"{self._stem}:{row_number}"

    @functools.cached_property
    def _stem(self) -> str:  # asked once per row
        return self.path.stem

    def describe(self) -> dict[str, Any]:
        """The settings that decide how this file becomes rows (recorded in the manifest)."""
        described: dict[str, Any] = {"name": self.path.name, "format": self.format}
        if self.format != "txt":
            described |= {"id_field": self.id_field, "text_field": self.text_field}
        if self.target_field is not None:
            described["target_field"] = self.target_field
        return described


def _refuse_wide_encoding(path: Path) -> None:
    """A UTF-16/32 file would otherwise read as rows of NUL-interleaved text."""
    with open(path, "rb") as f:
        start = f.read(4)
    for bom, name in WIDE_BOMS:
        if start.startswith(bom):
            raise InputError(
                f"{path}: the file is {name} (byte-order mark); convert it to UTF-8 first, "
                f"e.g. iconv -f {name} -t UTF-8 {path.name} > {path.stem}.utf8{path.suffix}"
            )


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    file: str
    target_text: str | None = None  # what the teacher encodes instead of text (parallel data)

    @property
    def teacher_text(self) -> str:
        """What the teacher encodes (after the run's prefix): rows with the same one get the same vector."""
        return self.text if self.target_text is None else self.target_text

    @property
    def documents(self) -> tuple[str, ...]:
        """The texts this row adds to the IDF table: its text, and its target as a document of its own."""
        return (self.text,) if self.target_text is None else (self.text, self.target_text)


@dataclass(frozen=True)
class Rejection:
    file: str
    row: int  # 1-based line number (txt, jsonl) or data record number (csv, tsv, parquet)
    id: str | None
    reason: str  # empty | invalid_utf8 | invalid_json | malformed_record | missing_field | bad_type | duplicate_id
    detail: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _has_surrogates(text: str) -> bool:
    """Lone surrogates: undecodable bytes (surrogateescape) or bad JSON escapes."""
    return _SURROGATE.search(text) is not None


def _check_text(spec: InputSpec, row: int, row_id: str, text: Any) -> Record | Rejection:
    if text is None:
        return Rejection(spec.path.name, row, row_id, "missing_field", f"no '{spec.text_field}' value")
    if not isinstance(text, str):
        return Rejection(spec.path.name, row, row_id, "bad_type", f"'{spec.text_field}' is {type(text).__name__}, not a string")
    if not text.strip():
        return Rejection(spec.path.name, row, row_id, "empty", "empty or whitespace-only text")
    if _has_surrogates(text):
        return Rejection(spec.path.name, row, row_id, "invalid_utf8", "text contains bytes that are not UTF-8")
    return Record(row_id, text, spec.path.name)


def _iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """Lines split on LF only (CRLF accepted); a UTF-8 BOM at the start is dropped."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw[:-1] if raw.endswith(b"\n") else raw
            if line.endswith(b"\r"):
                line = line[:-1]
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            yield number, line


def _read_txt(spec: InputSpec) -> Iterator[Record | Rejection]:
    for number, line in _iter_lines(spec.path):
        row_id = spec.row_id(number)
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Rejection(spec.path.name, number, row_id, "invalid_utf8", f"byte {exc.start}: {exc.reason}")
            continue
        yield _check_text(spec, number, row_id, text)


def _id_of(spec: InputSpec, row: int, value: Any) -> str | None:
    if spec.id_field == LINE_IDS:
        return spec.row_id(row)
    if value is None or isinstance(value, (dict, list)) or value == "":
        return None
    return str(value)


def _read_jsonl(spec: InputSpec) -> Iterator[Record | Rejection]:
    for number, line in _iter_lines(spec.path):
        if not line.strip():
            yield Rejection(spec.path.name, number, None, "empty", "empty line")
            continue
        try:
            obj = json.loads(line.decode("utf-8"))
        except UnicodeDecodeError as exc:
            yield Rejection(spec.path.name, number, None, "invalid_utf8", f"byte {exc.start}: {exc.reason}")
            continue
        except json.JSONDecodeError as exc:
            yield Rejection(spec.path.name, number, None, "invalid_json", str(exc))
            continue
        if not isinstance(obj, dict):
            yield Rejection(spec.path.name, number, None, "invalid_json", f"expected an object, got {type(obj).__name__}")
            continue
        yield _check_row(spec, number, obj.get(spec.id_field), obj.get(spec.text_field), _target(spec, obj))


def _check_row(spec: InputSpec, row: int, raw_id: Any, text: Any, target: Any = None) -> Record | Rejection:
    row_id = _id_of(spec, row, raw_id)
    if row_id is None:
        return Rejection(spec.path.name, row, None, "missing_field", f"no usable '{spec.id_field}' value")
    checked = _check_text(spec, row, row_id, text)
    if isinstance(checked, Rejection) or target is None or (isinstance(target, str) and not target.strip()):
        return checked
    if not isinstance(target, str):
        return Rejection(spec.path.name, row, row_id, "bad_type", f"'{spec.target_field}' is {type(target).__name__}, not a string")
    if _has_surrogates(target):
        return Rejection(spec.path.name, row, row_id, "invalid_utf8", f"'{spec.target_field}' contains bytes that are not UTF-8")
    return Record(checked.id, checked.text, checked.file, target)


def _target(spec: InputSpec, row: dict[str, Any]) -> Any:
    return row.get(spec.target_field) if spec.target_field is not None else None


def _columns(spec: InputSpec) -> list[str]:
    return ([spec.text_field] + ([spec.id_field] if spec.id_field != LINE_IDS else [])
            + ([spec.target_field] if spec.target_field is not None else []))


def _require_columns(spec: InputSpec, columns: list[str]) -> None:
    wanted = _columns(spec)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise InputError(
            f"{spec.path}: no column {missing} (columns: {columns}); "
            "choose others with --text-field/--id-field/--target-field, or --id-field '' for row-number ids"
        )


def _lines(first: int, last: int) -> str:
    return f"line {last}" if first == last else f"lines {first}-{last}"


def _field_count(fields: list[str], header: list[str]) -> str:
    return f"{len(fields)} field{'' if len(fields) == 1 else 's'}, the header has {len(header)}"


def _csv_records(reader: Any) -> Iterator[tuple[int, int, list[str] | csv.Error]]:
    """(first line, last line, fields or the parse error) per record; blank lines are skipped.

    After a csv.Error the reader resumes at the next physical line, so one bad record
    costs one rejection instead of the rest of the file.
    """
    while True:
        first = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield first, reader.line_num, exc
            continue
        if fields:
            yield first, reader.line_num, fields


def _read_csv(spec: InputSpec) -> Iterator[Record | Rejection]:
    # surrogateescape keeps undecodable bytes visible per row instead of failing the whole file
    with open(spec.path, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        # .tsv: tab-separated with no quoting, so a quote character inside a text stays text;
        # .csv: strict, so a stray quote is an error instead of silently merging records
        reader = (csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if spec.format == "tsv"
                  else csv.reader(f, strict=True))
        records = _csv_records(reader)
        first, last, header = next(records, (1, 1, []))
        if isinstance(header, csv.Error):
            raise InputError(f"{spec.path}: unreadable header ({_lines(first, last)}): {header}")
        _require_columns(spec, header)
        for number, (first, last, fields) in enumerate(records, start=1):
            if isinstance(fields, csv.Error) or len(fields) != len(header):
                problem = fields if isinstance(fields, csv.Error) else _field_count(fields, header)
                yield Rejection(spec.path.name, number, None, "malformed_record", f"{_lines(first, last)}: {problem}")
            else:
                row = dict(zip(header, fields))
                yield _check_row(spec, number, row.get(spec.id_field), row.get(spec.text_field), _target(spec, row))


def _not_parquet(spec: InputSpec, exc: Exception) -> InputError:
    return InputError(f"{spec.path}: not a readable Parquet file: {exc}")


def _parquet_batches(spec: InputSpec) -> Iterator[pa.RecordBatch]:
    """The file's batches; a corrupt file (pyarrow raises ArrowException or OSError) is an InputError naming it."""
    try:
        parquet = pq.ParquetFile(spec.path)
    except (pa.ArrowException, OSError) as exc:
        raise _not_parquet(spec, exc) from exc
    _require_columns(spec, parquet.schema_arrow.names)
    try:
        yield from parquet.iter_batches(columns=_columns(spec), batch_size=65536)
    except (pa.ArrowException, OSError) as exc:
        raise _not_parquet(spec, exc) from exc


def _read_parquet(spec: InputSpec) -> Iterator[Record | Rejection]:
    number = 0
    for batch in _parquet_batches(spec):
        texts = batch.column(spec.text_field).to_pylist()
        ids = batch.column(spec.id_field).to_pylist() if spec.id_field != LINE_IDS else [None] * len(texts)
        targets = batch.column(spec.target_field).to_pylist() if spec.target_field is not None else [None] * len(texts)
        for raw_id, text, target in zip(ids, texts, targets):
            number += 1
            yield _check_row(spec, number, raw_id, text, target)


_READERS = {"txt": _read_txt, "jsonl": _read_jsonl, "csv": _read_csv, "tsv": _read_csv, "parquet": _read_parquet}


def iter_input(spec: InputSpec) -> Iterator[Record | Rejection]:
    spec.check()
    yield from _READERS[spec.format](spec)


def iter_corpus(specs: list[InputSpec], keep_first_duplicate: bool = False) -> Iterator[Record | Rejection]:
    """All inputs in order, ids checked for uniqueness across files."""
    seen: dict[str, str] = {}
    for spec in specs:
        for number, item in enumerate(iter_input(spec), start=1):
            if isinstance(item, Record):
                where = f"{spec.path.name} row {number}"
                first = seen.get(item.id)
                if first is None:
                    seen[item.id] = where
                else:
                    if not keep_first_duplicate:
                        raise InputError(
                            f"duplicate id {item.id!r}: {where} repeats {first}; "
                            "make ids unique or pass --on-duplicate-id keep-first"
                        )
                    item = Rejection(spec.path.name, number, item.id, "duplicate_id", f"id first seen at {first}")
            yield item
