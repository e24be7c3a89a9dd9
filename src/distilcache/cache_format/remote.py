"""Caches on shared storage: any pyarrow.fs URI (s3://, gs://, hdfs://, file://).

A remote cache is worked on through a local mirror, an exact copy of the remote files. Readers
pull (files whose size and modification time match are not fetched again) and open the mirror.
Precompute builds in the mirror and pushes every file as soon as it is complete: the plan files
first, each shard right after it is written, the manifest last. An object store shows an object
only once its upload completes, so the remote cache, like a local one, is complete iff its
manifest exists, and a run killed on one machine resumes on any other from what reached the remote.
"""

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs

from distilcache.cache_format.layout import LOCK_FILE, MANIFEST_FILE, PARTITIONS_DIR, PLAN_FILE, TMP_PREFIX
from distilcache.cache_format.paths import safe_relative

log = logging.getLogger(__name__)

_CHUNK = 8 << 20


def is_remote(location: str | Path) -> bool:
    """A URI with a scheme; pathlib would fold its '//' away, so URIs stay strings."""
    return isinstance(location, str) and "://" in location


def mirrors_root() -> Path:
    return Path(os.environ.get("DISTILCACHE_MIRRORS", Path.home() / ".cache" / "distilcache" / "mirrors"))


def _local_only(relative: str) -> bool:
    """The lock and temp files belong to one machine's run, never to the shared cache."""
    name = relative.rsplit("/", 1)[-1]
    return name.startswith(LOCK_FILE) or name.startswith(TMP_PREFIX)


@dataclass(frozen=True)
class Remote:
    uri: str
    fs: pafs.FileSystem
    base: str  # the cache directory inside fs

    @classmethod
    def parse(cls, uri: str) -> "Remote":
        fs, base = pafs.FileSystem.from_uri(uri)
        return cls(uri, fs, base.rstrip("/"))

    def mirror(self) -> Path:
        """The local mirror of this URI (credentials in a query string stay out of the name)."""
        return mirrors_root() / hashlib.sha256(self.uri.encode()).hexdigest()[:16]

    def files(self) -> dict[str, pafs.FileInfo]:
        """Remote files by path relative to the cache directory. The keys are untrusted: one that is not a
        plain relative name (`../x`, `/x`, `a//b`) would lead a pull outside the mirror and is refused."""
        info = self.fs.get_file_info(self.base)
        if info.type == pafs.FileType.NotFound:
            return {}
        found = self.fs.get_file_info(pafs.FileSelector(self.base, recursive=True))
        return {safe_relative(f.path[len(self.base) + 1 :], f"object key {f.path!r} of {self.uri}"): f
                for f in found if f.type == pafs.FileType.File}

    def pull(self, local: Path) -> int:
        """Make local an exact copy of the remote cache (lock and temp files aside); returns the
        number of files fetched."""
        local.mkdir(parents=True, exist_ok=True)
        remote = {name: info for name, info in self.files().items() if not _local_only(name)}
        for path in sorted(p for p in local.rglob("*") if p.is_file() or p.is_symlink()):
            relative = path.relative_to(local).as_posix()
            # the mirror is this tool's own folder: what the remote lacks goes, and so do a killed pull's temp files
            if (relative not in remote and not _local_only(relative)) or _stale_pull_tmp(path.name):
                path.unlink()
        fetched = 0
        for relative, info in sorted(remote.items()):
            target = local / relative
            if target.is_file() and _same(target, info):
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{_PULL_TMP}{os.getpid()}-{target.name}")
            with self.fs.open_input_stream(info.path) as source, open(tmp, "wb") as sink:
                while chunk := source.read(_CHUNK):
                    sink.write(chunk)
            os.replace(tmp, target)
            if info.mtime_ns is not None:  # so the next pull sees an unchanged file as unchanged
                os.utime(target, ns=(info.mtime_ns, info.mtime_ns))
            fetched += 1
        log.info("pulled %d file(s) of %s into %s", fetched, self.uri, local)
        return fetched

    def push(self, local: Path, relative: str) -> None:
        """Upload one file; on an object store it appears whole or not at all."""
        target = f"{self.base}/{relative}"
        self.fs.create_dir(target.rsplit("/", 1)[0], recursive=True)
        with open(local / relative, "rb") as source, self.fs.open_output_stream(target) as sink:
            while chunk := source.read(_CHUNK):
                sink.write(chunk)
        mtime = self.fs.get_file_info(target).mtime_ns
        if mtime is not None:  # the pair now counts as in sync for pull and push_changed
            os.utime(local / relative, ns=(mtime, mtime))

    def push_changed(self, local: Path) -> int:
        """Upload every local file the remote lacks or holds another size of, the manifest last;
        once the manifest is up, remove the remote's run files (plan.json, partitions/)."""
        remote = self.files()
        changed = []
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            relative = path.relative_to(local).as_posix()
            if not _local_only(relative) and (relative not in remote or not _same(path, remote[relative])):
                changed.append(relative)
        changed.sort(key=lambda name: (name == PLAN_FILE, name == MANIFEST_FILE))  # the markers after what they vouch for
        for relative in changed:
            self.push(local, relative)
        if (local / MANIFEST_FILE).exists():
            for relative in remote:
                if relative == PLAN_FILE or relative.startswith(f"{PARTITIONS_DIR}/"):
                    self.fs.delete_file(f"{self.base}/{relative}")
        log.info("pushed %d file(s) to %s", len(changed), self.uri)
        return len(changed)


_PULL_TMP = f"{TMP_PREFIX}pull-"


def _stale_pull_tmp(name: str) -> bool:
    """A temp file of a pull whose process is gone (a live one may be another reader's, mid-download)."""
    if not name.startswith(_PULL_TMP):
        return False
    pid = name[len(_PULL_TMP) :].split("-", 1)[0]
    if not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def _same(path: Path, info: pafs.FileInfo) -> bool:
    stat = path.stat()
    return stat.st_size == info.size and (info.mtime_ns is None or stat.st_mtime_ns == info.mtime_ns)
