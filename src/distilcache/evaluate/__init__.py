"""Does a student keep the teacher's quality, and how much faster is it?"""

from distilcache.lazy import lazy_attributes

_SOURCES = {
    "StsPairs": "distilcache.pairs", "read_sts": "distilcache.pairs", "recall_at_k": "distilcache.evaluate.metrics",
    "spearman": "distilcache.pairs", "evaluate_models": "distilcache.evaluate.run",
}
__all__ = sorted(_SOURCES)
__getattr__ = lazy_attributes(__name__, _SOURCES)
