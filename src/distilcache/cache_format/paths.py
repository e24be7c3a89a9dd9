"""Names read from a manifest, a student's JSON or an object store are untrusted: each must name a
file inside its directory. Every such name goes through `resolve_inside` before it is opened."""

import os
import re
from collections.abc import Iterator
from pathlib import Path

from distilcache.cache_format.errors import CacheError

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_relative(name: object, field: str, error: type[Exception] = CacheError) -> str:
    """name itself when it is a relative POSIX path of plain parts (no '..', '.', empty part, backslash,
    drive or NUL); else `error` naming the field it came from."""
    if not isinstance(name, str) or not name:
        raise error(f"{field}: expected a relative file name, got {name!r}")
    parts = name.split("/")
    if name.startswith("/") or _DRIVE.match(name) or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in parts):
        raise error(f"{field}: {name!r} is not a plain relative name inside the directory (absolute, '..' or odd parts)")
    return name


def resolve_inside(root: Path, name: object, field: str, error: type[Exception] = CacheError) -> Path:
    """root / name, checked to be a plain relative name that stays inside root once symbolic links are
    resolved; else `error` naming the field it came from."""
    path = root / safe_relative(name, field, error)
    if not path.resolve().is_relative_to(root.resolve()):
        raise error(f"{field}: {name!r} leads outside {root} through a symbolic link")
    return path


def symlinks_under(root: Path) -> Iterator[Path]:
    """Every symbolic link below root (to a file or a folder), without following any."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            if path.is_symlink():
                yield path
