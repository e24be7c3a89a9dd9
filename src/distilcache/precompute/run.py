"""The precompute stage: plan (read inputs, IDF, rejections), run the teacher shard by shard, write the manifest.

Resume: plan.json is written before any shard; a rerun with the same request skips every shard
file that exists (shards appear only by rename, so an existing one is complete).
"""

import errno
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
import transformers
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
    CacheLock,
    CacheMismatchError,
    read_manifest,
    shard_name,
    shard_schema,
    write_json_atomic,
    write_parquet_atomic,
    write_shard,
)
from distilcache.cache_format.card import dataset_card
from distilcache.cache_format.errors import ConfigError
from distilcache.cache_format.hashing import sha256_file, sha256_json
from distilcache.cache_format.layout import CACHE_NAMES, CARD_FILE, FORMAT_NAME, SEED_DIR, TMP_PREFIX, TOKEN_VECTORS_FILE
from distilcache.cache_format.manifest import check_format, read_json, upgrade
from distilcache.cache_format.paths import symlinks_under
from distilcache.cache_format.remote import Remote, is_remote
from distilcache.cache_format.writer import is_own_tmp_name, remove_stale_tmp_files, shard_entry, write_text_atomic
from distilcache.devices import resolve_device, resolve_precision
from distilcache.inputs import Rejection, iter_corpus
from distilcache.precompute.idf_pass import idf_in_processes, idf_workers
from distilcache.precompute.prefetch import prefetch
from distilcache.precompute.preparation import Preparation, prepared_windows, record_windows
from distilcache.precompute.config import PrecomputeConfig
from distilcache.teacher.config import DEFAULT_MAX_LENGTH
from distilcache.teacher.prepare import PreparedRow
from distilcache.precompute.partitions import (
    PARTITIONS_DIR,
    all_partitions_done,
    own_shards,
    read_partials,
    write_partial_manifest,
)
from distilcache.precompute.seed import export_seed_layers, seed_entry, seed_layer_indices
from distilcache.teacher.model import describe_teacher, load_model, load_tokenizer, pooled_vectors
from distilcache.precompute.token_vectors import METHOD as TOKEN_VECTOR_METHOD
from distilcache.precompute.token_vectors import compute_token_vectors, coverage, token_vectors_table, used_token_ids
from distilcache.weighting import SEGMENTER, IdfTable
from distilcache.weighting.idf import FORMULA
from distilcache.weighting.student_vocab import RULE as STUDENT_VOCAB_RULE
from distilcache.weighting.student_vocab import count_cjk, extend_tokenizer, uncovered_chars

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- request: what decides the cache


def _request(config: PrecomputeConfig, idf_source: dict[str, Any], precision: str) -> dict[str, Any]:
    """Everything that decides the cache's content, known before any heavy work."""
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
        "student_vocab": _student_vocab(config),
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


def _check_same_request(request: dict[str, Any], stored: dict[str, Any], where: Path) -> None:
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
    )


# ---------------------------------------------------------------- plan: one pass over the inputs


def _check_output(out: Path) -> None:
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


def _clear_unplanned(out: Path) -> None:
    """Without a plan, remove what an interrupted planning pass left (_check_output allowed only that)."""
    shards = out / SHARDS_DIR
    if shards.exists() and any(shards.iterdir()):
        raise CacheError(f"{out} holds shards but no distilcache plan or manifest; refusing to write into it: "
                         "choose an empty or new --output directory")
    for name in (IDF_FILE, REJECTED_FILE, TOKEN_VECTORS_FILE, CARD_FILE):
        (out / name).unlink(missing_ok=True)
    for name in (TOKENIZER_DIR, STUDENT_TOKENIZER_DIR, SEED_DIR, PARTITIONS_DIR):
        shutil.rmtree(out / name, ignore_errors=True)


