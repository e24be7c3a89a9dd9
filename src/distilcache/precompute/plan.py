"""Planning a precompute: the request (everything that decides the cache) and its fingerprint, the
check of the output directory, and the one read pass over the inputs (counts, rejections, IDF) that
writes rejected.jsonl, idf.parquet, tokenizer/ and, last, plan.json."""

import logging
import os
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

import distilcache
from distilcache.cache_format import (
    FORMAT_VERSION,
    IDF_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    PLAN_FILE,
    REJECTED_FILE,
    SHARDS_DIR,
    STUDENT_TOKENIZER_DIR,
    TOKENIZER_DIR,
    CacheError,
    CacheMismatchError,
    write_json_atomic,
    write_parquet_atomic,
)
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.hashing import sha256_file, sha256_json
from distilcache.cache_format.layout import (
    CACHE_NAMES,
    CARD_FILE,
    FORMAT_NAME,
    SEED_DIR,
    TMP_PREFIX,
    TOKEN_PROJECTION_FILE,
    TOKEN_VECTORS_FILE,
)
from distilcache.cache_format.manifest import check_format, read_json, upgrade
from distilcache.cache_format.paths import symlinks_under
from distilcache.cache_format.seed import seed_layer_indices
from distilcache.cache_format.split import is_variant_id
from distilcache.cache_format.writer import is_own_tmp_name, write_text_atomic
from distilcache.inputs import Rejection, iter_corpus
from distilcache.precompute.augment import augmenter_for
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.idf_pass import IdfCounter
from distilcache.precompute.partitions import PARTITIONS_DIR
from distilcache.precompute.preparation import window_key
from distilcache.precompute.workers import WorkerGroup
from distilcache.teacher.config import DEFAULT_MAX_LENGTH
from distilcache.teacher.model import describe_teacher, load_tokenizer
from distilcache.weighting import SEGMENTER, IdfTable
from distilcache.weighting.idf import FORMULA
from distilcache.weighting.student_vocab import RULE as STUDENT_VOCAB_RULE
from distilcache.weighting.student_vocab import count_cjk, extend_tokenizer, uncovered_chars

log = logging.getLogger(__name__)


def request_for(config: PrecomputeConfig, idf_source: dict[str, Any], precision: str) -> dict[str, Any]:
    """Everything that decides the cache's content, known before any heavy work."""
    augmenter = augmenter_for(config)
    teacher = describe_teacher(config.teacher, config.teacher_name)
    max_positions = teacher["max_position_embeddings"] or DEFAULT_MAX_LENGTH
    if config.pooling.max_length is None:
        config.pooling = replace(config.pooling, max_length=min(DEFAULT_MAX_LENGTH, max_positions))
    elif config.pooling.max_length > max_positions:
        raise ConfigError(f"--max-length {config.pooling.max_length} exceeds the teacher's {max_positions} positions")
    layers = teacher["num_layers"]
    if isinstance(layers, int) and not -(layers + 1) <= config.pooling.layer <= layers:  # hidden_states: embeddings + each layer
        raise ConfigError(f"--layer {config.pooling.layer} is out of range: the teacher has {layers} layers "
                          f"(0 is the embeddings, {layers} or -1 the last layer)")
    if config.export_seed_layers:
        seed_layer_indices(teacher["num_layers"], config.export_seed_layers)  # fail before any work
    if config.token_states > (teacher["hidden_size"] or 0):
        raise ConfigError(f"--token-states {config.token_states} exceeds the teacher's hidden size {teacher['hidden_size']}")
    return {
        "teacher": teacher,
        "pooling": vars(config.pooling).copy(),
        "precision": precision,  # bf16 and fp32 vectors differ: one cache is computed in one precision
        "vector": {"dim": teacher["hidden_size"], "dtype": config.dtype},
        "segmenter": SEGMENTER,
        "idf_source": idf_source,
        "inputs": [spec.describe() | {"sha256": sha256_file(spec.path)} for spec in config.inputs],
        "shard_size": config.shard_size,
        "on_duplicate_id": "keep-first" if config.keep_first_duplicate else "error",
        "export_seed_layers": config.export_seed_layers,
        "export_token_vectors": config.token_vectors,
        "export_token_states": config.token_states,
        "student_vocab": _student_vocab(config),
        "augment": None if augmenter is None else augmenter.describe(),
    }


def _student_vocab(config: PrecomputeConfig) -> str:
    if config.student_vocab != "auto":
        return config.student_vocab
    return "teacher+cjk" if any(spec.target_field is not None for spec in config.inputs) else "teacher"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}{key}.").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}{i}.").items()} or {prefix[:-1]: []}
    return {prefix[:-1]: value}


_INPUT_IDENTITY = ("name", "format", "id_field", "text_field", "target_field", "sha256")


