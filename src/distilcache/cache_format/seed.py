"""Which teacher layers a cache's seed holds: one rule for precompute, which exports them, and for train,
which seeds a student with fewer layers from them."""

from distilcache.cache_format.errors import ConfigError


def seed_layer_indices(num_layers: int, keep: int) -> list[int]:
    """The last layer, and for K > 1 the first, with the rest evenly spaced between (rounded half up).

    Keeping the last layer matters most: the cached vectors live in its output space; with it, the
    first beats DistilBERT's even spacing (benchmarks/seed_layers.py scores every pair untrained,
    benchmarks/results/SEED_LAYERS.md)."""
    if not 1 <= keep <= num_layers:
        raise ConfigError(f"--export-seed-layers must be between 1 and the teacher's {num_layers} layers, got {keep}")
    if keep == 1:
        return [num_layers - 1]
    return [(2 * i * (num_layers - 1) + keep - 1) // (2 * (keep - 1)) for i in range(keep)]
