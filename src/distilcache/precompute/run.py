"""The precompute stage, start to end: check the output and take its lock, plan (plan.py) or resume a plan,
run the teacher pass on an engine (local_engine.py, ray_engine.py), write the manifest (finish.py); for a
URI output, the same in a local mirror pushed as it goes.

Resume: plan.json is written before any shard; a rerun with the same request skips every shard
file that exists (shards appear only by rename, so an existing one is complete).
"""

import errno
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

from distilcache.cache_format import (
    FORMAT_VERSION,
    IDF_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    PLAN_FILE,
    SHARDS_DIR,
    CacheError,
    CacheLock,
    read_manifest,
)
from distilcache.cache_format.hashing import sha256_file
from distilcache.cache_format.manifest import read_json
from distilcache.cache_format.remote import Remote, is_remote
from distilcache.cache_format.writer import remove_stale_tmp_files
from distilcache.devices import resolve_device, resolve_precision
from distilcache.precompute import local_engine
from distilcache.precompute.config import PrecomputeConfig
from distilcache.precompute.finish import finish, merge_partitions, remove_run_files
from distilcache.precompute.partitions import all_partitions_done, own_shards, write_partial_manifest
from distilcache.precompute.plan import (
    check_output,
    check_same_request,
    clear_unplanned,
    make_plan,
    request_for,
    resolve_idf_source,
)
from distilcache.precompute.workers import spare_cores, worker_group, workers_for
from distilcache.weighting import IdfTable

log = logging.getLogger(__name__)


# a full disk, a quota, a read-only or forbidden output: the user can fix these and resume
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


def _write_failure(out: Path, error: OSError) -> CacheError:
    shards = out / SHARDS_DIR
    kept = len(list(shards.glob("part-*.parquet"))) if shards.is_dir() else 0
    return CacheError(
        f"cannot write {error.filename or out}: {error.strerror}. The {kept} completed shard(s) in {out} are kept; "
        "free space (or make the directory writable) and rerun the same command to resume"
    )


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


def preparing_workers(config: PrecomputeConfig) -> int:
    """--workers, else by device: on the CPU 1, a thread of the main process (a CPU teacher's forward needs every core,
    and preparing is a small part of its work); with a GPU (or Ray's teacher) the cores but one."""
    if config.workers is not None:
        return config.workers
    return 1 if config.engine == "local" and resolve_device(config.device).type == "cpu" else spare_cores()


def _check_inputs_unchanged(config: PrecomputeConfig, request: dict[str, Any], out: Path) -> None:
    """The rows were read twice (plan, teacher pass): a file changed meanwhile makes a cache that lies."""
    changed = [f"{spec.path} (sha256 {planned['sha256'][:12]}… when planned, {now[:12]}… now)"
               for spec, planned in zip(config.inputs, request["inputs"]) if (now := sha256_file(spec.path)) != planned["sha256"]]
    if changed:
        raise CacheError(f"input changed while precompute ran: {'; '.join(changed)}. Its rows in {out} cannot be trusted "
                         f"and no manifest was written: delete {out} and rerun once the input no longer changes")


def _precompute_locked(config: PrecomputeConfig, out: Path) -> dict[str, Any]:
    precision = _teacher_precision(config)
    check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = f"{LOCK_FILE}-partition-{config.partition}" if config.partitioned else LOCK_FILE
    with CacheLock(out, lock):
        # partitions clean only their own shards' temp files: the others' may be in use
        own = own_shards(10**9, config.num_partitions, config.partition) if config.partitioned else None
        for path in remove_stale_tmp_files(out, own):
            log.info("removed %s left by an interrupted run", path)
        idf_source, idf = resolve_idf_source(config)
        request = request_for(config, idf_source, precision)
        if (out / MANIFEST_FILE).exists():
            manifest = read_manifest(out)
            check_same_request(request, manifest, out)
            remove_run_files(out)
            log.info("%s is already complete with these settings (fingerprint %s): nothing to do", out, manifest["fingerprint"][:12])
            return manifest
        resuming = (out / PLAN_FILE).exists()
        if resuming:
            plan = read_json(out / PLAN_FILE)
            if plan.get("format_version") != FORMAT_VERSION:  # its shards would not match the ones written now
                raise CacheError(f"{out / PLAN_FILE} was planned in cache format {plan.get('format_version')}, this distilcache "
                                 f"writes {FORMAT_VERSION}: delete {out} and rerun")
            check_same_request(request, plan, out)
            if plan["idf"] is not None:
                idf = IdfTable.load(out / IDF_FILE)
                if idf.content_sha256() != plan["idf"]["content_sha256"]:
                    raise CacheError(f"{out / IDF_FILE} does not match {PLAN_FILE}; delete {out} and rerun")
            log.info("found a plan in %s with the same settings: resuming", out)
        # one group of processes: they segment the IDF pass's rows, then prepare the same rows for the local engine (Ray
        # prepares on its own workers: there the group ends with the plan)
        with worker_group(workers_for(config.inputs, preparing_workers(config))) as group:
            if not resuming:
                if not config.partitioned:  # partitions plan side by side and write identical files
                    clear_unplanned(out)
                plan, idf = make_plan(config, request, idf, out, group)
                if config.push:
                    config.push()
            # the teacher pass's engines share run_teacher(config, plan, idf, out) -> run info, resuming by the shards that exist
            if config.engine == "local":
                run_info = local_engine.run_teacher(config, plan, idf, out, group)
        if config.engine == "ray":
            from distilcache.precompute import ray_engine  # Ray is optional

            run_info = ray_engine.run_teacher(config, plan, idf, out)
        _check_inputs_unchanged(config, request, out)
        if not config.partitioned:
            return finish(plan, run_info, out)
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