def _comparable(record: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """The request part of a plan or manifest, in today's shape (input entries there also carry counts and paths)."""
    current = upgrade(record)
    picked = {key: current.get(key) for key in request}
    if picked["precision"] is None:  # not recorded by the release that planned it: nothing to compare
        picked["precision"] = request["precision"]
    picked["inputs"] = [{k: e[k] for k in _INPUT_IDENTITY if k in e} for e in picked.get("inputs") or []]
    return picked


def check_same_request(request: dict[str, Any], stored: dict[str, Any], where: Path) -> None:
    old, new = _flatten(_comparable(stored, request)), _flatten(_comparable(request, request))
    differences = [
        f"  {key}: cache has {old.get(key)!r}, this run has {new.get(key)!r}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key) and key != "teacher.name"  # a label, not an identity
    ]
    if differences:
        raise CacheMismatchError(
            f"{where} was built with different settings; refusing to mix them:\n" + "\n".join(differences)
            + "\nwrite to a new --output directory, or delete this one to rebuild it"
        )


def _fingerprint(request: dict[str, Any], idf: IdfTable | None, added_tokens: list[str]) -> str:
    """A hash of everything that determines the vectors and the token ids (not the input list: the
    same settings applied to more text give compatible rows)."""
    teacher = request["teacher"]
    return sha256_json(
        {
            "format_version": FORMAT_VERSION,
            "teacher": {"architecture": teacher["architecture"], "files": teacher["files"]},
            "pooling": request["pooling"],
            "precision": request["precision"],
            "vector": request["vector"],
            "segmenter": request["segmenter"],
            "idf": idf.content_sha256() if idf is not None else None,
            "student_added_tokens": sha256_json(added_tokens) if added_tokens else None,
        }
        | ({"token_states": request["export_token_states"]} if request["export_token_states"] else {})  # older caches: absent
    )


def check_output(out: Path) -> None:
    """Before anything is written or removed in out: it is new or empty, a distilcache cache or plan, or
    holds only what an interrupted planning pass leaves (cache names, locks, this tool's temp names); and
    it holds no symbolic link, which precompute would neither follow nor remove."""
    if not out.exists():
        return
    if not out.is_dir():
        raise CacheError(f"--output {out} is not a directory")
    names = sorted(p.name for p in out.iterdir())
    planned = False
    for marker in (MANIFEST_FILE, PLAN_FILE):
        if marker in names:
            check_format(read_json(out / marker), out / marker)  # someone else's manifest.json is not a cache
            planned = True
    unknown = [n for n in names if n not in CACHE_NAMES and not n.startswith(LOCK_FILE) and not is_own_tmp_name(n)]
    if unknown and not planned:
        raise CacheError(
            f"{out} is not empty and holds no distilcache plan or manifest ({unknown[:5]}); "
            "refusing to write or delete anything in it: choose an empty or new --output directory"
        )
    link = next(symlinks_under(out), None)
    if link is not None:
        raise CacheError(f"{link}: a symbolic link inside the cache {out}; a cache holds plain files only "
                         "(precompute neither follows nor removes links): remove it and rerun")


def clear_unplanned(out: Path) -> None:
    """Without a plan, remove what an interrupted planning pass left (check_output allowed only that)."""
    shards = out / SHARDS_DIR
    if shards.exists() and any(shards.iterdir()):
        raise CacheError(f"{out} holds shards but no distilcache plan or manifest; refusing to write into it: "
                         "choose an empty or new --output directory")
    for name in (IDF_FILE, REJECTED_FILE, TOKEN_VECTORS_FILE, TOKEN_PROJECTION_FILE, CARD_FILE):
        (out / name).unlink(missing_ok=True)
    for name in (TOKENIZER_DIR, STUDENT_TOKENIZER_DIR, SEED_DIR, PARTITIONS_DIR):
        shutil.rmtree(out / name, ignore_errors=True)


def _read_pass(config: PrecomputeConfig, idf: IdfCounter | None, cjk: Counter | None) -> tuple[dict[str, Counter], list[Rejection]]:
    """Count input rows, targets, variants and rejections per file; add every accepted text (and target: a
    document of its own) to idf when given; count the texts' CJK characters into cjk when given."""
    counts = {spec.path.name: Counter() for spec in config.inputs}
    augmenter = augmenter_for(config)
    rejections: list[Rejection] = []
    accepted = 0
    with tqdm(desc="reading inputs" + (" + IDF" if idf is not None else ""), unit=" rows", mininterval=1) as bar:
        for item in iter_corpus(config.inputs, config.keep_first_duplicate):
            counts[item.file]["input_rows"] += 1
            if isinstance(item, Rejection):
                rejections.append(item)
                counts[item.file]["rejected"] += 1
            else:
                if config.augment and is_variant_id(item.id):
                    raise ConfigError(f"{item.file}: row {counts[item.file]['input_rows']} has the id {item.id!r}, which names a "
                                      "variant under --augment (<id>#aug<k>); rename it or run without --augment")
                counts[item.file]["rows_with_target"] += item.target_text is not None
                counts[item.file]["augmented_rows"] += 0 if augmenter is None else augmenter.variant_count(item)
                if idf is not None:
                    for document in item.documents:  # the rows of a sort window go to the worker that will prepare them
                        idf.add_document(document, window_key(accepted, config))
                accepted += 1
                if cjk is not None:
                    count_cjk(item.text, cjk)
            bar.update()
    return counts, rejections


def make_plan(config: PrecomputeConfig, request: dict[str, Any], idf: IdfTable | None, out: Path,
              group: WorkerGroup | None = None) -> tuple[dict[str, Any], IdfTable | None]:
    """Read every input once (counts, rejections, IDF: segmented in the group's processes when given one), then write
    rejected.jsonl, idf.parquet, tokenizer/ and finally plan.json."""
    compute_idf = config.pooling.mode == "idf" and config.idf_file is None
    cjk = Counter() if request["student_vocab"] == "teacher+cjk" else None
    counter = IdfCounter(group) if compute_idf else None
    counts, rejections = _read_pass(config, counter, cjk)
    if counter is not None:
        idf = counter.result()
    inputs = []
    for described, spec in zip(request["inputs"], config.inputs):
        seen = counts[spec.path.name]
        inputs.append(
            described
            | {"path": str(spec.path.resolve()), "input_rows": seen["input_rows"], "rejected": seen["rejected"],
               "rows": seen["input_rows"] - seen["rejected"]}
            | ({"rows_with_target": seen["rows_with_target"]} if spec.target_field is not None else {})
            | ({"augmented_rows": seen["augmented_rows"]} if config.augment else {})
        )
    total_rows = sum(entry["rows"] + entry.get("augmented_rows", 0) for entry in inputs)

    write_text_atomic("".join(r.to_json() + "\n" for r in rejections), out / REJECTED_FILE)
    idf_entry = None
    if idf is not None:
        write_parquet_atomic(idf.to_arrow(), out / IDF_FILE)
        idf_entry = {
            "file": IDF_FILE,
            "sha256": sha256_file(out / IDF_FILE),
            "content_sha256": idf.content_sha256(),
            "source": request["idf_source"],
            "num_documents": idf.num_documents,
            "num_words": len(idf.df),
            "formula": FORMULA,
            "unknown_word_rule": "a word absent from the table gets the idf of df = 0",
            "segmenter": SEGMENTER,
        }
    tokenizer = load_tokenizer(config.teacher)
    tokenizer_entry = _save_tokenizer(tokenizer, TOKENIZER_DIR, out)
    added_tokens = uncovered_chars(cjk, tokenizer) if cjk is not None else []
    student_tokenizer_entry = None
    if added_tokens:
        student_tokenizer = extend_tokenizer(tokenizer, added_tokens)  # the teacher's is saved already
        student_tokenizer_entry = _save_tokenizer(student_tokenizer, STUDENT_TOKENIZER_DIR, out) | {
            "rule": STUDENT_VOCAB_RULE, "base_vocab_size": len(student_tokenizer) - len(added_tokens),
            "added_tokens": len(added_tokens), "added_tokens_sha256": sha256_json(added_tokens)}
        log.info("student tokenizer: %d CJK characters the teacher reads as [UNK] get their own tokens", len(added_tokens))
    plan = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": distilcache.__version__,
        **request,
        "inputs": inputs,
        "fingerprint": _fingerprint(request, idf, added_tokens),
        "idf": idf_entry,
        "tokenizer": tokenizer_entry,
        "student_tokenizer": student_tokenizer_entry,
        "rejected": {"file": REJECTED_FILE, "count": len(rejections), "by_reason": dict(Counter(r.reason for r in rejections)),
                     "sha256": sha256_file(out / REJECTED_FILE)},
        "total_rows": total_rows,
        "num_shards": -(-total_rows // config.shard_size),
    }
    write_json_atomic(plan, out / PLAN_FILE)
    log.info("planned %d rows in %d shard(s), %d rejected (see %s)", total_rows, plan["num_shards"], len(rejections), REJECTED_FILE)
    return plan, idf


def _save_tokenizer(tokenizer, name: str, out: Path) -> dict[str, Any]:
    tmp = out / f"{TMP_PREFIX}{os.getpid()}-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.save_pretrained(str(tmp))
    try:
        tmp.rename(out / name)
    except OSError:  # a partition planning beside this one saved the same files first
        if not (out / name).is_dir():
            raise
        shutil.rmtree(tmp)
    files = {f"{name}/{p.name}": sha256_file(p) for p in sorted((out / name).iterdir())}
    return {"dir": name, "class": type(tokenizer).__name__, "files": files}


def resolve_idf_source(config: PrecomputeConfig) -> tuple[dict[str, Any] | None, IdfTable | None]:
    if config.pooling.mode != "idf":
        return None, None
    if config.idf_file is None:
        return {"kind": "corpus"}, None
    idf = IdfTable.load(config.idf_file)
    return {"kind": "file", "name": config.idf_file.name, "content_sha256": idf.content_sha256()}, idf
