"""The contract between the stages: schema, manifest, atomic sharded writer, reader, verify.

Depends on nothing else in the package, so a reader of caches needs only pyarrow.
"""

from distilcache.cache_format.errors import CacheError, CacheMismatchError, CacheVerifyError, Problem
from distilcache.cache_format.layout import (
    FORMAT_VERSION,
    IDF_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    PLAN_FILE,
    REJECTED_FILE,
    SHARDS_DIR,
    STUDENT_TOKENIZER_DIR,
    TOKENIZER_DIR,
    shard_name,
)
from distilcache.cache_format.manifest import read_manifest, write_json_atomic
from distilcache.cache_format.reader import Cache, open_cache
from distilcache.cache_format.schema import shard_schema, vector_type
from distilcache.cache_format.verify import verify_cache
from distilcache.cache_format.writer import CacheLock, write_parquet_atomic, write_shard

__all__ = [
    "FORMAT_VERSION",
    "IDF_FILE",
    "LOCK_FILE",
    "MANIFEST_FILE",
    "PLAN_FILE",
    "REJECTED_FILE",
    "SHARDS_DIR",
    "STUDENT_TOKENIZER_DIR",
    "TOKENIZER_DIR",
    "Cache",
    "CacheError",
    "CacheLock",
    "CacheMismatchError",
    "CacheVerifyError",
    "Problem",
    "open_cache",
    "read_manifest",
    "shard_name",
    "shard_schema",
    "vector_type",
    "verify_cache",
    "write_json_atomic",
    "write_parquet_atomic",
    "write_shard",
]
