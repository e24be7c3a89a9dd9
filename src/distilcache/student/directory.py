"""The student directory: what `train` writes and `load_student` reads.

distilcache_student.json   config, pooling rule, teacher and cache provenance, and the sha256 of every file
                           below (written last: a student is complete iff its files match it)
model.safetensors          encoder weights (a transformer also has config.json: AutoModel loads it)
projection.safetensors     the linear map to the teacher's dim, when the encoder's width differs
attention.safetensors      the learned per-token scores, for a student trained with attention pooling
vocabulary.safetensors     the tokenizer id of each embedding row, when the table holds only the cache's pieces
tokenizer files, idf.parquet
student.onnx               only after `distilcache export-onnx`: the forward pass for onnxruntime

`distilcache export --format sentence-transformers` copies the files the JSON names (copy_student).

A student directory may come from someone else. Loading reads only the files its JSON names (plain
names inside the directory, checked against their sha256), runs no code shipped with it, and checks
every declared tensor shape against the safetensors headers before anything is allocated.
"""

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from distilcache import hf_local
from distilcache.cache_format.errors import DistilcacheError
from distilcache.cache_format.hashing import sha256_file, sha256_json
from distilcache.cache_format.layout import TMP_PREFIX
from distilcache.cache_format.manifest import read_json
from distilcache.cache_format.paths import resolve_inside
from distilcache.cache_format.writer import move_into_place, write_json_atomic
from distilcache.student.model import BiLSTMEncoder, StudentConfig, StudentModel, TransformerEncoder
from distilcache.student.vocabulary import VOCABULARY_FILE, load_vocabulary, save_vocabulary

STUDENT_FILE = "distilcache_student.json"
FORMAT = "distilcache-student"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"  # a transformer's Hugging Face config
PROJECTION_FILE = "projection.safetensors"
ATTENTION_FILE = "attention.safetensors"
HEAD_FILES = {"projection": PROJECTION_FILE, "attention": ATTENTION_FILE}  # the layers after the encoder
IDF_FILE = "idf.parquet"
ONNX_FILE = "student.onnx"  # only after `distilcache export-onnx`
# what the ONNX export is made from; the vocabulary maps ids before the graph, in the Python both backends share
WEIGHT_FILES = (WEIGHTS_FILE, CONFIG_FILE, PROJECTION_FILE, ATTENTION_FILE)


class StudentError(DistilcacheError, ValueError):
    """A student directory that cannot be loaded as it is: incomplete, modified or malformed."""