def _read_pass(config: PrecomputeConfig, idf: IdfTable | None, cjk: Counter | None) -> tuple[dict[str, Counter], list[Rejection]]:
    """Count input rows, targets and rejections per file; add every accepted text (and target: a
    document of its own) to idf when given; count the texts' CJK characters into cjk when given."""
    counts = {spec.path.name: Counter() for spec in config.inputs}
    rejections: list[Rejection] = []
    with tqdm(desc="reading inputs" + (" + IDF" if idf is not None else ""), unit=" rows", mininterval=1) as bar:
        for item in iter_corpus(config.inputs, config.keep_first_duplicate):
            counts[item.file]["input_rows"] += 1
            if isinstance(item, Rejection):
                rejections.append(item)
                counts[item.file]["rejected"] += 1
            else:
                counts[item.file]["rows_with_target"] += item.target_text is not None
                if idf is not None:
                    for document in item.documents:
                        idf.add_document(document)
                if cjk is not None:
                    count_cjk(item.text, cjk)
            bar.update()
    return counts, rejections


def _plan(config: PrecomputeConfig, request: dict[str, Any], idf: IdfTable | None, out: Path) -> tuple[dict[str, Any], IdfTable | None]:
    """Read every input once (counts, rejections, IDF), then write rejected.jsonl, idf.parquet,
    tokenizer/ and finally plan.json."""
    compute_idf = config.pooling.mode == "idf" and config.idf_file is None
    cjk = Counter() if request["student_vocab"] == "teacher+cjk" else None
    workers = idf_workers(config.inputs, config.workers) if compute_idf else 1
    if workers > 1:  # they count the IDF table while this process counts rows
        idf, (counts, rejections) = idf_in_processes(config.inputs, workers, config.keep_first_duplicate,
                                                     lambda: _read_pass(config, None, cjk))
    else:
        if compute_idf:
            idf = IdfTable()
        counts, rejections = _read_pass(config, idf if compute_idf else None, cjk)
    inputs = []
    for described, spec in zip(request["inputs"], config.inputs):
        seen = counts[spec.path.name]
        inputs.append(
            described
            | {"path": str(spec.path.resolve()), "input_rows": seen["input_rows"], "rejected": seen["rejected"],
               "rows": seen["input_rows"] - seen["rejected"]}
            | ({"rows_with_target": seen["rows_with_target"]} if spec.target_field is not None else {})
        )
    total_rows = sum(entry["rows"] for entry in inputs)

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


# ---------------------------------------------------------------- teacher pass: shard by shard




def _expected_rows(plan: dict[str, Any], index: int) -> int:
    return min(plan["shard_size"], plan["total_rows"] - index * plan["shard_size"])


def _completed_shards(out: Path, plan: dict[str, Any]) -> set[int]:
    done = set()
    for index in range(plan["num_shards"]):
        path = out / shard_name(index)
        if path.exists():
            rows = pq.ParquetFile(path).metadata.num_rows
            if rows != _expected_rows(plan, index):
                raise CacheError(f"{path}: {rows} rows, the plan expects {_expected_rows(plan, index)}; delete the file to recompute it")
            done.add(index)
    return done


def _shard_table(rows: list[PreparedRow], vectors: np.ndarray, dim: int, dtype: str) -> pa.Table:
    stored = vectors.astype(dtype)
    bad = np.flatnonzero(~np.isfinite(stored).all(axis=1))
    if len(bad):
        raise ConfigError(f"non-finite vectors for ids {[rows[i].id for i in bad[:5]]}; with --dtype float16 use --dtype float32")

    def ragged(arrays: list[np.ndarray], value_type: pa.DataType) -> pa.Array:
        offsets = np.concatenate(([0], np.cumsum([len(a) for a in arrays]))).astype(np.int32)
        values = np.concatenate(arrays) if arrays else np.zeros(0)
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=value_type))

    return pa.table(
        {
            "id": pa.array([r.id for r in rows], pa.string()),
            "text": pa.array([r.text for r in rows], pa.string()),
            "target_text": pa.array([r.target_text for r in rows], pa.string()),
            "token_ids": ragged([r.token_ids for r in rows], pa.int32()),
            "weights": ragged([r.weights for r in rows], pa.float32()),
            "truncated": pa.array([r.truncated for r in rows], pa.bool_()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(stored.reshape(-1)), dim),
        },
        schema=shard_schema(dim, dtype),
    )


