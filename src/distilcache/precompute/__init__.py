"""Stage one: run a teacher once over a corpus and write a cache."""

from distilcache.lazy import lazy_attributes

_SOURCES = {
    "InputError": "distilcache.inputs", "InputSpec": "distilcache.inputs", "PoolingConfig": "distilcache.teacher.config",
    "PrecomputeConfig": "distilcache.precompute.config", "precompute": "distilcache.precompute.run",
}
__all__ = sorted(_SOURCES)
__getattr__ = lazy_attributes(__name__, _SOURCES)
