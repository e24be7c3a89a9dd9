"""`distilcache export --format sentence-transformers`: a student as a directory that
`SentenceTransformer(dir)` loads and encodes with the student's own vectors.

Two layouts:
- plain: sentence-transformers' own modules (Transformer, mean Pooling, a Dense for the projection),
  loadable where distilcache is not installed. Only a transformer student that pools with uniform
  weights, no learned attention and no special tokens (train --no-special-tokens) fits: its tokens are
  the text's pieces without special tokens (the tokenizer is called with add_special_tokens=False), and
  a table of the cache's pieces is spread back over the whole tokenizer (a piece the table lacks gets
  the mean of the rows that spell it: encode reads those rows one after another, one position can
  only average them, so such a piece's text reads close to, not exactly as, encode reads it).
- distilcache: one DistilcacheStudent module (student/st_module.py) over a copy of the student
  directory; any student, loaded with `trust_remote_code=True` (that imports the installed class).
"""

import copy
import logging
import os
import tempfile
from pathlib import Path

from torch import nn

from distilcache import hf_local
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.layout import TMP_PREFIX
from distilcache.student.backends import EXPORT_MODULES
from distilcache.student.encode import Student, load_student

log = logging.getLogger(__name__)

def export_sentence_transformers(student_dir: Path, output: Path, modules: str = "auto") -> str:
    """Write the student as a sentence-transformers directory at output (new or empty); returns the layout."""
    if modules not in EXPORT_MODULES:
        raise ConfigError(f"modules must be one of {EXPORT_MODULES}, got {modules!r}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ConfigError(f"{output}: exists and is not an empty directory; choose a new --output")
    student = load_student(student_dir, backend="torch")
    reason = not_plain_reason(student)
    if modules == "auto":
        modules = "distilcache" if reason else "plain"
    elif modules == "plain" and reason:
        raise ConfigError(f"{student_dir}: no plain sentence-transformers layout: {reason}; use --modules distilcache")
    from sentence_transformers import SentenceTransformer

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{TMP_PREFIX}{os.getpid()}-", dir=output.parent) as work:
        if modules == "plain":
            model = SentenceTransformer(modules=_plain_modules(student, Path(work) / "transformer"), device="cpu")
        else:
            from distilcache.student.st_module import DistilcacheStudent

            model = SentenceTransformer(modules=[DistilcacheStudent(student_dir)], device="cpu")
        staging = Path(work) / "export"
        model.save(str(staging))
        if output.exists():
            output.rmdir()  # empty, checked above
        os.replace(staging, output)
    log.info("%s: %s as a sentence-transformers directory (%s modules)", output, student_dir, modules)
    return modules


def not_plain_reason(student: Student) -> str | None:
    """Why sentence-transformers' own modules cannot reproduce this student; None when they can."""
    if student.model.config.kind != "transformer":
        return "a BiLSTM student has no sentence-transformers module"
    if student.idf is not None:
        return "it pools with IDF weights"
    if student.model.attention is not None:
        return "it pools with learned attention"
    if student.model.config.brackets:  # sentence-transformers' mean pooling would average [CLS] and [SEP] in
        return "it reads special tokens that weigh 0 in pooling (train with --no-special-tokens for a plain layout)"
    return None


def _plain_modules(student: Student, hf_dir: Path) -> list[nn.Module]:
    from sentence_transformers.base.modules import Dense, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    encoder = copy.deepcopy(student.model.encoder.model)
    tokenizer = student.tokenizer
    if student.reader is not None:  # the table holds the cache's pieces: one row per tokenizer id again
        rows = student.reader.spread(encoder.get_input_embeddings().weight.data)
        encoder.set_input_embeddings(nn.Embedding.from_pretrained(rows, freeze=False, padding_idx=tokenizer.pad_token_id))
        encoder.config.vocab_size, encoder.config.pad_token_id = len(rows), tokenizer.pad_token_id
    hf_local.save_model(encoder, hf_dir)
    tokenizer.save_pretrained(str(hf_dir))
    # the student reads the text's pieces alone, cut where precompute cut them (max_length, specials included)
    transformer = Transformer(str(hf_dir), max_seq_length=student.content_length, processing_kwargs={"text": {"add_special_tokens": False}})
    modules: list[nn.Module] = [transformer, Pooling(encoder.config.hidden_size, pooling_mode="mean")]
    projection = student.model.projection
    if projection is not None:
        modules.append(Dense(projection.in_features, projection.out_features, activation_function=nn.Identity(),
                             init_weight=projection.weight.data.clone(), init_bias=projection.bias.data.clone()))
    return modules