def _shards_to_do(config: PrecomputeConfig, plan: dict[str, Any], out: Path) -> tuple[set[int], set[int]]:
    """(done, todo): the shards already written and this run's shards still missing."""
    done = _completed_shards(out, plan)
    todo = set(own_shards(plan["num_shards"], config.num_partitions, config.partition)) - done
    if done:
        log.info("resuming: %d of %d shard(s) already written, not recomputed", len(done), plan["num_shards"])
    _check_free_space(out, sum(_expected_rows(plan, i) for i in todo), plan)
    return done, todo


def _run_info(config: PrecomputeConfig, device: torch.device, precision: str, done: set[int]) -> dict[str, Any]:
    return {"device": str(device), "precision": precision, "batch_size": config.batch_size,
            "torch": torch.__version__, "transformers": transformers.__version__, "pyarrow": pa.__version__,
            "resumed_shards": len(done)}


def _missing_extras(config: PrecomputeConfig, plan: dict[str, Any], out: Path, device: torch.device,
                    precision: str) -> list[Callable[[Any], None]]:
    """Exports of the files made from the teacher besides the shards that are still missing: each is
    made once, by partition 0, from the loaded teacher, after the shards (token vectors may cover only
    the pieces the shards use)."""
    extras = {}
    if config.export_seed_layers and config.partition == 0:
        extras[SEED_DIR] = lambda model: export_seed_layers(model, config.export_seed_layers, out, _cache_pieces(config, plan, out))
    if config.token_vectors and config.partition == 0:
        extras[TOKEN_VECTORS_FILE] = lambda model: _export_token_vectors(model, config, plan, out, device, precision)
    return [export for name, export in extras.items() if not (out / name).exists()]


def _cache_pieces(config: PrecomputeConfig, plan: dict[str, Any], out: Path) -> np.ndarray | None:
    """The teacher token ids the cache's rows use (and the special tokens) when the vocabulary is large
    enough to keep only those (token_vectors.coverage), else None: every token."""
    tokenizer = load_tokenizer(out / TOKENIZER_DIR)
    if coverage(tokenizer, config.partitioned) == "all":
        return None
    return used_token_ids([out / shard_name(i) for i in range(plan["num_shards"])], tokenizer)


def _export_token_vectors(model: Any, config: PrecomputeConfig, plan: dict[str, Any], out: Path, device: torch.device,
                          precision: str) -> None:
    tokenizer = load_tokenizer(out / TOKENIZER_DIR)
    pieces = _cache_pieces(config, plan, out)
    token_ids = np.arange(len(tokenizer)) if pieces is None else pieces
    vectors = compute_token_vectors(model, tokenizer, token_ids, config.pooling.layer, config.pooling.prefix, device, precision)
    write_parquet_atomic(token_vectors_table(token_ids, vectors, config.dtype), out / TOKEN_VECTORS_FILE)


def _run_teacher(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path) -> dict[str, Any]:
    done, todo = _shards_to_do(config, plan, out)
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    run_info = _run_info(config, device, precision, done)
    missing = _missing_extras(config, plan, out, device, precision)
    if not todo and not missing:
        return run_info
    model = load_model(config.teacher, device)
    if todo:
        run_info |= _compute_shards(config, plan, idf, out, todo, done, model, device, precision)
    for export in missing:
        export(model)
    return run_info


def _preparation(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path) -> Preparation:
    student_tokenizer = load_tokenizer(out / STUDENT_TOKENIZER_DIR) if plan["student_tokenizer"] else None
    return Preparation(load_tokenizer(out / TOKENIZER_DIR), student_tokenizer, idf, config.pooling, config.batch_size)


