"""Does a student keep the teacher's quality, and how much faster is it?"""

from distilcache.evaluate.metrics import recall_at_k, spearman
from distilcache.evaluate.run import evaluate_models
from distilcache.evaluate.sts import StsPairs, read_sts

__all__ = ["StsPairs", "evaluate_models", "read_sts", "recall_at_k", "spearman"]
