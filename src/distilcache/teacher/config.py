"""How a teacher's token states become one sentence vector: plain settings, no torch."""

from dataclasses import dataclass

POOLING_MODES = ("idf", "mean", "cls")
DEFAULT_MAX_LENGTH = 256  # teacher tokens per text when the teacher allows as many


@dataclass(frozen=True)
class PoolingConfig:
    mode: str = "idf"  # one of POOLING_MODES
    layer: int = -1  # hidden_states index: -1 the last layer, 0 the embeddings
    smoothing: float = 0.1  # added to every character's IDF weight
    max_length: int | None = None  # teacher tokens, specials included; None: min(DEFAULT_MAX_LENGTH, the teacher's positions)
    normalize: bool = False  # L2-normalise the pooled vector
    # prepended to what the teacher reads (e5 wants "query: "); students never see it. Its tokens weigh
    # nothing under idf pooling (the IDF weights come from the text alone) and count like any token under
    # mean pooling, as the teacher's own mean pooling counts them
    prefix: str = ""