def _compute_shards(config: PrecomputeConfig, plan: dict[str, Any], idf: IdfTable | None, out: Path, todo: set[int],
                    done: set[int], model: Any, device: torch.device, precision: str) -> dict[str, Any]:
    preparation = _preparation(config, plan, idf, out)
    workers = min(config.workers, sum(-(-_expected_rows(plan, i) // config.sort_window) for i in todo))  # one window each at least
    dim = plan["vector"]["dim"]
    started, rows_done = time.perf_counter(), 0
    log.info("teacher %s on %s (%s), %d shard(s) to compute, %d process(es) preparing", plan["teacher"]["name"], device, precision,
             len(todo), workers)
    with tqdm(total=plan["total_rows"], initial=sum(_expected_rows(plan, i) for i in done), desc="precompute",
              unit=" sent", mininterval=1, smoothing=0.1) as bar, torch.inference_mode():
        shard_rows: list[PreparedRow] = []
        shard_vectors: list[np.ndarray] = []
        sources: list[int] = []
        windows = prepared_windows(record_windows(config, plan, todo), preparation, workers)
        for window in prefetch(windows, depth=4):  # reading and handing out windows overlap the teacher
            vectors = pooled_vectors(model, window.batches, len(window.rows), device, precision, config.pooling.layer,
                                     config.pooling.normalize, on_batch=bar.update)
            bar.update(len(window.rows) - len(window.piece.computed))  # the repeats, filled in below
            shard_rows += window.rows
            shard_vectors.append(vectors)
            sources += window.piece.sources
            if window.piece.last:
                vectors = np.concatenate(shard_vectors)[sources]  # a repeated input takes its first row's vector
                write_shard(out, window.piece.shard, _shard_table(shard_rows, vectors, dim, config.dtype))
                if config.push:
                    config.push()
                rows_done += len(shard_rows)
                shard_rows, shard_vectors, sources = [], [], []
    seconds = time.perf_counter() - started
    return {"seconds": round(seconds, 3), "sentences_per_second": round(rows_done / seconds, 1) if seconds else None,
            "preparing_workers": workers}


# ---------------------------------------------------------------- finish: the manifest, written last


def _finish(plan: dict[str, Any], run_info: dict[str, Any], out: Path) -> dict[str, Any]:
    shards = [shard_entry(out, index, _expected_rows(plan, index)) for index in range(plan["num_shards"])]
    stats = Counter()
    for entry in shards:
        table = pq.read_table(out / entry["file"], columns=["text", "target_text", "token_ids", "truncated"])
        stats["rows_with_target"] += len(table) - table["target_text"].null_count
        stats["teacher_inputs"] += pc.count_distinct(pc.coalesce(table["target_text"], table["text"])).as_py()  # see RecordWindow
        stats["truncated_rows"] += int(pc.sum(table["truncated"]).as_py() or 0)
        stats["rows_without_tokens"] += int(pc.sum(pc.equal(pc.list_value_length(table["token_ids"]), 0)).as_py() or 0)
    manifest = {key: value for key, value in plan.items() if key != "num_shards"}
    manifest |= {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": shards,
        "total_rows": sum(entry["rows"] for entry in shards),
        "seed": seed_entry(out, plan["teacher"]["num_layers"]) if plan["export_seed_layers"] else None,
        "token_vectors": _token_vectors_entry(out, plan) if plan["export_token_vectors"] else None,
        "stats": {key: stats[key] for key in ("rows_with_target", "truncated_rows", "rows_without_tokens", "teacher_inputs")},
        "run": run_info,
    }
    write_text_atomic(dataset_card(manifest, out.resolve().name), out / CARD_FILE)
    manifest["card"] = {"file": CARD_FILE, "sha256": sha256_file(out / CARD_FILE)}
    write_json_atomic(manifest, out / MANIFEST_FILE)
    _remove_run_files(out)
    return manifest


def _remove_run_files(out: Path) -> None:
    """plan.json and the partitions' partial manifests served the run; the manifest replaces them."""
    (out / PLAN_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / PARTITIONS_DIR, ignore_errors=True)


def _token_vectors_entry(out: Path, plan: dict[str, Any]) -> dict[str, Any]:
    token_ids = pq.read_table(out / TOKEN_VECTORS_FILE, columns=["token_id"])["token_id"].to_numpy()
    every = np.array_equal(token_ids, np.arange(len(token_ids)))
    return {"file": TOKEN_VECTORS_FILE, "sha256": sha256_file(out / TOKEN_VECTORS_FILE), "rows": len(token_ids),
            "coverage": "all" if every else "used", "dim": plan["vector"]["dim"], "dtype": plan["vector"]["dtype"],
            "layer": plan["pooling"]["layer"], "method": TOKEN_VECTOR_METHOD}


# ---------------------------------------------------------------- entry point


def _idf_source(config: PrecomputeConfig) -> tuple[dict[str, Any] | None, IdfTable | None]:
    if config.pooling.mode != "idf":
        return None, None
    if config.idf_file is None:
        return {"kind": "corpus"}, None
    idf = IdfTable.load(config.idf_file)
    return {"kind": "file", "name": config.idf_file.name, "content_sha256": idf.content_sha256()}, idf


# a full disk, a quota, a read-only or forbidden output: the user can fix these and resume
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _write_failure(out: Path, error: OSError) -> CacheError:
    shards = out / SHARDS_DIR
    kept = len(list(shards.glob("part-*.parquet"))) if shards.is_dir() else 0
    return CacheError(
        f"cannot write {error.filename or out}: {error.strerror}. The {kept} completed shard(s) in {out} are kept; "
        "free space (or make the directory writable) and rerun the same command to resume"
    )


def _check_free_space(out: Path, rows: int, plan: dict[str, Any]) -> None:
    """Fail before the teacher runs when even the vectors alone cannot fit."""
    itemsize = 2 if plan["vector"]["dtype"] == "float16" else 4
    needed = rows * plan["vector"]["dim"] * itemsize
    free = shutil.disk_usage(out).free
    if free < needed:
        raise CacheError(f"{out}: {rows} rows need at least {needed / 1e6:.1f} MB for their vectors, only {free / 1e6:.1f} MB are free")


def precompute(config: PrecomputeConfig) -> dict[str, Any]:
    """Run the teacher once over the inputs into the cache at config.output; returns the manifest.

    A complete cache with the same request is left as it is; an interrupted one is resumed;
    one built with other settings is refused with the fields that differ."""
    config.validate()
    if is_remote(config.output):
        return _precompute_remote(config)
    out = config.output
    try:
        return _precompute_locked(config, out)
    except OSError as error:
        if error.errno in _WRITE_ERRNOS:
            raise _write_failure(out, error) from error
        raise


def _teacher_precision(config: PrecomputeConfig) -> str:
    """The precision the teacher will compute in, resolved before any work: it is part of the plan."""
    if config.engine == "ray":
        from distilcache.precompute.ray_engine import actor_precision

        return actor_precision(config)
    return resolve_precision(config.precision, resolve_device(config.device))


def _check_inputs_unchanged(config: PrecomputeConfig, request: dict[str, Any], out: Path) -> None:
    """The rows were read twice (plan, teacher pass): a file changed meanwhile makes a cache that lies."""
    changed = [f"{spec.path} (sha256 {planned['sha256'][:12]}… when planned, {now[:12]}… now)"
               for spec, planned in zip(config.inputs, request["inputs"]) if (now := sha256_file(spec.path)) != planned["sha256"]]
    if changed:
        raise CacheError(f"input changed while precompute ran: {'; '.join(changed)}. Its rows in {out} cannot be trusted "
                         f"and no manifest was written: delete {out} and rerun once the input no longer changes")


def _precompute_locked(config: PrecomputeConfig, out: Path) -> dict[str, Any]:
    precision = _teacher_precision(config)
    _check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = f"{LOCK_FILE}-partition-{config.partition}" if config.partitioned else LOCK_FILE
    with CacheLock(out, lock):
        # partitions clean only their own shards' temp files: the others' may be in use
        own = own_shards(10**9, config.num_partitions, config.partition) if config.partitioned else None
        for path in remove_stale_tmp_files(out, own):
            log.info("removed %s left by an interrupted run", path)
        idf_source, idf = _idf_source(config)
        request = _request(config, idf_source, precision)
        if (out / MANIFEST_FILE).exists():
            manifest = read_manifest(out)
            _check_same_request(request, manifest, out)
            _remove_run_files(out)
            log.info("%s is already complete with these settings (fingerprint %s): nothing to do", out, manifest["fingerprint"][:12])
            return manifest
        if (out / PLAN_FILE).exists():
            plan = read_json(out / PLAN_FILE)
            _check_same_request(request, plan, out)
            if plan["idf"] is not None:
                idf = IdfTable.load(out / IDF_FILE)
                if idf.content_sha256() != plan["idf"]["content_sha256"]:
                    raise CacheError(f"{out / IDF_FILE} does not match {PLAN_FILE}; delete {out} and rerun")
            log.info("found a plan in %s with the same settings: resuming", out)
        else:
            if not config.partitioned:  # partitions plan side by side and write identical files
                _clear_unplanned(out)
            plan, idf = _plan(config, request, idf, out)
            if config.push:
                config.push()
        if config.engine == "ray":
            from distilcache.precompute.ray_engine import run_teacher_ray

            run_info = run_teacher_ray(config, plan, idf, out)
        else:
            run_info = _run_teacher(config, plan, idf, out)
        _check_inputs_unchanged(config, request, out)
        if not config.partitioned:
            return _finish(plan, run_info, out)
        partial = write_partial_manifest(out, plan, config.num_partitions, config.partition, run_info)
    # outside this partition's lock: the last partition to finish merges
    return merge_partitions(out) if all_partitions_done(out, config.num_partitions) else partial


def _precompute_remote(config: PrecomputeConfig) -> dict[str, Any]:
    """Build in the local mirror of the URI, pushing the plan files once planned, each shard once
    written and the manifest last (see cache_format/remote.py)."""
    remote = Remote.parse(config.output)
    local = remote.mirror()
    local.mkdir(parents=True, exist_ok=True)
    with CacheLock(local, f"{LOCK_FILE}-sync"):  # one process per machine syncs this mirror
        remote.pull(local)  # what an earlier run, on any machine, got to the remote
        manifest = precompute(replace(config, output=local, push=lambda: remote.push_changed(local)))
        remote.push_changed(local)
        if "partition" in manifest:  # other partitions may have finished since the pull
            remote.pull(local)
            if all_partitions_done(local, config.num_partitions):
                manifest = merge_partitions(local)
                remote.push_changed(local)
    return manifest


def merge_partitions(out: Path | str) -> dict[str, Any]:
    """Check the partitions' partial manifests against the plan and write the final manifest."""
    if is_remote(out):
        remote = Remote.parse(out)
        local = remote.mirror()
        remote.pull(local)
        manifest = merge_partitions(local)
        remote.push_changed(local)
        return manifest
    with CacheLock(out, f"{LOCK_FILE}-merge"):
        if (out / MANIFEST_FILE).exists():
            return read_manifest(out)
        plan = read_json(out / PLAN_FILE) if (out / PLAN_FILE).exists() else None
        if plan is None:
            raise CacheError(f"{out}: no {PLAN_FILE}; nothing to merge (is it a partitioned precompute's output?)")
        partials = read_partials(out, plan)
        missing = sorted(set(range(plan["num_shards"])) - _completed_shards(out, plan))
        if missing:
            raise CacheError(f"{out}: shards {missing} are missing although every partition reported done")
        remove_stale_tmp_files(out)
        return _finish(plan, {"partitions": [p["run"] for p in partials]}, out)
