import json
from pathlib import Path
from typing import Any

from distilcache.cache_format.errors import CacheError
from distilcache.cache_format.layout import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE
from distilcache.cache_format.writer import write_json_atomic

__all__ = ["read_manifest", "read_json", "write_json_atomic", "check_format"]


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise CacheError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise CacheError(f"{path}: expected a JSON object")
    return value


def check_format(manifest: dict[str, Any], path: Path) -> None:
    if manifest.get("format") != FORMAT_NAME:
        raise CacheError(f"{path}: not a distilcache manifest (format={manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CacheError(
            f"{path}: format_version {manifest.get('format_version')!r} is not supported "
            f"(this distilcache reads version {FORMAT_VERSION})"
        )


def read_manifest(cache_dir: str | Path) -> dict[str, Any]:
    path = Path(cache_dir) / MANIFEST_FILE
    if not path.exists():
        raise CacheError(
            f"{path} does not exist: {cache_dir} is not a complete cache "
            "(a precompute that has not finished leaves no manifest; rerun it to resume)"
        )
    manifest = read_json(path)
    check_format(manifest, path)
    return manifest
