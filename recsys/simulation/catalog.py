"""Fixed vocabularies of the synthetic world: categories, demographics, attributes, brands.

Category names are ASCII slugs because they become column names (``interest_<category>``) and
table values; everything a viewer reads (keywords, brands, comments) is Chinese. The affinity
tables tie demographics to interests: a user's Dirichlet prior over categories is the product of
the gender and age-band affinities of each category.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Category:
    name: str  # slug used in tables and truth column names
    label: str  # Chinese display name
    median_price: float  # yuan, mid tier
    gender_affinity: tuple[float, float]  # (F, M)
    age_affinity: tuple[float, float, float, float]  # per AGE_BANDS
    keywords: tuple[str, ...]
    attribute: str | None  # "body" or "skin": the user attribute its products and questions address


CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category(
            "beauty",
            "美妆",
            120.0,
            (1.0, 0.1),
            (1.3, 1.2, 0.8, 0.5),
            ("口红", "粉底", "眼影", "遮瑕", "持妆", "哑光", "显白", "礼盒", "腮红", "定妆"),
            "skin",
        ),
        Category(
            "skincare",
            "护肤",
            180.0,
            (1.0, 0.25),
            (1.0, 1.2, 1.1, 0.8),
            ("保湿", "补水", "美白", "抗老", "精华", "面霜", "修护", "防晒", "面膜", "温和"),
            "skin",
        ),
        Category(
            "womenswear",
            "女装",
            150.0,
            (1.0, 0.05),
            (1.2, 1.1, 0.9, 0.7),
            ("连衣裙", "显瘦", "通勤", "针织", "碎花", "高腰", "阔腿裤", "外套", "纯棉", "法式"),
            "body",
        ),
        Category(
            "menswear",
            "男装",
            160.0,
            (0.15, 1.0),
            (1.1, 1.0, 0.9, 0.8),
            ("夹克", "衬衫", "休闲裤", "商务", "纯棉", "宽松", "卫衣", "冰丝", "polo", "修身"),
            "body",
        ),
        Category(
            "food",
            "食品",
            45.0,
            (0.6, 0.6),
            (0.9, 0.9, 1.1, 1.4),
            ("零食", "坚果", "低糖", "螺蛳粉", "牛肉干", "礼盒", "早餐", "代餐", "茶叶", "特产"),
            None,
        ),
        Category(
            "baby",
            "母婴",
            90.0,
            (0.6, 0.15),
            (0.2, 1.6, 1.0, 0.4),
            ("纸尿裤", "奶粉", "辅食", "婴儿", "湿巾", "安全", "儿童", "玩具", "宝宝", "孕妇"),
            None,
        ),
        Category(
            "digital",
            "数码",
            600.0,
            (0.25, 1.0),
            (1.4, 1.1, 0.8, 0.5),
            ("耳机", "快充", "手机", "平板", "续航", "蓝牙", "降噪", "充电宝", "智能", "手表"),
            None,
        ),
        Category(
            "home",
            "家居",
            120.0,
            (0.5, 0.35),
            (0.5, 0.9, 1.2, 1.4),
            ("收纳", "四件套", "厨具", "清洁", "香薰", "床垫", "锅", "拖把", "家纺", "北欧"),
            None,
        ),
        Category(
            "sports",
            "运动",
            200.0,
            (0.3, 0.8),
            (1.3, 1.1, 0.8, 0.6),
            ("跑鞋", "瑜伽", "速干", "健身", "透气", "户外", "球鞋", "骑行", "冲锋衣", "运动裤"),
            "body",
        ),
        Category(
            "jewelry",
            "珠宝",
            800.0,
            (0.4, 0.1),
            (0.6, 1.0, 1.2, 1.2),
            ("黄金", "足金", "项链", "手镯", "珍珠", "银饰", "耳钉", "翡翠", "钻石", "转运珠"),
            None,
        ),
    )
}
CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)

AGE_BANDS = ("18-24", "25-34", "35-44", "45+")
AGE_P = (0.25, 0.35, 0.25, 0.15)
AGE_POWER = (0.7, 1.1, 1.25, 1.0)  # purchasing-power multiplier
GENDERS = ("F", "M")
GENDER_P = (0.65, 0.35)
REGIONS = ("华东", "华南", "华北", "华中", "西南", "西北", "东北")
REGION_P = (0.27, 0.2, 0.16, 0.13, 0.11, 0.06, 0.07)
REGION_POWER = (1.3, 1.2, 1.1, 0.9, 0.85, 0.8, 0.85)
REGION_DOMESTIC = (0.0, 0.0, 0.05, 0.1, 0.1, 0.15, 0.1)  # shift towards domestic brands
# Regional taste: multipliers on the interest prior (categories not named keep 1).
REGION_AFFINITY: dict[str, dict[str, float]] = {
    "华东": {"skincare": 1.2, "jewelry": 1.3},
    "华南": {"beauty": 1.2, "digital": 1.3},
    "华北": {"sports": 1.3, "menswear": 1.1},
    "华中": {"baby": 1.2, "home": 1.2},
    "西南": {"food": 1.6},
    "西北": {"food": 1.3, "home": 1.3},
    "东北": {"food": 1.3, "jewelry": 1.2},
}

# Index 0 is the neutral value: nobody asks about it and no product is tagged with it.
BODY_TYPES = ("标准", "小个子", "大码", "高个子")
BODY_P = (0.55, 0.2, 0.15, 0.1)
SKIN_TYPES = ("中性皮", "敏感肌", "油皮", "干皮", "混合皮")
SKIN_P = (0.4, 0.2, 0.15, 0.15, 0.1)
ATTRIBUTE_VALUES = {"body": BODY_TYPES, "skin": SKIN_TYPES}

PRICE_TIERS = ("平价", "中端", "高端")
TIER_P = (0.35, 0.45, 0.2)
TIER_PRICE = (0.55, 1.0, 1.9)
TIER_IMPORTED = (0.1, 0.25, 0.5)  # share of imported products per tier

# Daily activity components over local hours (centre, spread); a user mixes them.
HOUR_STYLES = ("daytime", "lunch", "evening", "late_night")
HOUR_STYLE_SHAPE = ((10.0, 2.0), (12.5, 1.0), (20.5, 1.5), (23.5, 1.5))
HOUR_STYLE_ALPHA = (0.4, 0.6, 1.2, 0.5)

# Live sessions start on local hours 8..23; prime time dominates.
START_HOURS = np.arange(8, 24)
START_HOUR_P = np.array([1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 5, 5, 4, 3, 2], dtype=float)
DURATIONS_H = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
DURATION_P = (0.1, 0.15, 0.3, 0.15, 0.2, 0.1)

DOMESTIC_SYLLABLES = tuple("花雪青瑞安云锦悦素初植润禾朗星木")
IMPORTED_HEADS = ("Lu", "Ve", "Ma", "Ri", "So", "Ka", "El", "No", "Ar", "Be")
IMPORTED_TAILS = ("mie", "ra", "lis", "ton", "va", "xa", "den", "ssa")


def hour_profile_components() -> np.ndarray:
    """(n_styles, 24) circular bell curves over local hours, each summing to 1."""
    hours = np.arange(24, dtype=float)
    out = np.empty((len(HOUR_STYLE_SHAPE), 24))
    for i, (centre, spread) in enumerate(HOUR_STYLE_SHAPE):
        dist = np.abs(hours - centre)
        dist = np.minimum(dist, 24.0 - dist)
        out[i] = np.exp(-0.5 * (dist / spread) ** 2)
    return out / out.sum(axis=1, keepdims=True)


def region_affinity(categories: tuple[str, ...]) -> np.ndarray:
    """(n_regions, C) interest-prior multipliers."""
    return np.array([[REGION_AFFINITY[r].get(c, 1.0) for c in categories] for r in REGIONS])


def brand_names(rng: np.random.Generator, n: int, imported: bool) -> list[str]:
    """``n`` distinct brand names: two Chinese syllables, or a Latin-looking word."""
    heads, tails = (
        (IMPORTED_HEADS, IMPORTED_TAILS) if imported else (DOMESTIC_SYLLABLES, DOMESTIC_SYLLABLES)
    )
    picks = rng.choice(len(heads) * len(tails), size=n, replace=False)
    return [heads[p // len(tails)] + tails[p % len(tails)] for p in picks]
