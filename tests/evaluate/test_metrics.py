"""Metrics against hand-computed answers, on Chinese and English strings."""

import pytest

from domainft.evaluate.metrics import (
    char_tokens,
    contains_keyword,
    derive_keywords,
    keyword_recall,
    rouge_l_char,
    rouge_l_word,
    strip_think,
    word_tokens,
)


def test_word_rouge_l_english_known_value():
    # LCS "the cat on the mat" = 5 of 6 tokens on both sides.
    assert rouge_l_word("The cat sat on the mat.", "the cat is on the mat") == pytest.approx(5 / 6)
    assert rouge_l_word("shall", "shall") == 1.0
    assert rouge_l_word("", "shall") == 0.0


def test_char_rouge_l_chinese_known_value():
    # pred = 8 chars all inside the 10-char reference: P = 1, R = 0.8, F1 = 8/9.
    assert rouge_l_char("不得少于72小时", "培训不得少于72小时") == pytest.approx(8 / 9)
    # Punctuation and spaces do not count; full-width digits equal ASCII ones.
    assert rouge_l_char("２４ 小时。", "24小时") == 1.0
    assert rouge_l_char("瓦斯爆炸", "顶板管理") == 0.0


def test_word_rouge_scores_chinese_as_zero_but_char_rouge_does_not():
    # The reason the coal tasks score characters: Chinese has no spaces, words are whole sentences.
    assert word_tokens("氧气不得低于百分之二十") == []
    assert rouge_l_word("氧气不得低于百分之二十", "氧气浓度不得低于百分之二十") == 0.0
    assert rouge_l_char("氧气不得低于百分之二十", "氧气浓度不得低于百分之二十") == pytest.approx(2 * 11 / (11 + 13))


def test_char_tokens_drop_punctuation_keep_units():
    assert char_tokens("不超过0.5%！") == list("不超过05%")


def test_keyword_recall_chinese():
    answer = "应当在24小时内如实报告劳动行政主管部门。"
    keywords = ["24小时", "劳动行政主管部门", "管理矿山企业的主管部门"]
    assert keyword_recall(answer, keywords) == pytest.approx(2 / 3)
    assert keyword_recall(strip_think("<think>24小时？</think>不清楚"), keywords) == 0.0


def test_keyword_boundaries():
    assert contains_keyword("不得少于72小时", "72小时")
    assert contains_keyword("不得少于 72 小时", "72小时")
    assert not contains_keyword("不得少于172小时", "72小时")
    assert not contains_keyword("Operators cannot do this", "can")
    assert contains_keyword("It can fail.", "can")
    assert contains_keyword("Use SHALL NOT for prohibitions", "shall not")


def test_keyword_recall_english():
    assert keyword_recall("Use 'shall' for requirements.", ["shall", "should"]) == 0.5
    assert keyword_recall("", ["shall"]) == 0.0


def test_keywords_derived_from_reference_when_item_names_none():
    assert derive_keywords("见第二十二条：二氧化碳不得超过０.５％，氧气不低于20%") == ["第二十二条", "0.5", "20"]
    assert keyword_recall("二氧化碳不超过0.5%", [], "二氧化碳不得超过0.5%，氧气不低于20%") == 0.5
    # No keywords and no numbers: share of the reference's character bigrams (矿山, 山安, 安全).
    assert keyword_recall("煤矿安全", [], "矿山安全") == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("<think>先想一想。</think>答案是24小时。", "答案是24小时。"),
        ("<think>a</think>x<think>b</think>y", "xy"),
        ("reasoning opened in the prompt</think>\n\nThe answer is shall.", "The answer is shall."),
        ("<think>cut off while still reasoning", ""),
        ("no reasoning at all", "no reasoning at all"),
    ],
)
def test_strip_think(raw, clean):
    assert strip_think(raw) == clean


def test_scores_after_think_stripping():
    reply = "<think>用户问培训时长，法规说72小时。</think>不得少于72小时"
    assert rouge_l_char(strip_think(reply), "不得少于72小时") == 1.0
