"""Teacher-side augmentation (precompute --augment K): what a variant may be, that it depends on the seed,
the id and k only, the cache's ids, vectors and manifest, and the held-out split that keeps variants with
their source."""

import json
import random
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import CORPUS, recombined_sentences, tiny_cache, write_lines

from distilcache.cache_format import open_cache
from distilcache.cache_format.errors import CacheError, ConfigError
from distilcache.cache_format.split import is_variant_id, source_id, split_by_id, split_masks, variant_id
from distilcache.cache_format.summary import describe
from distilcache.cache_format.verify import verify_cache
from distilcache.inputs import Record
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.precompute.augment import SHUFFLE_DISTANCE, Augmenter, _words, augmenter_for, replacement_words
from distilcache.precompute.config import AUGMENT_OPERATIONS
from distilcache.train.data import read_rows, row_groups, scan_cache

SENTENCE = "the quick brown fox jumps over the lazy dog near a river bank"
WORDS = {"cjk": ["猫", "飞机"], "ascii": ["zebra", "violin", "quartz"], "other": ["été"]}  # replacement words
AUGMENTER = Augmenter(1, 0, AUGMENT_OPERATIONS, WORDS)


def variant(text: str, previous: str | None, rng: random.Random) -> str:
    return AUGMENTER.variant(text, previous, rng)


def _kind(source: list[str], previous: str, text: str, result: str) -> set[str]:
    """The operations that could have made result from text (words compared, spaces aside)."""
    words = [w.text for w in _words(result)]
    n, kinds = len(source), set()
    if result.startswith(previous) and result.endswith(text):
        kinds.add("join")
    it = iter(source)
    if 0 < len(words) < n and all(w in it for w in words):  # a subsequence
        kinds.add("word_dropout")
        if any(source[:i] + source[i + n - len(words):] == words for i in range(len(words) + 1)):
            kinds.add("span_deletion")
        if any(source[i : i + len(words)] == words for i in range(n - len(words) + 1)):
            kinds.add("crop")
    if sorted(words) == sorted(source):
        moved = [abs(words.index(w) - source.index(w)) for w in set(source) if source.count(w) == 1]
        if max(moved) < SHUFFLE_DISTANCE:
            kinds.add("local_shuffle")
    replaced = [(a, b) for a, b in zip(source, words) if a != b]
    if len(words) == n and replaced and all(b in WORDS["ascii"] for _, b in replaced):
        kinds.add("word_replacement")
    return kinds


def test_every_variant_is_one_of_the_operations_and_each_operation_occurs():
    previous = "A man plays a guitar."
    source = [w.text for w in _words(SENTENCE)]
    seen = set()
    for k in range(300):
        result = variant(SENTENCE, previous, random.Random(k))
        kinds = _kind(source, previous, SENTENCE, result)
        assert kinds, f"{result!r} is no variant of {SENTENCE!r}"
        seen |= kinds
        assert result != ""
    assert seen == set(AUGMENT_OPERATIONS)


def test_chinese_variants_take_characters_from_the_text_and_join_without_a_space():
    text, previous = "今天天气很好，我们去公园散步吧。", "我的儿子在哪儿？"
    for k in range(100):
        result = variant(text, previous, random.Random(k))
        assert " " not in result
        if result.startswith(previous):
            assert result == previous + text
        elif not Counter(result) - Counter(text):
            assert result
        else:  # word replacement: Chinese words by Chinese words
            assert set(result) <= set(text) | set("".join(WORDS["cjk"]))


def test_a_text_too_short_for_any_operation_is_joined_replaced_or_kept():
    shaping = Augmenter(1, 0, ("word_dropout", "span_deletion", "crop", "local_shuffle", "join"))
    assert shaping.variant("Hello", None, random.Random(0)) == "Hello"
    assert shaping.variant("Hello", "Good morning.", random.Random(0)) == "Good morning. Hello"
    assert {variant("Hello", None, random.Random(k)) for k in range(20)} == set(WORDS["ascii"])
    assert variant("é", None, random.Random(0)) == "été"  # jieba cuts non-ASCII letters one by one
    assert variant("42", None, random.Random(0)) == "42"  # digits are never replaced


def test_replacement_words_are_the_whole_words_of_a_wordpiece_or_sentencepiece_vocabulary():
    wordpiece = ["[PAD]", "[UNK]", "the", "##s", "dog", "猫", "42", "##猫", ",", "[unused3]", "été"]
    assert replacement_words(wordpiece, ["[PAD]", "[UNK]"]) == {"cjk": ["猫"], "ascii": ["dog", "the"], "other": ["été"]}
    sentencepiece = ["<s>", "</s>", "\u2581the", "s", "\u2581dog", "\u2581猫", "\u2581", "\u258142", "ing", "\u2581飞机"]
    assert replacement_words(sentencepiece, ["<s>", "</s>"]) == {"cjk": ["猫", "飞机"], "ascii": ["dog", "the"], "other": []}


def test_variants_depend_on_the_seed_the_id_and_k_only():
    records = [Record(f"f:{i}", text, "f") for i, text in enumerate(CORPUS)]
    first = list(Augmenter(3, 7, words=WORDS).records(records))
    assert first == list(Augmenter(3, 7, words=WORDS).records(records))
    assert [r.text for r in first] != [r.text for r in Augmenter(3, 8, words=WORDS).records(records)]
    assert len(first) == 4 * len(records)
    for i, record in enumerate(records):
        assert first[4 * i] == record
        assert [r.id for r in first[4 * i + 1 : 4 * i + 4]] == [variant_id(record.id, k) for k in (1, 2, 3)]
    parallel = [Record("p:1", "Hello there", "p", target_text="你好")]
    assert list(Augmenter(3, 0, words=WORDS).records(parallel)) == parallel  # the two sides could not be cut alike


