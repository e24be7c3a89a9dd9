import math

import jieba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from distilcache.weighting import IdfTable, char_weights, idf_value, segment, token_weights, weighted_tokens


@pytest.fixture(scope="module")
def tokenizer(teacher_dir):
    return AutoTokenizer.from_pretrained(str(teacher_dir), local_files_only=True)


def test_idf_matches_hand_computed_example():
    # 3 documents; jieba splits "我爱北京" into 我/爱/北京
    table = IdfTable.from_texts(["我爱北京", "我爱上海", "你好"])
    assert table.num_documents == 3
    assert table.df["我"] == 2 and table.df["北京"] == 1 and table.df["你好"] == 1
    assert table.idf("我") == pytest.approx(math.log(4 / 3) + 1)
    assert table.idf("北京") == pytest.approx(math.log(4 / 2) + 1)
    # a word the table never saw gets the idf of df = 0
    assert table.idf("火星") == pytest.approx(math.log(4 / 1) + 1) == pytest.approx(table.unknown_idf)


def test_df_counts_a_word_once_per_document():
    table = IdfTable.from_texts(["北京 北京 北京", "北京"])
    assert table.df["北京"] == 2


def test_char_weights_spread_word_idf_over_its_characters():
    table = IdfTable.from_texts(["我爱北京", "我爱上海", "你好"])
    weights = char_weights("我爱北京", table, smoothing=0.1)
    assert segment("我爱北京") == ["我", "爱", "北京"]
    expected = [table.idf("我") + 0.1, table.idf("爱") + 0.1, table.idf("北京") / 2 + 0.1, table.idf("北京") / 2 + 0.1]
    np.testing.assert_allclose(weights, expected)


def test_token_weights_sum_spans_and_normalise():
    char_w = np.array([1.0, 2.0, 3.0, 4.0])
    weights = token_weights(char_w, [(0, 1), (1, 3), (3, 4)])
    np.testing.assert_allclose(weights, np.array([1, 5, 4]) / 10, rtol=1e-6)
    assert weights.dtype == np.float32 and weights.sum() == pytest.approx(1.0)


def test_characters_no_token_covers_count_for_nothing():
    char_w = np.array([1.0, 100.0, 1.0])
    np.testing.assert_allclose(token_weights(char_w, [(0, 1), (2, 3)]), [0.5, 0.5])


def test_token_weights_with_only_empty_spans_are_uniform_and_finite():
    weights = token_weights(np.array([1.0, 1.0]), [(0, 0), (2, 2)])
    np.testing.assert_allclose(weights, [0.5, 0.5])
    assert token_weights(np.array([1.0]), []).shape == (0,)


def test_idf_table_round_trips_through_arrow_with_a_stable_hash():
    table = IdfTable.from_texts(["我爱北京", "I love Beijing", "我爱上海"])
    loaded = IdfTable.from_arrow(table.to_arrow())
    assert loaded.num_documents == 3 and loaded.df == table.df
    assert loaded.content_sha256() == table.content_sha256()
    assert IdfTable.from_texts(["我爱北京"]).content_sha256() != table.content_sha256()
    np.testing.assert_allclose(table.to_arrow()["idf"].to_numpy(), [idf_value(table.df[w], 3) for w in sorted(table.df)])


def test_idf_table_without_document_count_is_refused():
    arrow = IdfTable.from_texts(["a b"]).to_arrow().replace_schema_metadata({})
    with pytest.raises(ValueError, match="num_documents"):
        IdfTable.from_arrow(arrow, source="x.parquet")


# characters jieba treats differently: dictionary CJK words, Latin runs, its joiners "+#&._%-", other
# punctuation, and the whitespace it keeps as words of their own ("\r\n" is one)
_JIEBA_TEXT = st.lists(st.sampled_from(["我", "爱", "北京", "上海", "天安门", "C++", "AT&T", "3.5%", "co-op", "e.g.",
                                        "Hello", "world", "x", "7", " ", "  ", "\t", "\r\n", "\n", ",", "，", "!", "。",
                                        "'s", "(", "é", "ß", "🙂", "#", "_", "-"]), max_size=20).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=_JIEBA_TEXT)
def test_segment_is_exactly_jieba(text):
    # segment cuts jieba's pieces one by one (memoised): it must give jieba's own words
    assert segment(text) == jieba.lcut(text, cut_all=False, HMM=True)


# Han runs: dictionary words, characters the HMM joins or splits (常在她: jieba's HMM keeps three words where jieba-rs's
# own HMM breaks the tie the other way), rare characters outside the dictionary, and the Latin letters some words hold
_HAN_TEXT = st.lists(st.sampled_from(["我", "们", "常", "在", "她", "常在她", "常在我", "的", "后", "廊", "上", "抓",
                                      "青豆", "爸家", "聚会", "中", "出", "了", "一个", "叛徒", "研究生", "命", "起源",
                                      "乒乓球", "拍卖", "完了", "龘", "靐", "齉", "T恤", "卡拉OK", "A股", "c", "AA", "x",
                                      "1"]), max_size=24).map("".join)


@settings(max_examples=400, deadline=None)
@given(text=_HAN_TEXT)
def test_segment_of_chinese_runs_is_exactly_jieba(text):
    # pure Han pieces take their dictionary route from jieba-rs (loaded with jieba's own dictionary and total) and
    # their unknown runs from jieba's HMM; other pieces with no dictionary character skip the route
    assert segment(text) == jieba.lcut(text, cut_all=False, HMM=True)


def test_segment_of_real_chinese_sentences_is_exactly_jieba():
    hsk = pytest.importorskip("hsk_sentences_audio")
    texts = [row["chinese"] for row in hsk.load_sentences()]
    assert len(texts) > 4000
    assert [segment(text) for text in texts] == [jieba.lcut(text, cut_all=False, HMM=True) for text in texts]


def test_char_weights_follow_the_table_as_it_grows():
    table = IdfTable.from_texts(["我爱北京", "你好"])
    before = char_weights("北京", table, smoothing=0.0)
    table.add_document("北京")  # 北京 is now in 2 of 3 documents: its idf falls, the memo must not keep the old one
    after = char_weights("北京", table, smoothing=0.0)
    np.testing.assert_allclose(after, [table.idf("北京") / 2] * 2)
    assert after[0] < before[0]


def test_a_text_weighs_the_same_alone_and_in_a_batch(tokenizer):
    texts = ["我爱北京天安门", "", "  ", "上海 and 北京, again and again!", "我爱北京天安门" * 40]
    table = IdfTable.from_texts(texts)
    batch = weighted_tokens(texts, tokenizer, 64, table, 0.1)
    for text, together in zip(texts, batch):
        (alone,) = weighted_tokens([text], tokenizer, 64, table, 0.1)
        assert np.array_equal(alone.token_ids, together.token_ids) and np.array_equal(alone.weights, together.weights)
        # and both equal the rule written out for this one text
        offsets = tokenizer(text, return_offsets_mapping=True, truncation=True, max_length=64)["offset_mapping"]
        kept = [offsets[i] for i in together.content_positions]
        np.testing.assert_array_equal(together.weights, token_weights(char_weights(text, table, 0.1), kept))
    assert batch[4].truncated and len(batch[1].weights) == 0
