"""distilcache: run a BERT teacher once, cache its sentence vectors, train cheap students from the cache."""

__version__ = "0.1.0"

from distilcache.cache_format import Cache, open_cache, verify_cache  # noqa: E402

__all__ = ["Cache", "__version__", "open_cache", "verify_cache"]
