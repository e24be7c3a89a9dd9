"""Word document frequencies over a corpus and the IDF rule idf(w) = ln((1+N)/(1+df(w))) + 1."""

import hashlib
import math
from collections import Counter
from collections.abc import Iterable
from itertools import chain, repeat
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distilcache.cache_format.errors import DataFileError
from distilcache.weighting.segment import pieces, segment, segment_piece

FORMULA = "ln((1+N)/(1+df))+1"
_N_KEY = b"distilcache.num_documents"
_MEMO_LIMIT = 1 << 20  # distinct jieba pieces remembered by char_idf before the memo starts over


def idf_value(df: int, num_documents: int) -> float:
    return math.log((1 + num_documents) / (1 + df)) + 1.0


@dataclass
class IdfTable:
    """Document frequencies of words over `num_documents` texts."""

    num_documents: int = 0
    df: Counter = field(default_factory=Counter)
    _idf: dict[str, float] = field(default_factory=dict, init=False, repr=False)
    _piece_idf: dict[str, tuple[float, ...]] = field(default_factory=dict, init=False, repr=False)

    def add_document(self, text: str) -> None:
        self.num_documents += 1
        self.df.update(set(segment(text)))
        self._idf.clear()
        self._piece_idf.clear()

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> "IdfTable":
        table = cls()
        for text in texts:
            table.add_document(text)
        return table

    @classmethod
    def merge(cls, tables: Iterable["IdfTable"]) -> "IdfTable":
        """Document frequencies of disjoint document sets add up: the merge equals one pass over all."""
        merged = cls()
        for table in tables:
            merged.add_table(table)
        return merged

    def add_table(self, other: "IdfTable") -> None:
        """Count other's documents too (a set disjoint from this table's)."""
        self.num_documents += other.num_documents
        self.df.update(other.df)
        self._idf.clear()
        self._piece_idf.clear()

    @property
    def unknown_idf(self) -> float:
        """The idf of a word the table has never seen (df = 0)."""
        return idf_value(0, self.num_documents)

    def idf(self, word: str) -> float:
        return self._idf_values().get(word, self.unknown_idf)

    def _idf_values(self) -> dict[str, float]:
        if not self._idf:
            self._idf = {w: idf_value(n, self.num_documents) for w, n in self.df.items()}
        return self._idf

    def char_idf(self, text: str) -> list[float]:
        """One value per character of `text`: idf(w) / len(w) for the jieba word w it belongs to.
        Memoised per jieba piece (about a word in English), the unit jieba cuts on its own."""
        values: list[float] = []
        for piece in pieces(text):
            piece_values = self._piece_idf.get(piece)
            if piece_values is None:
                idf, unknown = self._idf_values(), self.unknown_idf
                piece_values = tuple(chain.from_iterable(repeat(idf.get(word, unknown) / len(word), len(word))
                                                         for word in segment_piece(piece)))
                if len(piece_values) != len(piece):
                    raise ValueError(f"segmentation does not cover the piece {piece!r} of {text[:80]!r}")
                if len(self._piece_idf) >= _MEMO_LIMIT:
                    self._piece_idf.clear()
                self._piece_idf[piece] = piece_values
            values.extend(piece_values)
        return values

    def content_sha256(self) -> str:
        """A hash of N and the (word, df) pairs, independent of file encoding or library versions."""
        digest = hashlib.sha256(f"N={self.num_documents}\n".encode())
        for word in sorted(self.df):
            digest.update(f"{word}\t{self.df[word]}\n".encode("utf-8", "surrogatepass"))
        return digest.hexdigest()

    def to_arrow(self) -> pa.Table:
        words = sorted(self.df)
        dfs = [self.df[w] for w in words]
        table = pa.table(
            {"word": pa.array(words, pa.string()), "df": pa.array(dfs, pa.int64()),
             "idf": pa.array([idf_value(n, self.num_documents) for n in dfs], pa.float64())}
        )
        return table.replace_schema_metadata({_N_KEY: str(self.num_documents).encode()})

    @classmethod
    def from_arrow(cls, table: pa.Table, source: str = "table") -> "IdfTable":
        metadata = table.schema.metadata or {}
        if _N_KEY not in metadata:
            raise DataFileError(f"{source}: IDF table lacks the '{_N_KEY.decode()}' schema metadata")
        for column, kind, what in (("word", pa.types.is_string, "strings"), ("df", pa.types.is_integer, "integers")):
            if column not in table.column_names or not kind(table.schema.field(column).type):
                raise DataFileError(f"{source}: IDF table has no '{column}' column of {what}")
        text = metadata[_N_KEY].decode(errors="replace")
        num_documents = int(text) if text.isdigit() else -1
        dfs = table["df"]
        if num_documents < 0 or table["word"].null_count or dfs.null_count or (
                len(dfs) and not 0 <= pc.min(dfs).as_py() <= pc.max(dfs).as_py() <= num_documents):
            raise DataFileError(f"{source}: IDF table is inconsistent (N={text!r}; every word needs a df between 0 and N)")
        return cls(num_documents=num_documents, df=Counter(dict(zip(table["word"].to_pylist(), dfs.to_pylist()))))

    @classmethod
    def load(cls, path: str | Path) -> "IdfTable":
        try:
            table = pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataFileError(f"{path}: not a readable IDF table (Parquet): {exc}") from None
        return cls.from_arrow(table, source=str(path))
