"""Stage two: train students against a cache, and fine-tune them on labelled pairs. Reads only the cache;
never loads the teacher."""

from distilcache.lazy import lazy_attributes

_SOURCES = {
    "StudentConfig": "distilcache.student.model", "StudentModel": "distilcache.student.model",
    "FinetuneConfig": "distilcache.train.config", "TrainConfig": "distilcache.train.config", "build_student": "distilcache.train.build",
    "finetune": "distilcache.train.finetune", "train": "distilcache.train.loop",
}
__all__ = sorted(_SOURCES)
__getattr__ = lazy_attributes(__name__, _SOURCES)
