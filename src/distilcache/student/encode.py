"""A trained student as a product: `load_student(dir).encode(texts) -> np.ndarray`.

A student directory (see student/directory.py) holds everything encode needs: weights, tokenizer
and the IDF table, applied with the same rule precompute used. With `distilcache export-onnx`, it
also holds student.onnx, and `load_student(dir, backend="onnx")` runs the forward pass in
onnxruntime instead of torch; backend="torch-int8" quantises it to int8 on load (tokenisation and
weighting are the same Python code whatever the backend).
"""

import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import nn
from tqdm.auto import tqdm

from distilcache import hf_local
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.writer import write_parquet_atomic, write_text_atomic
from distilcache.inputs import InputSpec, Record, Rejection, iter_corpus
from distilcache.student.backends import BACKENDS, default_backend
from distilcache.student.directory import (
    IDF_FILE,
    ONNX_FILE,
    StudentError,
    load_student_model,
    read_table_ids,
    student_file,
    weights_digest,
)
from distilcache.student.model import PaddedBatch, StudentModel, pad_rows
from distilcache.student.vocabulary import PieceReader, TableRows
from distilcache.weighting import IdfTable, weighted_batch

log = logging.getLogger(__name__)

ENCODE_WINDOW = 8192  # texts tokenised and length-sorted together
ONNX_WEIGHTS_KEY = "distilcache.weights_sha256"  # in student.onnx's metadata: the weights it was exported from


