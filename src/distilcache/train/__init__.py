"""Stage two: train students against a cache. Reads only the cache; never loads the teacher."""

from distilcache.train.loop import TrainConfig, train
from distilcache.train.models import StudentConfig, StudentModel, build_student

__all__ = ["StudentConfig", "StudentModel", "TrainConfig", "build_student", "train"]