def save_student(directory: Path, model: StudentModel, info: dict[str, Any], tokenizer_files: list[Path],
                 idf_file: Path | None, table_ids: np.ndarray | None = None) -> None:
    """Write the student so that a kill at any moment leaves the previous complete student or a directory
    that load refuses: every file is built in a temp folder, renamed into place, and the JSON that holds
    their sha256 is written last. Of the tokenizer, only the files of a tokenizer are copied."""
    directory.mkdir(parents=True, exist_ok=True)
    staging = directory / f"{TMP_PREFIX}{os.getpid()}-student"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_files(staging, model, tokenizer_files, idf_file)
        if table_ids is not None:
            save_vocabulary(staging / VOCABULARY_FILE, table_ids)
        files = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
        for name in files:
            move_into_place(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    record = {"format": FORMAT, "format_version": 1, "student": model.config.to_dict()} | info | {"files": files}
    write_json_atomic(record, directory / STUDENT_FILE)


def _write_files(staging: Path, model: StudentModel, tokenizer_files: list[Path], idf_file: Path | None) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if isinstance(model.encoder, TransformerEncoder):
        hf_local.save_model(model.encoder.model, staging)
    else:
        save_file({k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}, str(staging / WEIGHTS_FILE))
    for head, file in HEAD_FILES.items():
        weights = {k.removeprefix(f"{head}."): v for k, v in state.items() if k.startswith(f"{head}.")}
        if weights:
            save_file(weights, str(staging / file))
    for path in tokenizer_files:
        if path.name in hf_local.TOKENIZER_FILES:
            shutil.copyfile(path, staging / path.name)
    if idf_file is not None:
        shutil.copyfile(idf_file, staging / IDF_FILE)


def read_student_info(directory: Path) -> dict[str, Any]:
    """The student's JSON, with every file it names checked to be inside the directory and unchanged."""
    path = directory / STUDENT_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {directory} is not a distilcache student directory")
    info = read_json(path, error=StudentError)
    if info.get("format") != FORMAT:
        raise StudentError(f"{path}: not a distilcache student (format={info.get('format')!r})")
    files = info.get("files")  # absent in students saved before the checksums
    if files is not None:
        if not isinstance(files, dict):
            raise StudentError(f"{path}: 'files' must map file names to sha256")
        for name, sha256 in files.items():
            file = student_file(directory, name)
            if not file.is_file():
                raise StudentError(f"{file}: missing (the student is incomplete: a training run killed while saving?)")
            if sha256_file(file) != sha256:
                raise StudentError(f"{file}: its sha256 differs from {STUDENT_FILE}'s: the student was half-written "
                                   "(a killed training run: rerun it with --resume) or modified since")
    hf_local.check_no_shipped_code(directory)
    return info


def copy_student(source: Path, info: dict[str, Any], target: Path) -> None:
    """The files the student is made of (not its checkpoint, log or exports) into target, its JSON last."""
    names = info.get("files") or [name for name in (*WEIGHT_FILES, IDF_FILE, VOCABULARY_FILE, *sorted(hf_local.TOKENIZER_FILES))
                                   if (source / name).is_file()]  # a student saved before the checksums
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(student_file(source, name), target / name)
    shutil.copyfile(source / STUDENT_FILE, target / STUDENT_FILE)


def student_file(directory: Path, name: object) -> Path:
    """A file named by the student's JSON: a plain name inside the directory."""
    if isinstance(name, str) and "/" in name:
        raise StudentError(f"{directory / STUDENT_FILE}: files: {name!r} is not a plain file name")
    return resolve_inside(directory, name, f"{directory / STUDENT_FILE}: files", error=StudentError)


def weights_digest(directory: Path, info: dict[str, Any]) -> str:
    """A hash of the files the forward pass is made of: an ONNX export records it, so a stale export is
    recognised after training goes on."""
    files = info.get("files") or {name: sha256_file(directory / name) for name in WEIGHT_FILES if (directory / name).is_file()}
    return sha256_json({name: sha256 for name, sha256 in files.items() if name in WEIGHT_FILES})


def _student_config(info: dict[str, Any], path: Path) -> StudentConfig:
    try:
        return StudentConfig.from_dict(info["student"])
    except (KeyError, TypeError, ValueError) as exc:
        raise StudentError(f"{path}: 'student' is not a valid student configuration ({exc})") from None


def _header_shapes(file: Path, prefix: str) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors header, without reading the tensors."""
    try:
        with safe_open(str(file), framework="pt") as f:
            return {prefix + key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise StudentError(f"{file}: not a readable safetensors file ({exc})") from None


# the legacy LayerNorm names save_pretrained gives a checkpoint's LayerNorm in some transformers releases (5.3),
# which from_pretrained reads as today's
_LEGACY_NORM_NAMES = {".LayerNorm.gamma": ".LayerNorm.weight", ".LayerNorm.beta": ".LayerNorm.bias"}


def _current_name(key: str) -> str:
    for legacy, current in _LEGACY_NORM_NAMES.items():
        if key.endswith(legacy):
            return key.removesuffix(legacy) + current
    return key


def _check_shapes(model: StudentModel, directory: Path) -> None:
    """model (on the meta device: nothing allocated) against the shapes the files hold: a JSON or config
    that declares other sizes than its weights is refused before the real model is built."""
    stored: dict[str, tuple[int, ...]] = {}
    if isinstance(model.encoder, TransformerEncoder):
        stored |= {_current_name(k): v for k, v in _header_shapes(directory / WEIGHTS_FILE, "encoder.model.").items()}
    else:
        stored |= _header_shapes(directory / WEIGHTS_FILE, "encoder.")
    for head, file in HEAD_FILES.items():
        if (directory / file).is_file():
            stored |= _header_shapes(directory / file, f"{head}.")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    for key, shape in expected.items():
        if stored.get(key) != shape:
            found = f"holds {stored[key]}" if key in stored else "lacks it"
            raise StudentError(f"{directory}: the configuration declares {key} of shape {shape}, the weights file {found}")


def load_student_model(directory: Path) -> tuple[dict[str, Any], StudentModel]:
    info = read_student_info(directory)
    config = _student_config(info, directory / STUDENT_FILE)
    with torch.device("meta"):  # sizes come from untrusted JSON: check them against the files first
        if config.kind == "transformer":
            encoder = TransformerEncoder.from_config(hf_local.load_config(directory))
        else:
            encoder = BiLSTMEncoder(config)
        _check_shapes(StudentModel(config, encoder), directory)
    if config.kind == "transformer":
        encoder = TransformerEncoder.load(directory)
    else:
        encoder = BiLSTMEncoder(config)
        encoder.load_state_dict(load_file(str(directory / WEIGHTS_FILE)))
    model = StudentModel(config, encoder)
    for head, file in HEAD_FILES.items():
        if getattr(model, head) is not None:
            getattr(model, head).load_state_dict(load_file(str(directory / file)))
    return info, model.eval()


def read_table_ids(directory: Path, config: StudentConfig, tokenizer_size: int) -> np.ndarray | None:
    """The tokenizer id of each embedding row, checked; None when the table holds the whole tokenizer."""
    path = directory / VOCABULARY_FILE
    if not path.is_file():
        if config.vocab_size < tokenizer_size:
            raise StudentError(f"{directory}: an embedding table of {config.vocab_size} rows for a tokenizer of "
                               f"{tokenizer_size} tokens, and no {VOCABULARY_FILE} to map them")
        return None
    return load_vocabulary(path, config.vocab_size, tokenizer_size, StudentError)
