"""Finishing a precompute: the manifest (written last, atomically), the dataset card, and the merge of a
partitioned run's partial manifests."""

import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distilcache.cache_format import LOCK_FILE, MANIFEST_FILE, PLAN_FILE, CacheError, CacheLock, read_manifest, write_json_atomic
from distilcache.cache_format.card import dataset_card
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.layout import CARD_FILE, TOKEN_PROJECTION_FILE, TOKEN_VECTORS_FILE
from distilcache.cache_format.manifest import read_json
from distilcache.cache_format.remote import Remote, is_remote
from distilcache.cache_format.token_states import read_projection
from distilcache.cache_format.writer import remove_stale_tmp_files, shard_entry, write_text_atomic
from distilcache.precompute.partitions import PARTITIONS_DIR, read_partials
from distilcache.precompute.seed import seed_entry
from distilcache.precompute.preparation import expected_rows
from distilcache.precompute.shards import completed_shards
from distilcache.precompute.token_states import METHOD as TOKEN_STATES_METHOD
from distilcache.precompute.token_vectors import METHOD as TOKEN_VECTOR_METHOD


def finish(plan: dict[str, Any], run_info: dict[str, Any], out: Path) -> dict[str, Any]:
    shards = [shard_entry(out, index, expected_rows(plan, index)) for index in range(plan["num_shards"])]
    stats = Counter()
    states = bool(plan.get("export_token_states"))
    for entry in shards:
        parquet = pq.ParquetFile(out / entry["file"])
        table = parquet.read(columns=["text", "target_text", "token_ids", "truncated"] + (["token_states"] if states else []))
        stats["rows_with_target"] += len(table) - table["target_text"].null_count
        stats["teacher_inputs"] += pc.count_distinct(pc.coalesce(table["target_text"], table["text"])).as_py()  # see RecordWindow
        stats["truncated_rows"] += int(pc.sum(table["truncated"]).as_py() or 0)
        stats["rows_without_tokens"] += int(pc.sum(pc.equal(pc.list_value_length(table["token_ids"]), 0)).as_py() or 0)
        if states:
            stats["rows_with_token_states"] += len(table) - table["token_states"].null_count
            stats["token_states_bytes"] += _stored_bytes(parquet.metadata, "token_states")
    manifest = {key: value for key, value in plan.items() if key != "num_shards"}
    manifest |= {
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "shards": shards,
        "total_rows": sum(entry["rows"] for entry in shards),
        "seed": seed_entry(out, plan["teacher"]["num_layers"]) if plan["export_seed_layers"] else None,
        "token_vectors": _token_vectors_entry(out, plan) if plan["export_token_vectors"] else None,
        "token_states": _token_states_entry(out, plan, stats) if states else None,
        "stats": {key: stats[key] for key in ("rows_with_target", "truncated_rows", "rows_without_tokens", "teacher_inputs")},
        "run": run_info,
    }
    write_text_atomic(dataset_card(manifest, out.resolve().name), out / CARD_FILE)
    manifest["card"] = {"file": CARD_FILE, "sha256": sha256_file(out / CARD_FILE)}
    write_json_atomic(manifest, out / MANIFEST_FILE)
    remove_run_files(out)
    return manifest


def remove_run_files(out: Path) -> None:
    """plan.json and the partitions' partial manifests served the run; the manifest replaces them."""
    (out / PLAN_FILE).unlink(missing_ok=True)
    shutil.rmtree(out / PARTITIONS_DIR, ignore_errors=True)


def _token_vectors_entry(out: Path, plan: dict[str, Any]) -> dict[str, Any]:
    token_ids = pq.read_table(out / TOKEN_VECTORS_FILE, columns=["token_id"])["token_id"].to_numpy()
    every = np.array_equal(token_ids, np.arange(len(token_ids)))
    return {"file": TOKEN_VECTORS_FILE, "sha256": sha256_file(out / TOKEN_VECTORS_FILE), "rows": len(token_ids),
            "coverage": "all" if every else "used", "dim": plan["vector"]["dim"], "dtype": plan["vector"]["dtype"],
            "layer": plan["pooling"]["layer"], "method": TOKEN_VECTOR_METHOD}


def _stored_bytes(metadata: pq.FileMetaData, column: str) -> int:
    """The compressed bytes a column (every leaf under it) takes in a Parquet file."""
    return sum(chunk.total_compressed_size for group in range(metadata.num_row_groups)
               for chunk in map(metadata.row_group(group).column, range(metadata.num_columns))
               if chunk.path_in_schema.split(".")[0] == column)


def _token_states_entry(out: Path, plan: dict[str, Any], stats: Counter) -> dict[str, Any]:
    """The projection file, and what the token_states column holds and costs (its stored bytes per row)."""
    k = plan["export_token_states"]
    projection = read_projection(out / TOKEN_PROJECTION_FILE, plan["vector"]["dim"], k)
    total = plan["total_rows"]
    return {"file": TOKEN_PROJECTION_FILE, "sha256": sha256_file(out / TOKEN_PROJECTION_FILE), "dim": k, "dtype": "float16",
            "layer": plan["pooling"]["layer"], "method": TOKEN_STATES_METHOD, "fit_tokens": projection.fit_tokens,
            "explained_variance": round(projection.explained, 6), "rows_with_states": stats["rows_with_token_states"],
            "bytes_per_row": round(stats["token_states_bytes"] / total, 1) if total else 0.0}


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
        missing = sorted(set(range(plan["num_shards"])) - completed_shards(out, plan))
        if missing:
            raise CacheError(f"{out}: shards {missing} are missing although every partition reported done")
        remove_stale_tmp_files(out)
        return finish(plan, {"partitions": [p["run"] for p in partials]}, out)
