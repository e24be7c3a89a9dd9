"""A table of the cache's pieces reads a piece it lacks as the pieces that spell it, not as one unknown token."""

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from conftest import make_teacher, recombined_sentences, write_lines
from distilcache.precompute import InputSpec, PrecomputeConfig, precompute
from distilcache.student import load_student
from distilcache.student.vocabulary import PieceReader
from distilcache.train import TrainConfig, train
from distilcache.weighting.student_vocab import LARGE_VOCABULARY


def _reader(tokenizer, held: list[str]) -> tuple[PieceReader, dict[str, int]]:
    """A reader of a table that holds the special tokens and the pieces `held`; each piece's row by name."""
    names = [*tokenizer.all_special_tokens, *held]
    table_ids = np.array(sorted(set(tokenizer.convert_tokens_to_ids(names))), dtype=np.int64)
    reader = PieceReader(table_ids, tokenizer, fallback_row=0)
    return reader, {name: int(reader.lookup[tokenizer.convert_tokens_to_ids(name)]) for name in names}


@pytest.fixture(scope="module")
def sentencepiece() -> PreTrainedTokenizerFast:
    pieces = [("<pad>", 0.0), ("<s>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0), ("▁1943", -3.0), ("▁19", -4.0),
              ("43", -4.0), ("▁1932", -3.0), ("32", -4.0), ("很好", -3.0), ("很", -5.0), ("好", -5.0), ("ab", -4.0)]
    tokenizer = Tokenizer(models.Unigram(pieces, unk_id=3))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>", cls_token="<s>", sep_token="</s>")


def test_a_sentencepiece_piece_the_table_lacks_is_spelled_by_the_longest_held_pieces_from_the_left(sentencepiece):
    reader, row = _reader(sentencepiece, ["▁", "▁19", "43", "32", "很", "好"])
    spell = lambda piece: reader.spell(sentencepiece.convert_tokens_to_ids(piece))  # noqa: E731
    assert spell("▁1943") == [row["▁19"], row["43"]]
    assert spell("▁1932") == [row["▁19"], row["32"]]  # two years the table never held read apart, not as one unknown
    assert spell("很好") == [row["很"], row["好"]]
    assert spell("43") == [row["43"]]  # a held piece is its own row
    assert spell("ab") == [reader.unknown_row]  # no held piece spells it


def test_spread_over_the_whole_tokenizer_a_lacking_piece_is_the_mean_of_the_rows_that_spell_it(sentencepiece):
    reader, row = _reader(sentencepiece, ["▁", "▁19", "43", "32"])
    table = torch.randn(len(reader.table_ids), 6)
    spread = reader.spread(table)
    assert spread.shape == (len(sentencepiece), 6)
    ids = dict(zip(["▁1943", "43", "ab"], sentencepiece.convert_tokens_to_ids(["▁1943", "43", "ab"])))
    torch.testing.assert_close(spread[ids["▁1943"]], (table[row["▁19"]] + table[row["43"]]) / 2)
    torch.testing.assert_close(spread[ids["43"]], table[row["43"]])
    torch.testing.assert_close(spread[ids["ab"]], table[reader.unknown_row])


def test_a_wordpiece_piece_is_spelled_with_continuation_pieces_after_its_first(tmp_path):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "abc", "ab", "a", "##c", "##bc", "##cd", "##d", "b"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tmp_path / "tokenizer_config.json").write_text('{"tokenizer_class": "BertTokenizer"}')
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path))
    reader, row = _reader(tokenizer, ["ab", "a", "b", "##c", "##d"])
    spell = lambda piece: reader.spell(tokenizer.convert_tokens_to_ids(piece))  # noqa: E731
    assert spell("abc") == [row["ab"], row["##c"]]  # not "ab" "c": inside a word WordPiece reads "##c"
    assert spell("##cd") == [row["##c"], row["##d"]]
    assert spell("##bc") == [reader.unknown_row]  # "##b" is not held


def test_spelled_pieces_share_their_piece_weight_and_a_text_keeps_its_length_limit(sentencepiece):
    reader, row = _reader(sentencepiece, ["▁", "▁19", "43", "很", "好", "很好"])
    ids = np.array(sentencepiece.convert_tokens_to_ids(["很好", "▁1943", "▁", "▁1943"]), dtype=np.int32)
    weights, counts = np.array([0.5, 0.3, 0.2, 1.0], dtype=np.float32), np.array([3, 1])
    shared = reader.read(ids, weights, counts, limit=8)
    assert shared.rows.tolist() == [row["很好"], row["▁19"], row["43"], row["▁"], row["▁19"], row["43"]]
    assert shared.counts.tolist() == [4, 2] and shared.starts.tolist() == [0, 4]
    np.testing.assert_allclose(shared.weights, [0.5, 0.15, 0.15, 0.2, 0.5, 0.5], rtol=1e-6)
    cut = reader.read(ids, weights, counts, limit=3)  # a text longer than the limit keeps its first 3 rows
    assert cut.counts.tolist() == [3, 2] and cut.rows.tolist()[:3] == [row["很好"], row["▁19"], row["43"]]
    np.testing.assert_allclose(cut.weights, [0.625, 0.1875, 0.1875, 0.5, 0.5], rtol=1e-6)  # each text weighs 1 again
    held = reader.read(ids[:1], weights[:1], np.array([1]), limit=0)
    assert held.rows.tolist() == [row["很好"]] and held.weights.tolist() == [0.5]  # nothing to spell: read as it came


def test_a_student_tells_apart_texts_that_differ_only_in_words_its_cache_never_held(tmp_path):
    """Before: "zest" and "tote", whole pieces of the teacher's vocabulary that no cache row used, both read as the
    unknown token and the two texts got one vector; now each is spelled with the letter pieces the cache's words
    outside the teacher's vocabulary brought ("tzse": t ##z ##s ##e)."""
    sentences = recombined_sentences(120, seed=3)
    teacher = make_teacher(tmp_path / "teacher", texts=[*sentences, "zest tote"], hidden=32, unused_tokens=LARGE_VOCABULARY)
    precompute(PrecomputeConfig(teacher=teacher, inputs=[InputSpec(write_lines(tmp_path / "c.txt", [*sentences, "tzse otse zo"]))],
                                output=tmp_path / "cache", device="cpu"))
    train(TrainConfig(cache=tmp_path / "cache", output=tmp_path / "s", epochs=1, batch_size=32, val_fraction=0.2, device="cpu"))
    student = load_student(tmp_path / "s")
    zest, tote = student.tokenizer.convert_tokens_to_ids(["zest", "tote"])
    assert student.reader is not None and not student.reader.held[[zest, tote]].any()
    assert len(student.reader.spell(zest)) == 4 and student.reader.unknown_row not in student.reader.spell(zest)
    a, b = student.encode(["我们 zest", "我们 tote"])
    assert np.isfinite(a).all() and np.abs(a - b).max() > 1e-4
