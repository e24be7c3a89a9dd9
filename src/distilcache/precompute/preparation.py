"""The CPU side of the teacher pass: the shards still to do, cut into sort windows (record_windows), each
tokenised, weighted and cut into length-sorted batches (Preparation), in this process or in `--workers`
processes. Every engine prepares the same windows, so they compute the same vectors.

Worker processes, not threads: jieba, the weighting and the tokenizers' Python side hold the GIL. The
main process still reads the inputs (one validating reader decides ids and rejections) and hands each
window to the pool, a few windows ahead, taking them back in order: the windows, and so the shards,
are the same for any number of workers. Workers are spawned, not forked: the parent holds threads and
torch's thread pools, which a fork would copy in an unknown state.
"""

import multiprocessing
import os
from collections import deque
from collections.abc import Container, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from distilcache.inputs import Record, iter_corpus
from distilcache.precompute.augment import augmenter_for
from distilcache.precompute.config import PrecomputeConfig
from distilcache.teacher.config import PoolingConfig
from distilcache.teacher.prepare import Batch, PreparedRow, length_sorted_batches, prepare_rows
from distilcache.weighting import IdfTable
from distilcache.weighting.tokens import split_by_lengths

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

    @property
    def computed(self) -> list[int]:
        """The indices into records of the rows the teacher computes."""
        return [i for i, source in enumerate(self.sources) if source == self.start + i]


@dataclass
class PreparedWindow:
    piece: RecordWindow
    rows: list[PreparedRow]
    batches: list[Batch]  # of the computed rows only


def record_windows(config: PrecomputeConfig, plan: dict[str, Any], todo: Container[int]) -> Iterator[RecordWindow]:
    """The shards still to do, cut into sort windows."""
    accepted = (item for item in iter_corpus(config.inputs, config.keep_first_duplicate) if isinstance(item, Record))
    augmenter = augmenter_for(config)
    records = accepted if augmenter is None else augmenter.records(accepted)
    for index in range(plan["num_shards"]):
        chunk = list(islice(records, config.shard_size))
        if index not in todo:
            continue
        first: dict[str, int] = {}
        sources = [first.setdefault(record.teacher_text, row) for row, record in enumerate(chunk)]
        for start in range(0, len(chunk), config.sort_window):
            end = start + config.sort_window
            yield RecordWindow(index, start, chunk[start:end], sources[start:end], end >= len(chunk))


@dataclass
class Preparation:
    """How a window becomes teacher batches; picklable, so a worker process gets its own copy."""

    tokenizer: PreTrainedTokenizerBase
    student_tokenizer: PreTrainedTokenizerBase | None
    idf: IdfTable | None
    pooling: PoolingConfig
    batch_size: int
    token_states: bool = False  # find where each row's tokens sit in the teacher's input

    def rows(self, records: list[Record]) -> list[PreparedRow]:
        return prepare_rows(records, self.tokenizer, self.pooling, self.idf, self.student_tokenizer, self.token_states)

    def batches(self, rows: list[PreparedRow], computed: list[int]) -> list[Batch]:
        return list(length_sorted_batches(rows, self.batch_size, self.tokenizer.pad_token_id or 0, computed))

    def __call__(self, piece: RecordWindow) -> PreparedWindow:
        rows = self.rows(piece.records)
        return PreparedWindow(piece, rows, self.batches(rows, piece.computed))


def prepared_windows(pieces: Iterator[RecordWindow], preparation: Preparation, workers: int) -> Iterator[PreparedWindow]:
    """Each piece prepared, in order: here when workers is 1, else in that many spawned processes."""
    if workers == 1:
        yield from map(preparation, pieces)
        return
    pending: deque = deque()

    def oldest() -> PreparedWindow:
        piece, result = pending.popleft()
        rows, batches = result.get()  # get() re-raises a worker's error
        return PreparedWindow(piece, _unpack(piece, rows), [Batch(members.tolist(), *map(torch.from_numpy, arrays))
                                                             for members, *arrays in batches])

    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(preparation,)) as pool:  # leaving it terminates the pool
        for piece in pieces:
            work = ([r.text for r in piece.records], [r.target_text for r in piece.records], piece.computed)
            pending.append((piece, pool.apply_async(_prepare_in_worker, work)))
            if len(pending) > AHEAD_PER_WORKER * workers:
                yield oldest()
        while pending:
            yield oldest()


_WORKER: dict[str, Preparation] = {}  # a worker process's Preparation, set once when it starts


def _start_worker(preparation: Preparation) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker: the workers are the parallelism
    _WORKER["preparation"] = preparation


def _prepare_in_worker(texts: list[str], targets: list[str | None], computed: list[int]) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """A window's rows and batches as plain arrays. Only the texts cross over (the main process keeps the records and
    their ids), and the batches come back made: both would cost the main process more than preparing them here."""
    preparation = _WORKER["preparation"]
    rows = preparation.rows([Record("", text, "", target) for text, target in zip(texts, targets)])
    batches = [[np.asarray(b.rows), b.input_ids.numpy(), b.attention_mask.numpy(), b.weights.numpy()]
               for b in preparation.batches(rows, computed)]
    return _pack(rows), batches


# A window's rows cross back as a few flat arrays: unpickling thousands of small row objects would cost the main
# process more than preparing them.
_RAGGED = ("input_ids", "token_ids", "weights", "position_weights", "state_positions")


def _pack(rows: list[PreparedRow]) -> list[np.ndarray]:
    packed = [np.array([r.truncated for r in rows], dtype=bool)]
    for name in _RAGGED:
        parts = [np.asarray(getattr(r, name)) for r in rows]
        packed += [np.array([len(p) for p in parts], dtype=np.int64), np.concatenate(parts) if parts else np.zeros(0)]
    return packed


def _unpack(piece: RecordWindow, packed: list[np.ndarray]) -> list[PreparedRow]:
    truncated, ragged = packed[0].tolist(), {}
    for k, name in enumerate(_RAGGED):
        ragged[name] = split_by_lengths(packed[2 + 2 * k], packed[1 + 2 * k])
    return [PreparedRow(r.id, r.text, r.target_text, input_ids=ragged["input_ids"][i], token_ids=ragged["token_ids"][i],
                        weights=ragged["weights"][i], position_weights=ragged["position_weights"][i], truncated=truncated[i],
                        state_positions=ragged["state_positions"][i])
            for i, r in enumerate(piece.records)]
