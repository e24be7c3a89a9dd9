"""LTD-BERT weighting: jieba words -> corpus IDF -> per-character weights -> per-token weights.

Pure functions over numpy and pyarrow; no torch, so students and readers share them.
"""

from distilcache.weighting.idf import IdfTable, idf_value
from distilcache.weighting.segment import SEGMENTER, segment
from distilcache.weighting.tokens import WeightedBatch, WeightedTokens, weighted_batch, weighted_tokens
from distilcache.weighting.weights import char_weights, token_weights

__all__ = [
    "IdfTable", "SEGMENTER", "WeightedBatch", "WeightedTokens", "char_weights", "idf_value", "segment", "token_weights",
    "weighted_batch", "weighted_tokens",
]