class Student:
    """A loaded student: encode texts exactly as precompute weighted them, without any teacher."""

    def __init__(self, directory: Path, info: dict[str, Any], model: StudentModel, tokenizer: Any, idf: IdfTable | None,
                 onnx_session: Any = None, backend: str = "torch", reader: PieceReader | None = None):
        self.directory = directory
        self.reader = reader  # tokenizer ids -> embedding rows, when the table holds only the cache's pieces
        self.backend = backend  # one of BACKENDS but auto: what runs the forward pass
        self.info = info
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.idf = idf
        self.onnx_session = onnx_session  # an onnxruntime InferenceSession, or None: torch runs the forward pass
        self.device = next(model.parameters()).device

    @property
    def dim(self) -> int:
        return self.model.config.output_dim

    def to(self, device: str | torch.device) -> "Student":
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int = 256,
        show_progress_bar: bool | None = None,
        normalize_embeddings: bool = False,
        dim: int | None = None,
    ) -> np.ndarray:
        """Vectors (len(texts), dim) as float32; a single string gives one (dim,) vector.
        Empty or all-unknown texts still get finite vectors. dim keeps the first dim dimensions (before
        normalize_embeddings): what a student trained with --matryoshka-dims is trained for."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        width = self._width(dim)
        single = isinstance(texts, str)
        texts = [texts] if single else _text_list(texts)
        out = np.zeros((len(texts), width), dtype=np.float32)
        show = len(texts) > batch_size if show_progress_bar is None else show_progress_bar
        with tqdm(total=len(texts), disable=not show, desc="encode", unit=" sent") as bar, torch.inference_mode():
            for start in range(0, len(texts), ENCODE_WINDOW):
                table = self.weighted(texts[start : start + ENCODE_WINDOW])
                order = np.argsort(table.counts, kind="stable")
                for b in range(0, len(order), batch_size):
                    members = order[b : b + batch_size]
                    batch = pad_rows(table.rows, table.weights, table.starts[members], table.counts[members],
                                     self.model.config.pad_id)
                    vectors = self._forward(batch)[:, :width]
                    if normalize_embeddings:
                        vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
                    out[start + members] = vectors
                    bar.update(len(members))
        return out[0] if single else out

    @property
    def matryoshka_dims(self) -> list[int]:
        """The prefix dimensions it was trained for (train --matryoshka-dims), besides the full dim."""
        return list(self.info.get("training", {}).get("matryoshka_dims") or [])

    def _width(self, dim: int | None) -> int:
        if dim is None:
            return self.dim
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= self.dim:
            raise ConfigError(f"dim must be an integer from 1 to the student's {self.dim}, got {dim!r}")
        if dim != self.dim and dim not in self.matryoshka_dims:
            trained = ", ".join(map(str, self.matryoshka_dims)) or "none: trained without --matryoshka-dims"
            log.warning("%s was not trained for %d dimensions (its Matryoshka dims: %s); the vectors may lose more than a "
                        "trained prefix would", self.directory, dim, trained)
        return dim

    def weighted(self, texts: list[str]) -> TableRows:
        """The texts' tokens weighted as precompute weighted them, as rows of the embedding table."""
        pooling = self.info["pooling"]
        tokens = weighted_batch(texts, self.tokenizer, pooling["max_length"], self.idf, pooling["smoothing"])
        if self.reader is None:
            return TableRows(tokens.token_ids.astype(np.int64), tokens.weights, tokens.counts)
        return self.reader.read(tokens.token_ids, tokens.weights, tokens.counts, limit=self.content_length)

    @property
    def content_length(self) -> int:
        """The most pieces of a text the student reads: precompute's max_length less the tokenizer's special tokens."""
        return self.info["pooling"]["max_length"] - self.tokenizer.num_special_tokens_to_add(pair=False)

    def padded(self, texts: list[str]) -> PaddedBatch:
        """One padded batch of the texts, in their order (what the forward pass reads)."""
        table = self.weighted(texts)
        return pad_rows(table.rows, table.weights, table.starts, table.counts, self.model.config.pad_id)

    def _forward(self, batch: PaddedBatch) -> np.ndarray:
        if self.onnx_session is not None:
            inputs = {"token_ids": batch.token_ids.numpy(), "lengths": batch.lengths.numpy(), "weights": batch.weights.numpy()}
            return self.onnx_session.run(None, inputs)[0]
        batch = batch.to(self.device)
        return self.model(batch.token_ids, batch.lengths, batch.weights).float().cpu().numpy()

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix (len(a), len(b))."""
        a, b = np.atleast_2d(a).astype(np.float32), np.atleast_2d(b).astype(np.float32)
        a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return a @ b.T


def _text_list(texts: Any) -> list[str]:
    if isinstance(texts, (bytes, dict)) or not isinstance(texts, Iterable):
        raise TypeError(f"encode expects a string or a sequence of strings, got {type(texts).__name__}")
    texts = list(texts)
    wrong = next((i for i, text in enumerate(texts) if not isinstance(text, str)), None)
    if wrong is not None:
        raise TypeError(f"encode expects strings: texts[{wrong}] is {type(texts[wrong]).__name__} ({texts[wrong]!r:.40})")
    return texts


def quantized_int8(model: StudentModel) -> StudentModel:
    """Dynamic int8 quantisation of the LSTM and linear layers, for CPU inference: faster for a small
    change in the vectors (benchmarks/student_speed.py measures both)."""
    with warnings.catch_warnings():  # torch.ao's dynamic quantisation is deprecated in favour of torchao, still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.LSTM, nn.Linear}, dtype=torch.qint8)


def load_student(directory: str | Path, device: str | torch.device = "cpu", backend: str = "auto") -> Student:
    """Load a student directory written by `distilcache train`; needs nothing outside it.
    backend="onnx" runs the student.onnx that `distilcache export-onnx` wrote, on the CPU;
    backend="torch-int8" quantises the LSTM and linear layers to int8 on load (CPU);
    backend="auto" (default) is torch-int8 for a fast-preset student on the CPU, else torch."""
    directory = Path(directory)
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    info, model = load_student_model(directory)
    if backend == "auto":
        backend = default_backend(info, device)
    tokenizer = hf_local.load_tokenizer(directory)
    idf = IdfTable.load(student_file(directory, IDF_FILE)) if info["pooling"]["mode"] == "idf" else None
    reader = _reader(directory, model, tokenizer)
    if backend == "torch":
        return Student(directory, info, model, tokenizer, idf, reader=reader).to(device)
    if backend == "torch-int8":
        return Student(directory, info, quantized_int8(model), tokenizer, idf, backend=backend, reader=reader)
    if not (directory / ONNX_FILE).is_file():
        raise FileNotFoundError(f"{directory / ONNX_FILE} not found: run `distilcache export-onnx {directory}` first")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(student_file(directory, ONNX_FILE)), providers=["CPUExecutionProvider"])
    exported_from = session.get_modelmeta().custom_metadata_map.get(ONNX_WEIGHTS_KEY)
    if exported_from != weights_digest(directory, info):
        raise StudentError(f"{directory / ONNX_FILE} was exported from other weights than the student's "
                           f"({'not recorded: an older export' if exported_from is None else 'training went on since'}): "
                           f"run `distilcache export-onnx {directory}` again")
    return Student(directory, info, model, tokenizer, idf, onnx_session=session, backend=backend, reader=reader)


def _reader(directory: Path, model: StudentModel, tokenizer: Any) -> PieceReader | None:
    """How a table of the cache's pieces reads tokenizer ids; None for a table of the whole tokenizer."""
    table_ids = read_table_ids(directory, model.config, len(tokenizer))
    return None if table_ids is None else PieceReader(table_ids, tokenizer, model.config.pad_id)


def encode_files(student: Student, inputs: list[InputSpec], output: Path, batch_size: int = 256,
                 normalize: bool = False, dim: int | None = None) -> tuple[int, list[Rejection]]:
    """Encode every row the inputs hold into a Parquet file (id, text, vector), written atomically; rows the
    reader rejects are listed in <output stem>.rejected.jsonl. Returns the vectors written and the rejections."""
    records, rejections = [], []
    for item in iter_corpus(inputs):
        (records if isinstance(item, Record) else rejections).append(item)
    vectors = student.encode([r.text for r in records], batch_size=batch_size, normalize_embeddings=normalize,
                             show_progress_bar=True, dim=dim)
    table = pa.table({
        "id": pa.array([r.id for r in records], pa.string()),
        "text": pa.array([r.text for r in records], pa.string()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1]),
    })
    write_parquet_atomic(table, output)
    if rejections:
        write_text_atomic("".join(r.to_json() + "\n" for r in rejections), rejections_file(output))
    return len(records), rejections


def rejections_file(output: Path) -> Path:
    return output.with_name(output.stem + ".rejected.jsonl")
