"""Honest Chinese-English parallel sentences for multilingual distillation (zh student, en teacher).

Two sources: the HSK example sentences of the `hsk-sentences-audio` package, and STS-B, whose
Chinese version (CNSD) is a translation of the English one in the same row order with some rows
dropped. STS-B rows are aligned by a monotonic DP and kept only where the alignment is certain.
Only `train` and `dev` are ever read; test.tsv is never touched.

    .venv/bin/python benchmarks/parallel_text.py
"""

import math
import os
import random
import re
from pathlib import Path

import numpy as np

DATA = Path(os.environ.get("DISTILCACHE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))

SPLITS = ("train", "dev")
RUN_K = 8  # see _confirmed_rows
MARGIN = 6.0  # min log-evidence gap between a row's best match and its best alternative
SKIP = 2.4  # cost of dropping one English row: about -log(drop rate ~ 9%)
LEN_MU, LEN_SD = -1.15, 0.3  # log(zh chars / en chars) of true translations, measured on the data


def hsk_pairs() -> list[tuple[str, str]]:
    """(chinese, english) HSK example sentences: stripped, non-empty, exact duplicates removed."""
    from hsk_sentences_audio import load_sentences

    pairs = ((s.get("chinese") or "", (s.get("translation") or {}).get("en") or "") for s in load_sentences())
    return list(dict.fromkeys((zh.strip(), en.strip()) for zh, en in pairs if zh.strip() and en.strip()))


def _read(lang: str, split: str) -> list[tuple[str, str, float]]:
    # Plain tab split: the files are TSV with tabs removed from the texts and quotes kept literally.
    lines = (DATA / f"stsb-{lang}" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "sentence1\tsentence2\tscore", lines[0]
    return [(a, b, float(s)) for a, b, s in (ln.split("\t") for ln in lines[1:])]


def _feats(s: str) -> tuple[float, frozenset, frozenset]:
    """Length, digit strings ("1,000" -> "1000") and Latin words (lowercased) of one sentence."""
    s2 = re.sub(r"(?<=\d),(?=\d)", "", s)
    return len(s), frozenset(re.findall(r"\d+", s2)), frozenset(w.lower() for w in re.findall(r"[A-Za-z]{2,}", s))


def _pair_evidence(zh: tuple, en: tuple) -> float:
    """Log-odds-like evidence that one zh sentence translates one en sentence (no score term)."""
    (lz, dz, wz), (le, de, we) = zh, en
    z = (math.log(max(lz, 1) / max(le, 1)) - LEN_MU) / LEN_SD
    ev = max(1.0 - z * z / 2, -4.0)  # length ratio plausibility
    if dz and de:  # numbers are copied by translators; agreeing numbers are strong evidence
        ev += 3.0 if dz == de else (0.0 if dz & de else -3.0)
    elif dz:  # digits in zh but none in en: unlikely ("two" -> "2" happens, so mild)
        ev -= 1.0
    if wz:  # Latin tokens (names, acronyms) that survive translation
        ev += 2.0 if wz <= we else (-2.0 if not wz & we else 0.0)
    return ev


def _match_matrix(zh: list, en: list, band: int) -> np.ndarray:
    """M[j, d]: evidence that zh row j translates en row j + d (d = en rows dropped before it)."""
    fz = [(_feats(a), _feats(b), s) for a, b, s in zh]
    fe = [(_feats(a), _feats(b), math.floor(s + 1e-6)) for a, b, s in en]
    M = np.full((len(zh), band + 1), -np.inf)
    for j, (z1, z2, sz) in enumerate(fz):
        for d in range(band + 1):
            e1, e2, se = fe[j + d]
            # zh score == floor(en score) for true pairs (checked in __main__); chance agreement ~0.2
            M[j, d] = _pair_evidence(z1, e1) + _pair_evidence(z2, e2) + (1.5 if sz == se else -4.0)
    return M


def _viterbi(M: np.ndarray, reverse: bool = False) -> np.ndarray:
    """Best log-score over monotone paths: F[j, d] = best path that matches zh row j to en j+d.

    Dropping en rows between consecutive matches costs SKIP each, so the offset d can only grow
    (forward) or shrink (backward); max over the previous offsets is a running maximum."""
    n, w = M.shape
    F = np.empty_like(M)
    pen = SKIP * np.arange(w)
    prev = -SKIP * np.arange(w) if not reverse else -SKIP * (w - 1 - np.arange(w))
    for j in (range(n - 1, -1, -1) if reverse else range(n)):
        if not reverse:
            best = np.maximum.accumulate(prev + pen) - pen
        else:
            best = np.maximum.accumulate((prev - pen)[::-1])[::-1] + pen
        F[j] = prev = M[j] + best
    return F


def _confirmed_rows(zh: list, en: list) -> tuple[list[int], int]:
    """Indices into `en` for each zh row whose alignment is certain (-1 otherwise), and #uncertain."""
    band = len(en) - len(zh)
    M = _match_matrix(zh, en, band)
    fwd, bwd = _viterbi(M), _viterbi(M, reverse=True)
    through = fwd + bwd - M  # best total score of any path that pairs zh j with en j+d
    d_best = through.argmax(1)
    top = np.sort(through, 1)
    margin = top[:, -1] - top[:, -2]  # max-marginal gap: how much worse the best alternative is
    # Rule: keep zh row j iff (1) its score agrees with floor(en score), (2) it lies in a run of
    # >= RUN_K consecutive 1:1 steps (no en row dropped inside) that all agree on score, and
    # (3) the margin is >= MARGIN. A misaligned stretch agrees on score by chance with p ~ 0.2
    # per row (sum of squared score-class frequencies), so a chance run of 8 has p ~ 0.2^8 ~ 3e-6,
    # i.e. < 0.02 expected over ~5k positions even before length/number/name evidence. The run
    # rule alone cannot tell where inside a gap the dropped row sits (rows next to a drop may be
    # off by one); the margin catches exactly those, so both are required.
    agree = np.array([zh[j][2] == math.floor(en[j + d][2] + 1e-6) for j, d in enumerate(d_best)])
    keep = agree & (margin >= MARGIN)
    ok = np.zeros(len(zh), bool)
    start = 0
    for j in range(1, len(zh) + 1):  # runs: same offset d, consecutive rows, all agreeing
        if j == len(zh) or d_best[j] != d_best[j - 1] or not agree[j] or not agree[j - 1]:
            if j - start >= RUN_K and agree[start]:
                ok[start:j] = True
            start = j
    ok &= keep
    idx = [int(j + d) if k else -1 for j, (d, k) in enumerate(zip(d_best, ok))]
    return idx, int((~ok).sum())


def aligned_stsb_pairs(split: str = "train") -> tuple[list[tuple[str, str]], dict]:
    """Sentence-level (zh, en) pairs from certainly aligned STS-B rows, deduplicated, with stats."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r} (test is never used)")
    zh, en = _read("zh", split), _read("en", split)
    idx, uncertain = _confirmed_rows(zh, en)
    rows = [(zh[j], en[i]) for j, i in enumerate(idx) if i >= 0]
    pairs = list(dict.fromkeys(p for z, e in rows for p in ((z[0], e[0]), (z[1], e[1])) if p[0] and p[1]))
    stats = {"en_rows": len(en), "zh_rows": len(zh), "aligned_rows_kept": len(rows),
             "rows_dropped_uncertain": uncertain, "sentence_pairs": len(pairs)}
    return pairs, stats


if __name__ == "__main__":
    hsk = hsk_pairs()
    print(f"hsk: {len(hsk)} pairs")
    for split in SPLITS:
        zh, en = _read("zh", split), _read("en", split)
        idx, _ = _confirmed_rows(zh, en)
        kept = [(zh[j][2], en[i][2]) for j, i in enumerate(idx) if i >= 0]
        # Alignment evidence uses floor; report how round would have fared on the same rows.
        fl = np.mean([z == math.floor(e + 1e-6) for z, e in kept])
        rd = np.mean([z == math.floor(e + 0.5) for z, e in kept])
        pairs, stats = aligned_stsb_pairs(split)
        print(f"stsb {split}: {stats}  score rule on kept rows: floor {fl:.3f}, round {rd:.3f}")
    pairs, _ = aligned_stsb_pairs("train")
    for zh_s, en_s in random.Random(0).sample(pairs, 15):
        print(f"  {zh_s}\n  {en_s}\n")
