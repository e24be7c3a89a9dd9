"""Test support: run `distilcache precompute ARGS` and SIGKILL this very process at a chosen point.

    python kill_helper.py POINT N ARGS...

POINT is where the kill lands: idf (after N texts of the IDF pass), mid-shard (half-way through
writing shard N's temp file), after-rename (right after shard N got its final name), manifest
(the manifest's temp file is written, not yet renamed), student-rename (`train` saving its N-th
student: right after its first file got its final name), or none (run to the end).
"""

import os
import signal
import sys

import pyarrow.parquet as pq

from distilcache.cache_format import writer
from distilcache.cli import main
from distilcache.precompute import local_engine
from distilcache.student import directory
from distilcache.train import loop
from distilcache.weighting import IdfTable

point, count, args = sys.argv[1], int(sys.argv[2]), sys.argv[3:]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if point == "idf":
    real_add = IdfTable.add_document

    def add_document(self, text):
        if self.num_documents == count:
            die()
        real_add(self, text)

    IdfTable.add_document = add_document
elif point == "mid-shard":
    real_write_table = pq.write_table

    def write_table(table, where, **kwargs):
        if f"part-{count:05d}" in str(where):
            real_write_table(table.slice(0, table.num_rows // 2), where, **kwargs)
            die()
        real_write_table(table, where, **kwargs)

    pq.write_table = write_table
elif point == "after-rename":
    real_write_shard = local_engine.write_shard

    def write_shard(out, index, table):
        real_write_shard(out, index, table)
        if index == count:
            die()

    local_engine.write_shard = write_shard
elif point == "manifest":
    real_move = writer.move_into_place

    def move_into_place(tmp, path):
        if path.name == "manifest.json":
            die()
        real_move(tmp, path)

    writer.move_into_place = move_into_place
elif point == "student-rename":
    real_save, real_move, saves = loop.save_student, directory.move_into_place, []

    def save_student(*args, **kwargs):
        saves.append(1)
        return real_save(*args, **kwargs)

    def move_into_place(tmp, path):
        real_move(tmp, path)
        if len(saves) == count:
            die()

    loop.save_student, directory.move_into_place = save_student, move_into_place
elif point != "none":
    raise SystemExit(f"unknown kill point {point!r}")

sys.exit(main(args))
