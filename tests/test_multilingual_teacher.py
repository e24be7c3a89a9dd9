"""What a multilingual SentencePiece teacher such as multilingual-e5 needs: the LTD-BERT weighting on
Metaspace pieces, an input prefix the students never see, and a vocabulary too large to spend anything
per piece on (token vectors and embedding tables cover the pieces the cache uses)."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from conftest import make_teacher, recombined_sentences, write_lines
from distilcache import open_cache
from distilcache.cache_format import CacheMismatchError
from distilcache.cache_format.hashing import sha256_file
from distilcache.precompute import InputSpec, PoolingConfig, PrecomputeConfig, precompute
from distilcache.student import StudentError, load_student
from distilcache.teacher.prepare import prepare_rows
from distilcache.inputs import Record
from distilcache.train import TrainConfig, train
from distilcache.weighting import IdfTable, weighted_tokens
from distilcache.weighting.student_vocab import LARGE_VOCABULARY

# a tiny Unigram (SentencePiece) vocabulary: "▁" pieces carry the space before a word
PIECES = [("<pad>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("▁今天", -3.0), ("天气", -3.0),
          ("很好", -3.0), ("▁hello", -3.0), ("▁wor", -4.0), ("ld", -4.0), ("今", -6.0), ("天", -6.0), ("气", -6.0),
          ("很", -6.0), ("好", -6.0), *((c, -7.0) for c in "helowrd")]


@pytest.fixture(scope="module")
def unigram() -> PreTrainedTokenizerFast:
    tokenizer = Tokenizer(models.Unigram(PIECES, unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.decoder = decoders.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", cls_token="<s>", sep_token="</s>")


def test_metaspace_pieces_get_the_ltd_bert_weights_of_the_characters_they_cover(unigram):
    idf = IdfTable.from_texts(["今天天气很好", "今天很好", "hello world", "天气"])
    text = "今天天气很好 hello 天气"
    (tokens,) = weighted_tokens([text], unigram, 64, idf, 0.1)
    pieces = unigram.convert_ids_to_tokens(tokens.token_ids.tolist())
    assert pieces == ["▁今天", "天气", "很好", "▁hello", "▁", "天气"]
    # by hand: a character of jieba word w gets idf(w)/len(w) + 0.1; whitespace nothing
    char = {c: idf.idf(w) / len(w) + 0.1 for w in ("今天天气", "很", "好", "hello", "天气") for c in w}
    raw = [2 * char["今"], 2 * char["今"],  # ▁今天 and 天气 cover half each of the one word 今天天气
           char["很"] + char["好"],  # 很好 spans two jieba words
           5 * char["h"],  # ▁hello covers " hello": the space adds nothing
           0.0,  # ▁ alone covers only a space
           idf.idf("天气") + 0.2]
    np.testing.assert_allclose(tokens.weights, np.array(raw) / sum(raw), rtol=1e-5)


def test_a_prefix_weighs_nothing_under_idf_and_counts_under_mean_and_the_student_never_sees_it(unigram):
    idf = IdfTable.from_texts(["今天天气很好", "hello world"])
    records = [Record("a", "今天天气很好", "t")]
    plain = prepare_rows(records, unigram, PoolingConfig(max_length=64), idf)
    prefixed = prepare_rows(records, unigram, PoolingConfig(max_length=64, prefix="hello "), idf)
    assert len(prefixed) == len(plain) == 1
    weights, base_weights = prefixed.position_weights[0], plain.position_weights[0]
    assert unigram.convert_ids_to_tokens(prefixed.input_ids[0])[:3] == ["<s>", "▁hello", "▁今天"]
    assert weights[1] == 0 and weights[2:-1].sum() == pytest.approx(1)
    np.testing.assert_allclose(weights[2:], base_weights[1:], rtol=1e-6)  # the text's weights, as without
    np.testing.assert_array_equal(prefixed.token_ids[0], plain.token_ids[0])  # the student reads the text alone
    np.testing.assert_allclose(prefixed.weights[0], plain.weights[0])
    mean = prepare_rows(records, unigram, PoolingConfig("mean", max_length=64, prefix="hello "), idf)
    np.testing.assert_allclose(mean.position_weights[0], 1 / len(mean.input_ids[0]))  # the teacher's own mean pooling counts it


def test_precompute_with_a_prefix_records_it_and_refuses_another(teacher_dir, tmp_path):
    corpus = write_lines(tmp_path / "c.txt", ["今天天气很好", "Where is my son?", "我不喜欢这本书"])
    config = PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(corpus)], output=tmp_path / "p", device="cpu",
                              pooling=PoolingConfig(prefix="query: "))
    prefixed = precompute(config)
    plain = precompute(PrecomputeConfig(**(vars(config) | {"output": tmp_path / "plain", "pooling": PoolingConfig()})))
    assert prefixed["pooling"]["prefix"] == "query: " and prefixed["fingerprint"] != plain["fingerprint"]
    a, b = open_cache(tmp_path / "p"), open_cache(tmp_path / "plain")
    assert a.table(["token_ids", "weights"]).equals(b.table(["token_ids", "weights"]))
    assert not np.allclose(a.vectors(), b.vectors())
    with pytest.raises(CacheMismatchError, match="pooling.prefix: cache has 'query: ', this run has 'passage: '"):
        precompute(PrecomputeConfig(**(vars(config) | {"pooling": PoolingConfig(prefix="passage: ")})))


SENTENCES = recombined_sentences(200, seed=17)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> dict:
    """A teacher whose vocabulary is larger than LARGE_VOCABULARY, nearly all of it unused by the corpus."""
    root = tmp_path_factory.mktemp("large")
    teacher = make_teacher(root / "teacher", texts=SENTENCES, hidden=32, unused_tokens=LARGE_VOCABULARY)
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(write_lines(root / "c.txt", SENTENCES))],
                                output=root / "cache", device="cpu", export_seed_layers=1))
    return {"root": root, "teacher": teacher, "cache": root / "cache", "vocab": LARGE_VOCABULARY + 5}


def test_a_large_vocabulary_gets_token_vectors_only_for_the_pieces_the_cache_uses(large):
    cache = open_cache(large["cache"])
    used = set(np.concatenate(cache.table(["token_ids"])["token_ids"].to_numpy(zero_copy_only=False)).tolist())
    stored = set(pq.read_table(cache.token_vectors_path)["token_id"].to_pylist())
    assert used <= stored and len(stored) < 1000 < large["vocab"]
    assert cache.manifest["token_vectors"]["coverage"] == "used"
    seed = json.loads((cache.seed_dir / "config.json").read_text())  # the seed's embedding: those pieces too
    assert cache.manifest["seed"]["vocabulary"] == "used" and set(seed["distilcache_seed_token_ids"]) == stored
    assert (cache.seed_dir / "model.safetensors").stat().st_size < (large["teacher"] / "model.safetensors").stat().st_size / 4


@pytest.mark.parametrize("student", ["bilstm", "transformer"])
def test_a_student_of_a_large_vocabulary_holds_only_the_cache_pieces_and_reads_a_piece_none_spells_as_unknown(large, tmp_path, student):
    options = {"init": "seed"} if student == "transformer" else {}
    summary = train(TrainConfig(cache=large["cache"], output=tmp_path / "s", student=student, epochs=2, batch_size=32,
                                val_fraction=0.2, device="cpu", **options))
    if student == "transformer":  # the teacher's last layer over [CLS] pieces [SEP], through the cut table: the teacher, nearly
        assert min(summary["untrained_fidelity"], summary["best_val_fidelity"]) > 0.99
    else:
        assert summary["best_val_fidelity"] > summary["untrained_fidelity"]
    whole = train(TrainConfig(cache=large["cache"], output=tmp_path / "whole", student=student, epochs=1, batch_size=32,
                              val_fraction=0.2, device="cpu", vocabulary="tokenizer", **options))
    assert summary["parameters"] < whole["parameters"] - 25 * LARGE_VOCABULARY  # the table is what shrank
    loaded = load_student(tmp_path / "s")
    assert loaded.model.config.vocab_size < 1000 and loaded.reader is not None
    unseen = "[unused7] [unused99]"  # pieces of the tokenizer that no cache row used, and no held pieces spell
    vectors = loaded.encode([SENTENCES[0], unseen, ""])
    assert np.isfinite(vectors).all()
    unk_row = loaded.reader.lookup[loaded.tokenizer.unk_token_id]
    assert [loaded.reader.spell(i) for i in loaded.tokenizer.convert_tokens_to_ids(["[unused7]", "[unused99]"])] == [[unk_row]] * 2


def test_a_student_vocabulary_file_is_checked_like_any_untrusted_file(large, tmp_path):
    train(TrainConfig(cache=large["cache"], output=tmp_path / "s", epochs=1, batch_size=32, val_fraction=0.2, device="cpu"))
    student = tmp_path / "s"
    path = student / "vocabulary.safetensors"
    n = load_student(student).model.config.vocab_size
    for bad in (torch.full((n,), 10**9, dtype=torch.int64), torch.zeros(n, dtype=torch.int64), torch.arange(n + 1)):
        save_file({"token_ids": bad}, str(path))
        info = json.loads((student / "distilcache_student.json").read_text())
        info["files"]["vocabulary.safetensors"] = sha256_file(path)
        (student / "distilcache_student.json").write_text(json.dumps(info))
        with pytest.raises(StudentError, match="vocabulary.safetensors"):
            load_student(student)
    shutil.rmtree(student)
