import math

import numpy as np
import pytest

from distilcache.weighting import IdfTable, char_weights, idf_value, segment, token_weights


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
