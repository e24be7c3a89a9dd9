"""The CPU side of the teacher pass: the shards still to do, cut into sort windows (record_windows), each
tokenised, weighted and cut into length-sorted batches (Preparation), in this process or in a WorkerGroup's
processes. Every engine prepares the same windows, so they compute the same vectors.

The main process still reads the inputs (one validating reader decides ids and rejections) and hands each
window to a worker, a few windows ahead, taking them back in order: the windows, and so the shards, are the
same for any number of workers.
"""

from collections import deque
from collections.abc import Container, Iterator
from dataclasses import dataclass, replace
from itertools import islice
from typing import Any

from tokenizers import Tokenizer

from distilcache.inputs import Record, iter_corpus
from distilcache.precompute.augment import augmenter_for
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.workers import WorkerGroup
from distilcache.teacher.config import PoolingConfig
from distilcache.teacher.prepare import Batch, PreparedRows, length_sorted_batches, prepare_rows
from distilcache.weighting import IdfTable

AHEAD_PER_WORKER = 2  # windows handed out per worker before the first comes back: the pool stays busy, memory bounded


@dataclass
class RecordWindow:
    """A piece of a shard that is prepared and length-sorted together. Repeated teacher inputs reach the
    teacher once per shard: sources[i] is the shard row whose vector record i takes (start + i when it is
    computed here). The shard, the unit every engine, partition and resume shares, is the scope, so a
    cache is byte-identical however it was run."""

    shard: int
    start: int  # the shard row of records[0]
    records: list[Record]
    sources: list[int]
    last: bool  # the shard's final piece
    key: int  # the window's number over all shards (window_key), which names the worker that prepares it

    @property
    def computed(self) -> list[int]:
        """The indices into records of the rows the teacher computes."""
        return [i for i, source in enumerate(self.sources) if source == self.start + i]


@dataclass
class PreparedWindow:
    piece: RecordWindow
    rows: PreparedRows
    batches: list[Batch]  # of the computed rows only


def record_windows(config: PrecomputeConfig, plan: dict[str, Any], todo: Container[int]) -> Iterator[RecordWindow]:
    """The shards still to do, cut into sort windows."""
    accepted = (item for item in iter_corpus(config.inputs, config.keep_first_duplicate) if isinstance(item, Record))
    augmenter = augmenter_for(config)
    records = accepted if augmenter is None else augmenter.records(accepted)
    for index in range(plan["num_shards"]):
        # the planned rows only: rows the input gained since are not computed (the run then refuses the changed input)
        chunk = list(islice(records, expected_rows(plan, index)))
        if index not in todo:
            continue
        first: dict[str, int] = {}
        sources = [first.setdefault(record.teacher_text, row) for row, record in enumerate(chunk)]
        for start in range(0, len(chunk), config.sort_window):
            end = start + config.sort_window
            yield RecordWindow(index, start, chunk[start:end], sources[start:end], end >= len(chunk),
                               window_key(index * config.shard_size + start, config))


def expected_rows(plan: dict[str, Any], index: int) -> int:
    """The rows of shard `index` in the plan."""
    return min(plan["shard_size"], plan["total_rows"] - index * plan["shard_size"])


def window_key(position: int, config: PrecomputeConfig) -> int:
    """The number of the sort window the row at `position` (over all shards) falls in."""
    per_shard = -(-config.shard_size // config.sort_window)
    return position // config.shard_size * per_shard + position % config.shard_size // config.sort_window


@dataclass
class Preparation:
    """How a window becomes teacher batches; picklable, so a worker process gets its own copy. The tokenizers are
    the Rust ones the Hugging Face tokenizers wrap: a worker needs nothing of transformers (nor of torch)."""

    tokenizer: Tokenizer
    pad_id: int
    student_tokenizer: Tokenizer | None
    idf: IdfTable | None
    pooling: PoolingConfig
    batch_size: int
    token_states: bool = False  # find where each row's tokens sit in the teacher's input

    def rows(self, records: list[Record]) -> PreparedRows:
        return prepare_rows(records, self.tokenizer, self.pooling, self.idf, self.student_tokenizer, self.token_states)

    def batches(self, rows: PreparedRows, computed: list[int]) -> list[Batch]:
        return list(length_sorted_batches(rows, self.batch_size, self.pad_id, computed))

    def __call__(self, piece: RecordWindow) -> PreparedWindow:
        rows = self.rows(piece.records)
        return PreparedWindow(piece, rows, self.batches(rows, piece.computed))


def prepared_windows(pieces: Iterator[RecordWindow], preparation: Preparation, group: WorkerGroup | None) -> Iterator[PreparedWindow]:
    """Each piece prepared, in order: here without a group, else in its processes."""
    if group is None:
        yield from map(preparation, pieces)
        return
    group.everywhere(_install, preparation)
    waiting: deque[RecordWindow] = deque()
    for piece in pieces:
        group.submit(piece.key, _prepare_in_worker, [r.text for r in piece.records], [r.target_text for r in piece.records],
                     piece.computed)
        waiting.append(piece)
        if len(waiting) > AHEAD_PER_WORKER * group.size:
            yield _taken_back(waiting.popleft(), group)
    while waiting:
        yield _taken_back(waiting.popleft(), group)


def _taken_back(piece: RecordWindow, group: WorkerGroup) -> PreparedWindow:
    rows, batches = group.oldest()
    return PreparedWindow(piece, replace(rows, records=piece.records), batches)


_WORKER: dict[str, Preparation] = {}  # a worker process's Preparation, installed before its first window


def _install(preparation: Preparation) -> None:
    _WORKER["preparation"] = preparation


def _prepare_in_worker(texts: list[str], targets: list[str | None], computed: list[int]) -> tuple[PreparedRows, list[Batch]]:
    """A window's rows (without their records: the main process keeps those) and batches, as a few arrays each.
    Only the texts cross over, and the batches come back made."""
    preparation = _WORKER["preparation"]
    rows = preparation.rows([Record("", text, "", target) for text, target in zip(texts, targets)])
    return replace(rows, records=[]), preparation.batches(rows, computed)
