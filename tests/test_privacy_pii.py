"""PII scrubbing of comments: typed placeholders, hard negatives kept, and recall / precision
on a generated adversarial corpus (``tests/pii_corpus.py``)."""

from __future__ import annotations

import re

import pytest

from recsys.liveroom.events import from_records
from recsys.privacy import pii
from recsys.privacy.pii import find_pii, fold, scrub, scrub_comments
from tests.pii_corpus import generate, score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("电话138 1234 5678谢谢", "电话[PHONE]谢谢"),
        ("手机：一三八一二三四五六七八", "手机：[PHONE]"),
        ("call me +86-１３９-1234-5678", "call me [PHONE]"),
        ("13８🌸1234🌸5678", "[PHONE]"),
        ("号码 l38 O0l2 3456", "号码 [PHONE]"),
        ("有事打010-62345678", "有事打[PHONE]"),
        ("加我vx：abc_12345", "加我vx：[WECHAT]"),
        ("V信👉 wxid_kkqq2020 私聊", "V信👉 [WECHAT] 私聊"),
        ("扣扣号是 12345678", "扣扣号是 [QQ]"),
        ("邮箱 test.user＠qq．com", "邮箱 [EMAIL]"),
        ("发到 bob at foxmail dot com", "发到 [EMAIL]"),
        ("身份证11010519900307123X", "身份证[ID_CARD]"),
        ("寄到中山路88号5号楼3单元502室", "寄到中山路[ADDRESS]"),
        ("我住阳光小区3栋1201", "我住阳光小区[ADDRESS]"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder(text, expected):
    assert scrub(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "3号链接还有吗", "165cm 99元 12月25号发货", "尺码 150 155 160 165 170 都有吗",
        "满300减50", "今晚20:30开播", "订单号2024112712345678怎么还没发货", "3室2厅的房子放得下吗",
        "@lily123 快来看", "可以加vx吗", "qq音乐的歌", "双11还有这个价吗", "2号线地铁口有店吗",
        "11111111111", "快递单号 SF1234567890123 查不到",
    ],
)  # fmt: skip
def test_number_ish_comments_are_left_alone(text):
    assert find_pii(text) == []
    assert scrub(text) == text


def test_fold_keeps_positions_and_reads_scripts_as_digits():
    text = "１３８ 一二三四 ①②"
    assert len(fold(text)) == len(text)
    assert fold(text) == "138 1234 12"


def test_an_id_card_number_needs_its_check_digit_or_a_word_naming_it():
    assert scrub("订单 110105199003071235") == "订单 110105199003071235"  # wrong check digit
    assert scrub("身份证 110105199003071235") == "身份证 [ID_CARD]"


@pytest.mark.parametrize("seed", [0, 1])
def test_recall_and_precision_on_the_adversarial_corpus(seed):
    comments = generate(12000, seed=seed)
    figures = score(comments, find_pii)
    print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in figures.items()))  # fmt: skip
    assert min(figures["recall_by_kind"].values()) >= 0.97
    assert figures["comments"] >= 10000 and figures["planted"] >= 5000
    assert figures["recall"] >= 0.99
    assert figures["precision"] >= 0.99
    assert figures["kind_accuracy"] >= 0.97


def test_live_room_comments_are_scrubbed_before_the_clusterer_and_the_page():
    record = {"event_id": 1, "ts": 100, "session_id": 7, "user_id": 3, "event_type": "comment",
              "comment": "能便宜点吗 加我V信 👉 kk_8888 或 13912345678"}  # fmt: skip
    parsed = from_records([record])
    assert parsed.rejects == []
    assert parsed.columns.text.tolist() == ["能便宜点吗 加我V信 👉 [WECHAT] 或 [PHONE]"]


def test_scrub_comments_leaves_other_records_alone():
    plain = {"event_type": "enter", "user_id": 1}
    out = scrub_comments([plain, {"event_type": "comment", "comment": "电话13912345678"}])
    assert out[0] is plain and out[1]["comment"] == "电话[PHONE]"


def test_the_quick_skip_never_changes_what_is_found(monkeypatch):
    comments = generate(3000, seed=5)
    quick = [find_pii(c.text) for c in comments]
    monkeypatch.setattr(pii, "_MAYBE", re.compile(""))  # matches every text: no skip
    assert [find_pii(c.text) for c in comments] == quick
