"""File names inside a cache directory."""

# 2: the `vector` column's values are declared non-null (the values were never null; a reader decodes a column of
# required values about half again as fast). A version-1 cache differs in nothing else and is read as before.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
FORMAT_NAME = "distilcache-cache"

MANIFEST_FILE = "manifest.json"  # written last: the cache is complete iff it exists
PLAN_FILE = "plan.json"  # written first, removed once the manifest exists; makes resume possible
IDF_FILE = "idf.parquet"
REJECTED_FILE = "rejected.jsonl"
TOKENIZER_DIR = "tokenizer"
STUDENT_TOKENIZER_DIR = "student_tokenizer"  # only when the student needs tokens the teacher lacks
SHARDS_DIR = "shards"
SEED_DIR = "seed"  # only with --export-seed-layers: the teacher's embeddings and K layers
TOKEN_VECTORS_FILE = "token_vectors.parquet"
TOKEN_PROJECTION_FILE = "token_projection.parquet"  # only with --token-states: the projection of the token_states column
CARD_FILE = "README.md"  # the dataset card
LOCK_FILE = ".lock"  # partitions lock ".lock-partition-I", merging ".lock-merge"
TMP_PREFIX = ".tmp-"
PARTITIONS_DIR = "partitions"  # partition I's partial manifest: partitions/part-I.json, removed on merge


# every name precompute writes at the top of a cache (besides the lock and temp files)
CACHE_NAMES = (MANIFEST_FILE, PLAN_FILE, IDF_FILE, REJECTED_FILE, TOKENIZER_DIR, STUDENT_TOKENIZER_DIR, SHARDS_DIR,
               SEED_DIR, TOKEN_VECTORS_FILE, TOKEN_PROJECTION_FILE, CARD_FILE, PARTITIONS_DIR)


def shard_name(index: int) -> str:
    return f"{SHARDS_DIR}/part-{index:05d}.parquet"
