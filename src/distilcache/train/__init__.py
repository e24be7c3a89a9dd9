"""Stage two: train students against a cache. Reads only the cache; never loads the teacher."""

from distilcache.lazy import lazy_attributes

_SOURCES = {
    "StudentConfig": "distilcache.student.model", "StudentModel": "distilcache.student.model",
    "TrainConfig": "distilcache.train.config", "build_student": "distilcache.train.build", "train": "distilcache.train.loop",
}
__all__ = sorted(_SOURCES)
__getattr__ = lazy_attributes(__name__, _SOURCES)
