"""Viewer questions with planted intents: paraphrases built from parts, and typos.

A live room hears the same question asked many ways ("小个子能穿吗", "155的姐妹穿会长吗",
"个子矮穿着好看吗"). Each intent here is a set of cue phrases (what the question is about) and
frames (how it is asked); a question is a frame filled with a cue, sometimes behind an opener
("主播", "请问") and with a typo: a homophone in place of a character (吗 -> 嘛, 码 -> 马),
a dropped or doubled character, or a stray "??". The intent of every rendered question is its
truth label; chat lines carry the label ``-1`` (not a question).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTENTS: tuple[str, ...] = (
    "body_fit",
    "skin_fit",
    "price",
    "size",
    "shipping",
    "authenticity",
)
CHAT_LABEL = -1

# intent -> (cues, frames); a frame holds "{}" where the cue goes.
_BANK: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "body_fit": (
        ("小个子", "个子矮", "155的", "150的", "微胖", "梨形身材", "胯宽的", "小个子姐妹"),
        ("{}能穿吗", "{}穿会长吗", "{}穿着好看吗", "{}适合穿吗", "{}穿起来显胖吗", "{}可以穿吗"),
    ),
    "skin_fit": (
        ("敏感肌", "油皮", "干皮", "混油皮", "痘痘肌", "敏感皮肤"),
        ("{}能用吗", "{}用会过敏吗", "{}适合用吗", "{}用了会闷痘吗", "{}可以用吗", "{}用着刺激吗"),
    ),
    "price": (
        ("多少钱", "什么价格", "到手价多少钱", "价格多少", "几块钱", "现在多少钱"),
        ("{}", "这个{}", "{}呀", "今天{}", "链接里{}", "{}啊"),
    ),
    "size": (
        ("尺码", "码数", "什么码", "xl码", "多大的码", "尺码表"),
        ("{}标准吗", "{}偏大还是偏小", "穿{}选哪个合适", "{}怎么选", "{}准不准", "有{}吗"),
    ),
    "shipping": (
        ("发货", "快递", "包邮", "几天发货", "顺丰快递", "发什么快递"),
        ("什么时候{}", "{}吗", "{}几天能到", "{}快吗", "今天下单{}吗", "{}到新疆吗"),
    ),
    "authenticity": (
        ("正品", "真的假的", "假货", "官方正品", "专柜正品", "正品有保障"),
        ("是{}吗", "保证{}吗", "会是{}吗", "{}能验吗", "{}有防伪吗", "确定是{}吗"),
    ),
}
CHAT = (
    "主播好美",
    "来了来了",
    "已拍",
    "上链接",
    "讲得好清楚",
    "老粉来了",
    "支持主播",
    "好喜欢",
    "哈哈哈哈",
    "666",
    "主播辛苦了",
    "刚来",
    "好看",
    "冲冲冲",
    "已关注",
    "抢到了",
)
OPENERS = ("", "", "", "主播", "请问", "主播请问", "姐妹们", "想问下")
HOMOPHONES: dict[str, str] = {
    "吗": "嘛",
    "码": "马",
    "穿": "川",
    "钱": "前",
    "货": "获",
    "正": "证",
    "适": "试",
    "用": "拥",
    "敏": "民",
    "价": "架",
    "快": "块",
    "包": "宝",
}
P_TYPO = 0.25  # share of questions with one typo


@dataclass(frozen=True)
class RenderedComments:
    text: np.ndarray  # (n,) object
    label: np.ndarray  # (n,) int64 intent index, CHAT_LABEL for chat


def render(rng: np.random.Generator, label: np.ndarray) -> RenderedComments:
    """One text per label: a paraphrased question of intent ``label`` or a chat line (-1)."""
    label = np.asarray(label, dtype=np.int64)
    out = np.empty(len(label), dtype=object)
    u = rng.random((len(label), 6))
    for i, intent in enumerate(label.tolist()):
        if intent == CHAT_LABEL:
            out[i] = CHAT[int(u[i, 0] * len(CHAT))]
            continue
        cues, frames = _BANK[INTENTS[intent]]
        text = frames[int(u[i, 0] * len(frames))].format(cues[int(u[i, 1] * len(cues))])
        text = OPENERS[int(u[i, 2] * len(OPENERS))] + text
        out[i] = _typo(text, u[i, 4], u[i, 5]) if u[i, 3] < P_TYPO else text
    return RenderedComments(text=out, label=label)


def _typo(text: str, where: float, kind: float) -> str:
    """One slip of the keyboard: homophone, dropped or doubled character, or "??"."""
    swappable = [i for i, c in enumerate(text) if c in HOMOPHONES]
    if kind < 0.5 and swappable:
        i = swappable[int(where * len(swappable))]
        return text[:i] + HOMOPHONES[text[i]] + text[i + 1 :]
    i = int(where * len(text))
    if kind < 0.7 and len(text) > 3:
        return text[:i] + text[i + 1 :]
    if kind < 0.85:
        return text[: i + 1] + text[i] + text[i + 1 :]
    return text + "??"


def intent_index(name: str) -> int:
    if name not in INTENTS:
        raise ValueError(f"unknown question intent {name!r}; choose from {INTENTS}")
    return INTENTS.index(name)
