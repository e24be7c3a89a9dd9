"""Job arrays: partition I of N computes the shards k with k % N == I and reports them in a partial
manifest; the last partition to finish (or `distilcache merge`) writes the final manifest."""

from pathlib import Path
from typing import Any

from distilcache.cache_format import CacheError, shard_name
from distilcache.cache_format.layout import PARTITIONS_DIR
from distilcache.cache_format.manifest import read_json
from distilcache.cache_format.writer import write_json_atomic

__all__ = ["PARTITIONS_DIR", "all_partitions_done", "own_shards", "read_partials", "write_partial_manifest"]


def own_shards(num_shards: int, num_partitions: int, partition: int) -> range:
    """Round-robin, so every partition gets about as many shards and they finish together."""
    return range(partition, num_shards, num_partitions)


def _partial_path(out: Path, partition: int) -> Path:
    return out / PARTITIONS_DIR / f"part-{partition}.json"


def write_partial_manifest(out: Path, plan: dict[str, Any], num_partitions: int, partition: int, run: dict[str, Any]) -> dict[str, Any]:
    partial = {
        "partition": partition,
        "num_partitions": num_partitions,
        "fingerprint": plan["fingerprint"],
        "shards": [shard_name(k) for k in own_shards(plan["num_shards"], num_partitions, partition)],
        "run": run,
    }
    write_json_atomic(partial, _partial_path(out, partition))
    return partial


def all_partitions_done(out: Path, num_partitions: int) -> bool:
    return all(_partial_path(out, i).exists() for i in range(num_partitions))


def read_partials(out: Path, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The partial manifests, checked to be one complete, consistent set for this plan."""
    paths = sorted((out / PARTITIONS_DIR).glob("part-*.json")) if (out / PARTITIONS_DIR).is_dir() else []
    partials = [read_json(p) for p in paths]
    if not partials:
        raise CacheError(f"{out}: no partial manifests in {PARTITIONS_DIR}/")
    counts = {p["num_partitions"] for p in partials}
    if len(counts) != 1:
        raise CacheError(f"{out}: partitions disagree on their number: {sorted(counts)}")
    (count,) = counts
    found = sorted(p["partition"] for p in partials)
    if found != list(range(count)):
        raise CacheError(f"{out}: partitions {sorted(set(range(count)) - set(found))} of {count} have not finished")
    wrong = [p["partition"] for p in partials if p["fingerprint"] != plan["fingerprint"]]
    if wrong:
        raise CacheError(f"{out}: partitions {wrong} were computed with another fingerprint than the plan's")
    return sorted(partials, key=lambda p: p["partition"])
