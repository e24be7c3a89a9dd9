"""distilcache: run a BERT teacher once, cache its sentence vectors, train cheap students from the cache."""

__version__ = "0.1.0"

from distilcache.cache_format import Cache, open_cache, verify_cache  # noqa: E402
from distilcache.lazy import lazy_attributes  # noqa: E402

__all__ = ["Cache", "__version__", "load_student", "open_cache", "verify_cache"]
# students need torch and transformers; readers of caches need only pyarrow
__getattr__ = lazy_attributes(__name__, {"load_student": "distilcache.student.encode"})
