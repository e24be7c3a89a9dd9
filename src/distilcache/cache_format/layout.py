"""File names inside a cache directory (format version 1)."""

FORMAT_VERSION = 1
FORMAT_NAME = "distilcache-cache"

MANIFEST_FILE = "manifest.json"  # written last: the cache is complete iff it exists
PLAN_FILE = "plan.json"  # written first, removed once the manifest exists; makes resume possible
IDF_FILE = "idf.parquet"
REJECTED_FILE = "rejected.jsonl"
TOKENIZER_DIR = "tokenizer"
STUDENT_TOKENIZER_DIR = "student_tokenizer"  # only when the student needs tokens the teacher lacks
SHARDS_DIR = "shards"
LOCK_FILE = ".lock"  # partitions lock ".lock-partition-I", merging ".lock-merge"
TMP_PREFIX = ".tmp-"
PARTITIONS_DIR = "partitions"  # partition I's partial manifest: partitions/part-I.json, removed on merge


def shard_name(index: int) -> str:
    return f"{SHARDS_DIR}/part-{index:05d}.parquet"
