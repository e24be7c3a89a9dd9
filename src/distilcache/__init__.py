"""distilcache: run a BERT teacher once, cache its sentence vectors, train cheap students from the cache."""

__version__ = "0.1.0"

from typing import Any

from distilcache.cache_format import Cache, open_cache, verify_cache  # noqa: E402

__all__ = ["Cache", "__version__", "load_student", "open_cache", "verify_cache"]


def __getattr__(name: str) -> Any:
    # students need torch and transformers; readers of caches need only pyarrow, so load lazily
    if name == "load_student":
        from distilcache.student import load_student

        return load_student
    raise AttributeError(f"module 'distilcache' has no attribute {name!r}")
