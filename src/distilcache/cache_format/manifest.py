import json
from pathlib import Path
from typing import Any

from distilcache.cache_format.errors import CacheError
from distilcache.cache_format.layout import FORMAT_NAME, MANIFEST_FILE, READABLE_VERSIONS
from distilcache.cache_format.writer import write_json_atomic

__all__ = ["check_format", "may_lack_target_text", "read_json", "read_manifest", "upgrade", "write_json_atomic"]

MAX_JSON_BYTES = 64 << 20  # far above any real manifest; a larger file is refused before it is read


def read_json(path: Path, error: type[Exception] = CacheError) -> dict[str, Any]:
    """A JSON object from a file of at most MAX_JSON_BYTES; `error` names the file otherwise."""
    size = path.stat().st_size
    if size > MAX_JSON_BYTES:
        raise error(f"{path}: {size} bytes, more than the {MAX_JSON_BYTES} a distilcache JSON file may have")
    try:
        value = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid UTF-8 JSON ({exc})") from None
    if not isinstance(value, dict):
        raise error(f"{path}: expected a JSON object")
    return value


def check_format(manifest: dict[str, Any], path: Path) -> None:
    if manifest.get("format") != FORMAT_NAME:
        raise CacheError(f"{path}: not a distilcache manifest (format={manifest.get('format')!r})")
    if manifest.get("format_version") not in READABLE_VERSIONS:
        raise CacheError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(this distilcache reads versions {', '.join(map(str, READABLE_VERSIONS))})"
        )


# what every manifest holds, with its JSON type: readers index these without looking first
_REQUIRED = {"teacher": dict, "pooling": dict, "vector": dict, "inputs": list, "fingerprint": str, "tokenizer": dict,
             "rejected": dict, "total_rows": int, "shards": list, "stats": dict}
_SHARD_FIELDS = {"file": str, "rows": int, "sha256": str}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_fields(manifest: dict[str, Any], path: Path) -> None:
    """The fields readers rely on exist with the right types, and the vector shape is one a cache can have."""
    for key, kind in _REQUIRED.items():
        if not isinstance(manifest.get(key), kind):
            raise CacheError(f"{path}: field {key!r} is missing or not a JSON {kind.__name__}")
    if manifest.get("idf") is not None and not isinstance(manifest["idf"], dict):
        raise CacheError(f"{path}: field 'idf' must be an object or null")
    augment = manifest.get("augment")
    if augment is not None and not (isinstance(augment, dict) and _positive_int(augment.get("copies"))):
        raise CacheError(f"{path}: field 'augment' must be null or an object whose copies is an integer >= 1, got {augment!r}")
    dim, dtype = manifest["vector"].get("dim"), manifest["vector"].get("dtype")
    if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= 1 << 16 or dtype not in ("float16", "float32"):
        raise CacheError(f"{path}: field 'vector' must hold a dim in 1..65536 and a dtype float16 or float32, got {manifest['vector']}")
    states = manifest.get("token_states")
    if states is not None and not (isinstance(states, dict) and _positive_int(states.get("dim")) and states["dim"] <= dim
                                   and isinstance(states.get("file"), str) and isinstance(states.get("sha256"), str)):
        raise CacheError(f"{path}: field 'token_states' must be null or an object with a file, a sha256 and a dim in 1..{dim}, "
                         f"got {states!r}")
    for index, entry in enumerate(manifest["shards"]):
        if not isinstance(entry, dict) or any(not isinstance(entry.get(k), t) for k, t in _SHARD_FIELDS.items()):
            raise CacheError(f"{path}: shards[{index}] must be an object with a file, rows and sha256")


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """A manifest or plan of any version-1 release, with the keys later releases added filled in as
    the older release meant them; the one place that knows the history of the format."""
    upgraded = dict(record)
    upgraded.setdefault("student_vocab", "teacher")  # before --student-vocab: the teacher's tokens
    upgraded.setdefault("export_token_vectors", bool(record.get("token_vectors")))  # then only the entry said so
    upgraded.setdefault("export_token_states", 0)
    # before the plan named it, only a manifest's run did; a plan of then says nothing (None: not recorded)
    upgraded.setdefault("precision", (record.get("run") or {}).get("precision"))
    for section in ("student_tokenizer", "seed", "token_vectors", "card", "augment", "token_states"):  # what older caches never held
        upgraded.setdefault(section, None)
    if isinstance(record.get("pooling"), dict):  # before --prefix, the teacher read the text as it was
        upgraded["pooling"] = {"prefix": ""} | record["pooling"]
    return upgraded


def may_lack_target_text(record: dict[str, Any]) -> bool:
    """Shards of caches made before parallel text lack the (then always null) target_text column;
    their manifests lack student_vocab, which came with it."""
    return "student_vocab" not in record


def read_manifest(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / MANIFEST_FILE
    if not path.exists():
        raise CacheError(
            f"{path} does not exist: {cache_dir} is not a complete cache "
            "(a precompute that has not finished leaves no manifest; rerun it to resume)"
        )
    manifest = read_json(path)
    check_format(manifest, path)
    check_fields(manifest, path)
    return manifest
