"""A generated corpus of live-room comments with planted PII, for measuring the scrubber.

Half of the comments carry one or two pieces of PII written the way viewers and sellers write
them to get past a platform's filters: digits spaced, dashed or split by emoji, full-width
digits and letters, Chinese numerals (一三八, 幺, 壹叁), circled digits, look-alike letters
(O for 0, l for 1), +86 prefixes, ``＠`` / " at " / (at) / 。com e-mails, WeChat and QQ
ids behind homophones (威信, V信, 扣扣, 企鹅) and emoji arrows, ID-card numbers grouped in
blocks, house numbers in Chinese numerals. The other half are clean comments full of numbers
that are not PII: prices, sizes, heights and weights, dates and times, link numbers (3号链接),
order counts, order and tracking numbers, @-mentions, "3室2厅", lists of sizes.

Each comment knows its planted spans (start, end, kind) in its own text, so a detector is
scored entity by entity: a planted entity is found when detected spans cover all of its
letters and digits; a detected span is right when it overlaps a planted one.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field

CN = "零一二三四五六七八九"
CN_CAPITAL = "零壹贰叁肆伍陆柒捌玖"
FULL = {str(d): chr(0xFF10 + d) for d in range(10)}
CIRCLED = {str(d): chr(0x2460 + d - 1) for d in range(1, 10)}
LOOKALIKE = {"0": "O", "1": "l"}
EMOJI = ["🌸", "⭐", "❤", "🔥", "💰", "✨", "🍀", "👉", "~", "*", "|", "/", "·"]


@dataclass
class Comment:
    text: str
    spans: list[tuple[int, int, str]] = field(default_factory=list)


class _Builder:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[tuple[int, int, str]] = []
        self.at = 0

    def add(self, text: str, kind: str | None = None) -> _Builder:
        if kind:
            self.spans.append((self.at, self.at + len(text), kind))
        self.parts.append(text)
        self.at += len(text)
        return self

    def build(self) -> Comment:
        return Comment("".join(self.parts), self.spans)


def _mobile(rng: random.Random) -> str:
    prefix = rng.choice(["13", "15", "17", "18", "19", "14", "16"]) + str(rng.randrange(10))
    return prefix + "".join(str(rng.randrange(10)) for _ in range(8))


def _digit_style(rng: random.Random, digits: str) -> str:
    """The digits in one of the scripts people use to slip past filters."""
    style = rng.choices(
        ["ascii", "full", "cn", "cn_mixed", "capital", "circled", "yao", "lookalike"],
        [40, 14, 10, 12, 5, 4, 5, 3],
    )[0]
    if style == "ascii":
        return digits
    if style == "full":
        return "".join(FULL[d] if rng.random() < 0.8 else d for d in digits)
    if style == "cn":
        return "".join(rng.choice([CN[int(d)], "〇"]) if d == "0" else CN[int(d)] for d in digits)
    if style == "cn_mixed":
        return "".join(CN[int(d)] if rng.random() < 0.5 else d for d in digits)
    if style == "capital":
        return "".join(CN_CAPITAL[int(d)] if rng.random() < 0.7 else d for d in digits)
    if style == "circled":
        return "".join(CIRCLED.get(d, d) if rng.random() < 0.7 else d for d in digits)
    if style == "yao":
        return "".join("幺" if d == "1" else CN[int(d)] for d in digits)
    return "".join(LOOKALIKE[d] if d in LOOKALIKE and rng.random() < 0.5 else d for d in digits)


def _grouped(rng: random.Random, digits: str, groups: list[int]) -> str:
    sep = rng.choice([" ", "-", ".", "—", "\u3000", " - ", "  ", "_", rng.choice(EMOJI)])
    out, at = [], 0
    for g in groups:
        out.append(digits[at : at + g])
        at += g
    return sep.join(out)


def _spaced_digits(rng: random.Random, styled: str) -> str:
    layout = rng.choices(["none", "344", "each", "emoji", "434"], [40, 30, 12, 12, 6])[0]
    if layout == "none" or len(styled) != 11:
        return styled
    if layout == "344":
        return _grouped(rng, styled, [3, 4, 4])
    if layout == "434":
        return _grouped(rng, styled, [4, 3, 4])
    if layout == "each":
        return rng.choice([" ", "-", "."]).join(styled)
    return (
        "".join(ch + (rng.choice(EMOJI) if rng.random() < 0.35 else "") for ch in styled[:-1])
        + styled[-1]
    )


def phone(rng: random.Random) -> str:
    if rng.random() < 0.08:
        area = rng.choice(["010", "021", "020", "0755", "0571", "028", "0512"])
        local = str(rng.randrange(2, 10)) + "".join(str(rng.randrange(10)) for _ in range(7))
        sep = rng.choice(["-", " ", "—"])
        return rng.choice(
            [f"{area}{sep}{local}", f"({area}){local}", f"{area}-{local[:4]} {local[4:]}"]
        )
    text = _spaced_digits(rng, _digit_style(rng, _mobile(rng)))
    if rng.random() < 0.15:
        text = rng.choice(["+86", "+86 ", "86-", "0086 ", "(+86)", "+86-", "＋86 "]) + text
    return text


def _handle(rng: random.Random) -> str:
    letters = "abcdefghijklmnopqrstuvwxyz"
    head = "".join(rng.choice(letters) for _ in range(rng.randint(3, 9)))
    tail = "".join(rng.choice("0123456789") for _ in range(rng.randint(2, 6)))
    sep = rng.choice(["", "", "_", "-"])
    handle = rng.choice([head + sep + tail, head.capitalize() + tail, "wxid_" + head + tail])
    if rng.random() < 0.1:
        handle = "".join(chr(ord(c) + 0xFEE0) if c.isalnum() else c for c in handle)
    return handle


def wechat(rng: random.Random) -> tuple[str, str, str]:
    word = rng.choice(
        ["微信", "微信号", "vx", "VX", "Vx", "V信", "v信", "wx", "威信", "薇信", "加v", "+v",
         "加我", "加微", "卫星", "绿泡泡", "weixin", "WeChat", "vx号", "ｖｘ"]
    )  # fmt: skip
    join = rng.choice(["", " ", ":", "：", " : ", "是", "号是", "号:", " 👉 ", "➡", "~", "～"])
    if rng.random() < 0.8:
        return word + join, _handle(rng), "WECHAT"
    return word + join, phone(rng), "PHONE"  # a WeChat id that is a phone number


def qq(rng: random.Random) -> tuple[str, str]:
    word = rng.choice(
        ["QQ", "qq", "扣扣", "企鹅", "Q号", "QQ号", "qq号码", "扣扣号", "Q Q", "ＱＱ"]
    )
    join = rng.choice(["", " ", ":", "：", "是", " 是 ", "号", "👉"])
    number = str(rng.randrange(1, 10)) + "".join(
        str(rng.randrange(10)) for _ in range(rng.randint(4, 10))
    )
    if rng.random() < 0.3:
        number = _digit_style(rng, number)
    if rng.random() < 0.15:
        number = " ".join(number[i : i + 3] for i in range(0, len(number), 3))
    return word + join, number


def email(rng: random.Random) -> str:
    local = (
        _handle(rng).replace("wxid_", "")
        if rng.random() < 0.6
        else str(rng.randrange(10**5, 10**10))
    )
    domain = rng.choice(
        ["qq", "163", "126", "gmail", "foxmail", "sina", "outlook", "hotmail", "sohu", "company"]
    )
    tld = rng.choice(["com", "com", "com", "cn", "net", "com.cn"])
    at = rng.choice(["@", "@", "@", "＠", " at ", "(at)", "[at]", " @ ", "#"])
    dot = rng.choice([".", ".", ".", "．", " dot ", "点", "。", "(dot)"])
    return f"{local}{at}{domain}{dot}{tld.replace('.', dot)}"


def id_card(rng: random.Random) -> str:
    region = rng.choice(
        ["110105", "310104", "440305", "510107", "330106", "420102", "320583", "610113"]
    )
    birth = f"{rng.randint(1955, 2006)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = region + birth + f"{rng.randrange(1000):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    if check == "X" and rng.random() < 0.3:
        check = "x"
    number = body + check
    layout = rng.choice(["plain", "plain", "blocks", "full"])
    if layout == "blocks":
        return f"{number[:6]} {number[6:14]} {number[14:]}"
    if layout == "full":
        return "".join(FULL.get(c, c) for c in number)
    return number


def _cn_number(n: int) -> str:
    if n < 10:
        return CN[n]
    tens, ones = divmod(n, 10)
    return ("" if tens == 1 else CN[tens]) + "十" + (CN[ones] if ones else "")


_ROADS = (
    "中山路 人民路 解放大道 南京东路 长安街 建设路 学府路 淮海中路 幸福里 朝阳北路 滨江大道 "
    "文一西路 解放街 和平巷 杨家村"
).split()


def address(rng: random.Random) -> tuple[str, str]:
    """(the place name kept, the house number planted as PII)."""
    road = rng.choice(_ROADS)
    estate = rng.choice(
        ["阳光小区", "碧桂园", "万科城", "华府花园", "翠苑", "金地公寓", "和谐家园"]
    )
    n = rng.randint(1, 999)
    number = _cn_number(n) if n < 100 and rng.random() < 0.15 else str(n)
    form = rng.choice(["road", "road_bld", "estate", "estate_room", "road_full"])
    bld, unit, room = (
        rng.randint(1, 30),
        rng.randint(1, 6),
        rng.randint(1, 32) * 100 + rng.randint(1, 4),
    )
    if form == "road":
        return road, f"{number}号"
    if form == "road_bld":
        return road, f"{number}号{bld}栋{room}"
    if form == "estate":
        return estate, f"{bld}栋{unit}单元{room}室"
    if form == "estate_room":
        return estate, f"{bld}号楼{unit}单元{room}"
    return road, f"{number}号院{bld}号楼 {unit}单元 {room}室"


_CHATTER = ["", ""] + (
    "主播好 这个颜色好看 宝宝们冲 哈哈哈 已拍 姐妹们 真的假的 求回复 急 私聊 老粉了 👍👍 "
    "在吗 有点贵"
).split()
_LEAD_PHONE = ["", ""] + (
    "电话 手机 手机号 打我电话 联系方式 联系 tel Tel: call我 我的号 号码 有事打 小号"
).split()
_LEAD_EMAIL = ["邮箱", "发我邮箱", "email", "邮件发到", "Email:", "简历投", ""]
_LEAD_ID = ["身份证", "身份证号", "证件号", "我身份证是", "实名", "", ""]
_LEAD_ADDR = ["寄到", "地址", "收货地址", "送到", "我住", "发货到", "快递放"]
_TAIL = ["", "", "谢谢", "谢谢主播", "！", "~", "😊", "有货吗", "麻烦了", "，到了联系", "好的"]


def _positive(rng: random.Random, b: _Builder) -> None:
    kind = rng.choices(["PHONE", "WECHAT", "QQ", "EMAIL", "ID_CARD", "ADDRESS"],
                       [30, 22, 12, 12, 10, 14])[0]  # fmt: skip
    if kind == "PHONE":
        b.add(rng.choice(_LEAD_PHONE) + rng.choice(["", " ", ":", "：", "是"])).add(
            phone(rng), "PHONE"
        )
    elif kind == "WECHAT":
        lead, ident, label = wechat(rng)
        b.add(rng.choice(["", "想要的", "私聊", "有意向"]) + lead).add(ident, label)
    elif kind == "QQ":
        lead, number = qq(rng)
        b.add(rng.choice(["", "加我", "联系"]) + lead).add(number, "QQ")
    elif kind == "EMAIL":
        b.add(rng.choice(_LEAD_EMAIL) + rng.choice(["", " ", ":", "："])).add(email(rng), "EMAIL")
    elif kind == "ID_CARD":
        b.add(rng.choice(_LEAD_ID) + rng.choice(["", " ", ":", "："])).add(id_card(rng), "ID_CARD")
    else:
        city = rng.choice(["", "北京", "上海市", "杭州西湖区", "广州天河", "成都", ""])
        place, number = address(rng)
        b.add(rng.choice(_LEAD_ADDR) + city + place).add(number, "ADDRESS")


_NEGATIVES = (
    "{p}元能便宜点吗|¥{p}还包邮吗|券后{p}块|到手价 {p}|满{big}减{small}|"
    "原价{big}现价{p}|身高{h}cm体重{w}斤穿什么码|{h}能穿吗|我{h} {w}斤 M还是L|"
    "腰围{small}|{shoe}码有吗|尺码 {sizes} 都有吗|{m}月{d}号发货吗|"
    "{m}月{d}日能到吗|双11还有这个价吗|{y}-{m2}-{d2}买的|今晚{hh}点开播|"
    "{hh}:{mm}抢|{n}号链接|{n}号链接还有吗|{n}号宝贝多少钱|要{n}号色|"
    "已下单{small}单|买了{n}件|第{n}件半价吗|库存还剩 {big} 件|{big}人在看|"
    "点赞过{big}了|订单号{order}怎么还没发货|快递单号 SF{track} 查不到|"
    "YT{track}到哪了|@{name} 快来看|@{name}{n} 你要的|"
    "{n}室{small2}厅的房子放得下吗|{n}号线地铁口有店吗|{ml}ml的多少钱|{n}瓶装的划算|"
    "第{small}期了|{big}{big}|666666|88888888|11111111111|"
    "1234567|评分{n}.{n}分|{pct}%的棉|保质期{small}个月|{y}年的款吗|"
    "{y}年{m}月生产的|加购物车了|可以加vx吗|有微信群吗|qq音乐的歌|扣扣 {n}{n}{n}|"
    "微信支付可以吗|加{n}件|加{small}元换购|工号{n}{small}为您服务|前{big}名送礼|"
    "{w}斤的小姐姐|{price_list}|看{n}号 {n}号 {n}号|返{small}个点|{n}折吗|"
    "我在{small}楼|5G手机多少钱|iPhone{small2}|V{n}会员"
).split("|")


def _negative(rng: random.Random, b: _Builder) -> None:
    r = rng.randint
    price = rng.choice([str(r(9, 999)), f"{r(9, 999)}.9", f"{r(1, 99)}.{r(10, 99)}"])
    values = {
        "p": price, "big": str(r(100, 99999)), "small": str(r(1, 60)), "small2": str(r(1, 4)),
        "h": str(r(145, 185)), "w": str(r(80, 180)), "shoe": str(r(34, 44)),
        "sizes": " ".join(str(s) for s in range(rng.choice([150, 155, 160]), 181, 5)),
        "m": str(r(1, 12)), "d": str(r(1, 31)), "y": str(r(2015, 2026)),
        "m2": f"{r(1, 12):02d}", "d2": f"{r(1, 28):02d}",
        "hh": str(r(0, 23)), "mm": f"{r(0, 59):02d}", "n": str(r(1, 9)),
        "order": str(r(10**15, 10**19 - 1)), "track": str(r(10**11, 10**14)),
        "name": rng.choice(["小美", "lily", "Anna", "主播", "王姐", "kk"]),
        "ml": str(rng.choice([30, 50, 100, 200, 500])), "pct": str(r(5, 100)),
        "price_list": " ".join(str(r(19, 399)) for _ in range(r(3, 6))),
    }  # fmt: skip
    b.add(rng.choice(_NEGATIVES).format(**values))


def _fullwidth_digits(rng: random.Random, text: str) -> str:
    return "".join(FULL.get(c, c) if rng.random() < 0.5 else c for c in text)


def generate(n: int = 12000, seed: int = 0) -> list[Comment]:
    """``n`` comments: half with 1-2 planted PII entities, half clean number-ish ones (whose
    digits are full-width in a fifth of them, as the PII's are)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        b = _Builder().add(rng.choice(_CHATTER) + rng.choice(["", " ", "，"]))
        if i % 2 == 0:
            _positive(rng, b)
            if rng.random() < 0.2:
                b.add(rng.choice(["，或者", " 或 ", "，备用", "/"]))
                _positive(rng, b)
        else:
            _negative(rng, b)
            if rng.random() < 0.2:
                b.parts[-1] = _fullwidth_digits(rng, b.parts[-1])
        out.append(b.add(rng.choice(_TAIL)).build())
    return out


def score(comments: list[Comment], find) -> dict:
    """Entity-level recall and precision of ``find(text) -> spans`` (objects with start, end,
    kind) against the planted spans, how often the kind is right too, and recall per kind."""
    planted, covered, typed = Counter(), Counter(), 0
    found = correct = 0
    for c in comments:
        spans = find(c.text)
        inside = {i for s in spans for i in range(s.start, s.end)}
        for start, end, kind in c.spans:
            planted[kind] += 1
            if all(i in inside for i in range(start, end) if c.text[i].isalnum()):
                covered[kind] += 1
                typed += any(s.kind == kind and s.start < end and start < s.end for s in spans)
        found += len(spans)
        correct += sum(any(s.start < e and b < s.end for b, e, _ in c.spans) for s in spans)
    n_planted, n_covered = sum(planted.values()), sum(covered.values())
    return {
        "comments": len(comments),
        "planted": n_planted,
        "detected": found,
        "recall": n_covered / max(n_planted, 1),
        "precision": correct / max(found, 1),
        "kind_accuracy": typed / max(n_covered, 1),
        "recall_by_kind": {k: round(covered[k] / planted[k], 4) for k in sorted(planted)},
    }


def misses(comments: list[Comment], find) -> tuple[list[str], list[str]]:
    """Texts with a planted entity not covered, and texts with a detected span that is wrong."""
    missed, wrong = [], []
    for c in comments:
        spans = find(c.text)
        inside = {i for s in spans for i in range(s.start, s.end)}
        if any(
            not all(i in inside for i in range(b, e) if c.text[i].isalnum()) for b, e, _ in c.spans
        ):
            missed.append(c.text)
        if any(not any(s.start < e and b < s.end for b, e, _ in c.spans) for s in spans):
            wrong.append(c.text)
    return missed, wrong
