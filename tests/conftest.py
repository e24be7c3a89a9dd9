"""Shared fixtures: a tiny BERT teacher built on the fly from the test corpus (no downloads)."""

import re
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

ZH = ["我的儿子在哪儿？", "今天天气很好，我们去公园散步吧。", "这家酒店的服务非常好", "他在北京大学读书", "我不喜欢这本书"]
EN = ["Where is my son?", "The weather is nice today, let's walk in the park.", "This hotel has great service",
      "He studies at Peking University", "I do not like this book"]
MIXED = ["我用Python写代码", "今天的meeting改到3点", "BERT模型很大，LSTM很小"]
CORPUS = ZH + EN + MIXED


def build_vocab(texts: list[str]) -> list[str]:
    """[PAD]/[UNK]/[CLS]/[SEP]/[MASK], every character, lowercased words and their '##' suffix pieces."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces: set[str] = set()
    for text in texts:
        for ch in text.lower():
            if not ch.isspace():
                pieces.add(ch)
                pieces.add("##" + ch)
        for word in re.findall(r"[a-z]+", text.lower()):
            pieces.add(word)
    return specials + sorted(pieces)


def make_teacher(directory: Path, texts: list[str] = CORPUS, hidden: int = 64, layers: int = 2, seed: int = 0,
                 unused_tokens: int = 0) -> Path:
    """unused_tokens pads the vocabulary with tokens no text uses, as large real vocabularies do."""
    directory.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(texts) + [f"[unused{i}]" for i in range(unused_tokens)]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer", "do_lower_case": true}')
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=hidden * 2, max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory))
    # loading from vocab.txt builds the fast (Rust) WordPiece tokenizer; saving writes tokenizer.json too
    AutoTokenizer.from_pretrained(str(directory)).save_pretrained(str(directory))
    return directory


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_teacher(tmp_path_factory.mktemp("teacher"))


def recombined_sentences(count: int, seed: int = 0) -> list[str]:
    """Distinct new sentences made of the corpus's characters and words (all in the tiny vocab)."""
    import random

    rng = random.Random(seed)
    units = sorted({ch for text in ZH for ch in text} | {w for text in EN for w in re.findall(r"[A-Za-z]+", text)})
    sentences: dict[str, None] = {}
    while len(sentences) < count:
        words = rng.sample(units, rng.randint(3, 12))
        sentences["".join(w if not w.isascii() else f" {w} " for w in words).strip()] = None
    return list(sentences)


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def tiny_cache(root: Path, sentences: list[str], keep_teacher: bool = False, **options) -> Path:
    """root/cache: the sentences precomputed with a tiny teacher built for them in root/teacher, which is deleted
    afterwards (training must not need it) unless keep_teacher; options go to PrecomputeConfig."""
    from distilcache.precompute import InputSpec, PrecomputeConfig, precompute

    teacher = make_teacher(root / "teacher", texts=sentences)
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(write_lines(root / "corpus.txt", sentences))],
                                output=root / "cache", device="cpu", **options))
    if not keep_teacher:
        shutil.rmtree(teacher)
    return root / "cache"


def record_shard_writes(monkeypatch: pytest.MonkeyPatch, module, crash_after: int | None = None) -> list[int]:
    """Patch module.write_shard to note each shard index written and, with crash_after, to raise
    KeyboardInterrupt (like a SIGINT: nothing after it runs) once that many shards are written."""
    from distilcache.cache_format.writer import write_shard

    written: list[int] = []

    def noting(out, index, table):
        if len(written) == crash_after:
            raise KeyboardInterrupt("killed")
        written.append(index)
        write_shard(out, index, table)

    monkeypatch.setattr(module, "write_shard", noting)
    return written
