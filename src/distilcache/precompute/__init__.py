"""Stage one: run a teacher once over a corpus and write a cache."""

from distilcache.precompute.inputs import InputError, InputSpec
from distilcache.precompute.prepare import PoolingConfig
from distilcache.precompute.run import PrecomputeConfig, precompute

__all__ = ["InputError", "InputSpec", "PoolingConfig", "PrecomputeConfig", "precompute"]