def test_variant_ids_name_their_source():
    assert source_id(variant_id("stsb:12", 3)) == "stsb:12"
    assert is_variant_id("a#aug1") and not is_variant_id("a#aug0") and not is_variant_id("a#aug")
    assert source_id("plain:1") == "plain:1"


def test_the_split_keeps_each_variant_with_its_source_and_holds_out_real_rows_only():
    sources = [f"row:{i}" for i in range(2000)]
    ids = [v for s in sources for v in (s, variant_id(s, 1), variant_id(s, 2))]
    train, held_out = split_masks(ids, 0.1, augmented=True)
    plain_train, plain_held_out = split_by_id(sources, 0.1)
    assert {source_id(ids[i]) for i in np.flatnonzero(train)} == {sources[i] for i in plain_train}
    assert [ids[i] for i in np.flatnonzero(held_out)] == [sources[i] for i in plain_held_out]
    assert not (train & held_out).any()
    assert (~train & ~held_out).sum() == 2 * len(plain_held_out)  # the held-out rows' variants: in neither


def test_an_augmented_cache_holds_each_row_then_its_variants_with_the_teachers_vectors(tmp_path):
    sentences = recombined_sentences(40, seed=3)
    cache_dir = tiny_cache(tmp_path / "a", sentences, keep_teacher=True, augment=2, augment_seed=5, shard_size=50)
    manifest = json.loads((cache_dir / "manifest.json").read_text())
    assert manifest["augment"]["copies"] == 2 and manifest["augment"]["seed"] == 5
    assert manifest["inputs"][0]["augmented_rows"] == 80
    assert manifest["total_rows"] == 120 and len(manifest["shards"]) == 3
    assert verify_cache(cache_dir) == []
    assert "2 variants" in (cache_dir / "README.md").read_text()
    assert "augment      2 variants after each row (seed 5" in describe(open_cache(cache_dir))
    assert "corpus.txt: 40 rows in, 40 kept, 0 rejected, 80 variants" in describe(open_cache(cache_dir))
    table = open_cache(cache_dir).table()
    ids, texts = table["id"].to_pylist(), table["text"].to_pylist()
    config = PrecomputeConfig(teacher=tmp_path / "a" / "teacher", inputs=[], output=tmp_path, augment=2, augment_seed=5)
    expected = list(augmenter_for(config).records([Record(f"corpus:{i + 1}", s, "corpus.txt") for i, s in enumerate(sentences)]))
    assert manifest["augment"]["replacement_words"]["count"] > 0
    assert ids == [r.id for r in expected] and texts == [r.text for r in expected]

    # the originals' vectors are those of a cache without variants; a variant's are its text's own
    plain = tiny_cache(tmp_path / "b", sentences, keep_teacher=True)
    vectors = np.asarray(table["vector"].to_pylist(), dtype=np.float32)
    plain_vectors = np.asarray(open_cache(plain).table()["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors[::3], plain_vectors, atol=2e-3)
    variants_only = write_lines(tmp_path / "variants.txt", texts)
    precompute(PrecomputeConfig(teacher=tmp_path / "a" / "teacher", inputs=[InputSpec(variants_only)], output=tmp_path / "c",
                                device="cpu", idf_file=cache_dir / "idf.parquet"))
    direct = np.asarray(open_cache(tmp_path / "c").table()["vector"].to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(vectors, direct, atol=2e-3)


def test_training_never_sees_a_variant_of_a_held_out_row(tmp_path):
    cache_dir = tiny_cache(tmp_path, recombined_sentences(300, seed=4), augment=2)
    cache = open_cache(cache_dir)
    assert cache.augmented
    scan = scan_cache(cache, 0.2, vocab_size=10_000)
    train_ids, held_out_ids = [], []
    for g, group in enumerate(row_groups(cache)):
        group_ids = read_rows(group, cache.dim).ids.to_pylist()
        train_ids += [group_ids[i] for i in scan.members(g, held_out=False)]
        held_out_ids += [group_ids[i] for i in scan.members(g, held_out=True)]
    assert held_out_ids and not any(is_variant_id(i) for i in held_out_ids)
    assert not {source_id(i) for i in train_ids} & set(held_out_ids)
    assert len(train_ids) == 3 * (300 - len(held_out_ids)) == scan.train_rows


def test_an_input_id_that_names_a_variant_is_refused_under_augment(teacher_dir, tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a", "text": "Where is my son?"}\n{"id": "a#aug1", "text": "I do not like this book"}\n')
    config = PrecomputeConfig(teacher=teacher_dir, inputs=[InputSpec(path)], output=tmp_path / "cache", device="cpu", augment=1)
    with pytest.raises(ConfigError, match=r"rows.jsonl: row 2 .*'a#aug1'"):
        precompute(config)
    config.output = tmp_path / "plain"
    config.augment = 0
    precompute(config)  # without --augment it is an id like any other
    assert pq.read_table(next((tmp_path / "plain" / "shards").iterdir()))["id"].to_pylist() == ["a", "a#aug1"]


def test_a_malformed_augment_entry_is_refused_on_open(tmp_path):
    cache_dir = tiny_cache(tmp_path, CORPUS)
    manifest_path = cache_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for bad in ({"copies": "2"}, {"copies": 0}, {"copies": True}, ["copies"]):
        manifest_path.write_text(json.dumps(manifest | {"augment": bad}))
        with pytest.raises(CacheError, match="field 'augment'"):
            open_cache(cache_dir, verify=False)
