"""A teacher run the way precompute runs it: loaded from a local directory without shipped code, its
inputs tokenised and weighted (prepare), a forward pass and the weighted pooling (model, pooling).
Precompute and evaluate share it; config holds its settings without importing torch."""
