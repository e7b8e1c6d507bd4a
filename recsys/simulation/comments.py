"""Chinese comment templates and the vectorised choice of a template per comment.

Templates live in one flat array grouped by what drives them: general chat, price and coupon
questions (asked more by price-sensitive viewers), per-category questions, and attribute
questions ("小个子能穿吗", "敏感肌能用吗") that a viewer asks only about categories whose
products address their body or skin type. The attribute questions are the planted evidence a
profiler can recover ``body_type`` and ``skin_type`` from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys.simulation.catalog import BODY_TYPES, SKIN_TYPES

GENERAL = (
    "主播好美",
    "来了来了",
    "已拍",
    "上链接",
    "怎么买",
    "还有库存吗",
    "什么时候发货",
    "包邮吗",
    "能退吗",
    "讲得好清楚",
    "回放在哪看",
    "老粉来了",
    "支持主播",
    "好喜欢",
)
PRICE = (
    "多少钱",
    "有优惠券吗",
    "能便宜点吗",
    "优惠券怎么领",
    "有没有满减",
    "比旗舰店便宜吗",
    "价格再说一遍",
    "券还有吗",
)
CATEGORY_QUESTIONS: dict[str, tuple[str, ...]] = {
    "beauty": ("什么色号", "持妆多久", "会脱妆吗", "黄皮能用吗", "学生党适合吗"),
    "skincare": ("保质期多久", "孕妇能用吗", "多久见效", "白天能用吗", "有小样吗"),
    "womenswear": ("什么面料", "会起球吗", "尺码标准吗", "有其他颜色吗", "能机洗吗"),
    "menswear": ("什么面料", "会缩水吗", "尺码偏大吗", "有黑色吗", "能机洗吗"),
    "food": ("甜不甜", "保质期多久", "热量高吗", "孩子能吃吗", "辣不辣"),
    "baby": ("几个月宝宝能用", "安全吗", "有检测报告吗", "新生儿能用吗", "会红屁屁吗"),
    "digital": ("支持快充吗", "保修多久", "是正品吗", "和上一代比怎么样", "续航多久"),
    "home": ("尺寸多大", "好清洗吗", "有味道吗", "能放洗碗机吗", "包安装吗"),
    "sports": ("跑步能穿吗", "尺码偏大吗", "透气吗", "防滑吗", "适合新手吗"),
    "jewelry": ("是真金吗", "过敏吗", "有证书吗", "克重多少", "能刻字吗"),
}
# Keyed by attribute value; the neutral value (index 0) has no questions.
ATTRIBUTE_QUESTIONS: dict[str, tuple[str, ...]] = {
    "小个子": ("小个子能穿吗", "155穿多长", "小个子穿会拖地吗"),
    "大码": ("大码有吗", "微胖能穿吗", "140斤穿什么码"),
    "高个子": ("高个子穿会短吗", "175能穿吗", "有加长款吗"),
    "敏感肌": ("敏感肌能用吗", "会过敏吗", "成分温和吗"),
    "油皮": ("油皮适合吗", "会闷痘吗", "控油效果怎么样"),
    "干皮": ("干皮用会卡粉吗", "保湿够吗", "干皮冬天能用吗"),
    "混合皮": ("混油皮能用吗", "T区油两颊干适合吗"),
}

P_ATTRIBUTE = 0.45  # an affected viewer asks about their attribute this often
P_PRICE_BASE, P_PRICE_SENSITIVE = 0.05, 0.3  # price questions: base + slope in sensitivity
P_CATEGORY = 0.5  # of the remaining comments, category questions vs general chat


@dataclass(frozen=True)
class TemplateBook:
    """Templates of one world's categories; group g holds texts[offset[g]:offset[g] + size[g]]."""

    texts: np.ndarray  # (n_templates,) object
    offset: np.ndarray  # (n_groups,) int64
    size: np.ndarray  # (n_groups,) int64
    n_categories: int

    @classmethod
    def build(cls, categories: tuple[str, ...]) -> TemplateBook:
        groups = [GENERAL, PRICE] + [CATEGORY_QUESTIONS[c] for c in categories]
        groups += [ATTRIBUTE_QUESTIONS[v] for v in BODY_TYPES[1:] + SKIN_TYPES[1:]]
        size = np.array([len(g) for g in groups], dtype=np.int64)
        offset = np.concatenate([[0], np.cumsum(size)[:-1]])
        texts = np.array([t for g in groups for t in g], dtype=object)
        return cls(texts=texts, offset=offset, size=size, n_categories=len(categories))

    def attribute_group(self, kind: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Group of an attribute question; kind 1 = body, 2 = skin, value >= 1."""
        first = 2 + self.n_categories
        return np.where(kind == 1, first + value - 1, first + len(BODY_TYPES) - 1 + value - 1)

    def choose(
        self,
        rng: np.random.Generator,
        category: np.ndarray,
        attr_kind: np.ndarray,
        attr_value: np.ndarray,
        sensitivity: np.ndarray,
    ) -> np.ndarray:
        """One template index per comment.

        ``attr_kind`` is the category's attribute kind (0 none, 1 body, 2 skin) and
        ``attr_value`` the commenter's value of that attribute (0 = neutral).
        """
        n = len(category)
        u = rng.random((n, 3))
        group = np.where(u[:, 1] < P_CATEGORY, 2 + category, 0)
        price = u[:, 2] < P_PRICE_BASE + P_PRICE_SENSITIVE * sensitivity
        group = np.where(price, 1, group)
        asks_attr = (attr_kind > 0) & (attr_value > 0) & (u[:, 0] < P_ATTRIBUTE)
        group = np.where(asks_attr, self.attribute_group(attr_kind, attr_value), group)
        pick = np.floor(rng.random(n) * self.size[group]).astype(np.int64)
        return self.offset[group] + pick

    def attribute_template_mask(self) -> np.ndarray:
        """(n_templates,) True for attribute questions."""
        first = self.offset[2 + self.n_categories]
        return np.arange(len(self.texts)) >= first
