"""PII in free text (viewer comments): find it and replace it with typed placeholders.

``scrub(text)`` returns the text with every span found replaced by ``[PHONE]``, ``[WECHAT]``,
``[QQ]``, ``[EMAIL]``, ``[ID_CARD]`` or ``[ADDRESS]``; ``find_pii(text)`` returns the spans.

Viewers who want to be reached off-platform write their contacts so that filters miss them, so
detection runs on a *folded* copy of the text of the same length: each character is mapped to
its NFKC form when that is one character (full-width digits and letters, ``＠``, circled digits)
and Chinese numerals to digits (一三八, 壹叁捌, 幺 for 1, 〇 and 零 for 0), then lower-cased.
Digits of a number may be split by up to three non-word characters (spaces, dashes, dots,
emoji, keycap marks), never by letters or Chinese characters, and a number must not run on
into more digits (a list of sizes ``150 155 160 165`` is not a phone number). Spans found in
the folded copy are cut from the original text, position for position.

What each kind needs, so that prices (99元), sizes (165cm), dates, times, link numbers (3号链接)
and order counts are left alone:

- ``PHONE``: a Chinese mobile number (1[3-9] and nine digits, optionally +86 / 0086 first) or
  a landline with its area code (0 and 2-3 digits, a separator, 7-8 digits);
- ``ID_CARD``: 18 characters (17 digits and a digit or X) with a plausible birth date that
  pass the ISO 7064 check digit, or follow a word naming the card (身份证, 证件号);
- ``EMAIL``: local part, an at sign (@, ＠, " at ", (at), [at]) and a dotted domain
  (". ", " dot ", 点);
- ``WECHAT`` / ``QQ``: an id right after a word naming the app (微信, vx, V信, 威信, wx, 加我,
  QQ, 扣扣, 企鹅 ...), with an optional "号是:" in between;
- ``ADDRESS``: a house number after a road (中山路88号, 88弄), or building / unit / room
  numbers (5号楼3单元502室, 3栋1201).

No pattern set is complete: the figures on a generated adversarial corpus are in
``benchmarks/results/privacy_pii.md``.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

KINDS = ("ID_CARD", "EMAIL", "WECHAT", "QQ", "PHONE", "ADDRESS")  # on equal overlaps, first wins

_CN_DIGITS = dict(zip("零〇一二三四五六七八九", "00123456789", strict=True))
_CN_DIGITS.update(zip("壹贰叁肆伍陆柒捌玖幺两", "12345678912", strict=True))
_FOLD_CACHE: dict[str, str] = {}  # one entry per character ever seen: bounded by Unicode

_SEP = r"[\W_]{0,3}"  # between two digits of one number: punctuation, spaces, emoji
_NO_DIGIT_BEFORE = r"(?<![0-9])(?<![0-9][\s\-.])"  # other marks end a number
_NO_DIGIT_AFTER = r"(?![\s\-.]?[0-9])"


_MOBILE = (
    rf"{_NO_DIGIT_BEFORE}(?:(?:(?:\+|00)[\s\-]?)?8{_SEP}6{_SEP})?"
    rf"1{_SEP}[3-9](?:{_SEP}[0-9]){{9}}{_NO_DIGIT_AFTER}"
)
_LANDLINE = (
    rf"{_NO_DIGIT_BEFORE}0[1-9][0-9]{{1,2}}[\s\-—)）]{{1,2}}"  # area code
    rf"[2-9](?:\s?[0-9]){{6,7}}{_NO_DIGIT_AFTER}"
)
_ID_CARD = (
    rf"{_NO_DIGIT_BEFORE}[1-8](?:{_SEP}[0-9]){{5}}{_SEP}(?:1{_SEP}9|2{_SEP}0)(?:{_SEP}[0-9]){{2}}"
    rf"{_SEP}(?:0{_SEP}[1-9]|1{_SEP}[0-2]){_SEP}(?:0{_SEP}[1-9]|[12]{_SEP}[0-9]|3{_SEP}[01])"
    rf"(?:{_SEP}[0-9]){{3}}{_SEP}[0-9x]{_NO_DIGIT_AFTER}(?![a-z])"
)
_ID_WORD = re.compile(r"(身份证|证件|身份号|id ?card|sfz)[^0-9]{0,6}$")
_AT = r"\s*(?:@|#|\(at\)|\[at\]|\{at\}|\bat\b|艾特)\s*"
_DOT = r"\s*(?:\.|。|\(dot\)|\[dot\]|\bdot\b|点)\s*"
_EMAIL = (
    rf"(?<![a-z0-9._%+\-])[a-z0-9][a-z0-9._%+\-]*{_AT}"  # local part, at sign
    rf"[a-z0-9][a-z0-9\-]*(?:{_DOT}[a-z0-9\-]+)*{_DOT}[a-z]{{2,6}}(?![a-z0-9])"  # domain
)
_WECHAT_WORD = (
    r"(?:微信|威信|薇信|徽信|维信|危信|v信|vx|v x|wx|weixin|wechat|we chat|卫星|绿泡泡|"
    r"加v|\+v|加微|私微|加我|加|wxid)"
)
_QQ_WORD = r"(?:qq|q q|扣扣|抠抠|企鹅|q号|球球|口口)"
_JOIN = r"(?:[^\w]|号码|号|是|为|id(?=[\W_]))*"  # "号是:", arrows and emoji
_HANDLE = r"(?!qq[0-9])[a-z_][a-z0-9_\-]{4,19}(?![a-z0-9_\-])"
_NUMBER_ID = rf"[1-9](?:{_SEP}[0-9]){{4,11}}{_NO_DIGIT_AFTER}"
_WECHAT = rf"{_WECHAT_WORD}{_JOIN}(?P<id>wxid_[a-z0-9_]{{4,20}}|{_NUMBER_ID}|{_HANDLE})"
_QQ = rf"{_QQ_WORD}{_JOIN}(?P<id>{_NUMBER_ID})"
_ROAD = r"(?:路|街|大道|巷|胡同|弄|里|村|镇|小区|花园|公寓|苑|庄)"
_NOT_A_LINK = r"(?!链接|宝贝|色|款|商品|产品|发货|到货|上架|开播|直播)"  # 3号链接 is no address
_STRONG = r"[0-9]{1,4}\s*(?:号楼|栋|幢|号院|单元)|[0-9]{3,5}\s*(?:室|户)"
_WEAK = r"[0-9]{1,5}\s*(?:室|户|层|楼|号)"
_MORE = rf"(?:\s*(?:{_STRONG}|{_WEAK}))*(?:\s*[0-9]{{3,5}}(?![0-9]))?"  # unit, room, bare 1201
_ROAD_HOUSE = (
    rf"{_ROAD}\s*(?P<id>[0-9十百]{{1,6}}(?:[\-之][0-9]{{1,4}})?\s*"
    rf"(?:号院|号楼|号|弄|栋|幢|座){_NOT_A_LINK}{_MORE})"
)
_BUILDING = rf"(?<![0-9])(?:{_STRONG}){_MORE}"


@dataclass(frozen=True)
class Span:
    start: int
    end: int  # exclusive
    kind: str

    def overlaps(self, other: Span) -> bool:
        return self.start < other.end and other.start < self.end


def _fold_char(ch: str) -> str:
    folded = _FOLD_CACHE.get(ch)
    if folded is None:
        norm = unicodedata.normalize("NFKC", ch)
        folded = norm.lower() if len(norm) == 1 else ch.lower()[:1] or ch
        folded = _CN_DIGITS.get(folded, folded)
        _FOLD_CACHE[ch] = folded
    return folded


def fold(text: str) -> str:
    """The text as detection reads it: same length, one folded character per character."""
    if text.isascii():
        return text.lower()
    return "".join(_fold_char(ch) for ch in text)


_PATTERNS = (
    ("PHONE", re.compile(f"{_MOBILE}|{_LANDLINE}")),
    ("ID_CARD", re.compile(_ID_CARD)),
    ("EMAIL", re.compile(_EMAIL)),
    ("WECHAT", re.compile(_WECHAT)),
    ("QQ", re.compile(_QQ)),
    ("ADDRESS", re.compile(_ROAD_HOUSE)),
    ("ADDRESS", re.compile(_BUILDING)),
)
_IS_MOBILE = re.compile(_MOBILE)
# Every pattern needs one of these in the folded text: a digit (Chinese numerals fold to
# digits), 十 / 百 of a house number, an at sign or word, or a word naming WeChat or QQ.
_MAYBE = re.compile(rf"[0-9@#十百]|at|dot|{_WECHAT_WORD}|{_QQ_WORD}")
_LOOKALIKES = str.maketrans("oil", "011")
_WORD = re.compile(r"[a-z0-9]*[oil][a-z0-9]*")
_NEAR_DIGIT = re.compile(
    r"[oil](?=[\W_]{0,3}[0-9])|(?<=[0-9])[oil]|(?<=[0-9][\W_])[oil]|(?<=[0-9][\W_]{2})[oil]"
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def _id_checksum_ok(chars: str) -> bool:
    digits = [c for c in chars if c.isdigit() or c == "x"]
    if len(digits) != 18 or "x" in digits[:17]:
        return False
    total = sum(int(d) * w for d, w in zip(digits[:17], _ID_WEIGHTS, strict=True))
    return "10x98765432"[total % 11] == digits[17]


def _candidates(folded: str) -> list[Span]:
    found = []
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(folded):
            start, end = m.span("id") if "id" in pattern.groupindex else m.span()
            if kind == "ID_CARD" and not (
                _id_checksum_ok(m.group()) or _ID_WORD.search(folded[max(0, start - 12) : start])
            ):
                continue
            if kind == "WECHAT" and _IS_MOBILE.fullmatch(folded, start, end):
                kind = "PHONE"  # a mobile number given as a contact id is a phone number
            found.append(Span(start, end, kind))
    return found


def _lookalikes(folded: str) -> list[Span]:
    """Numbers written with letters for digits (O for 0, l and i for 1): inside a word that
    also holds a digit the letters are read as digits, and a number found so counts when at
    least five of its characters are real digits, so words never turn into numbers."""
    swapped = _NEAR_DIGIT.sub(lambda m: m.group().translate(_LOOKALIKES), folded)
    swapped = _WORD.sub(_swap_word, swapped)
    if swapped == folded:
        return []
    return [
        s
        for s in _candidates(swapped)
        if s.kind in ("PHONE", "QQ", "WECHAT")
        and sum(c.isdigit() for c in folded[s.start : s.end]) >= 5
    ]


def _swap_word(m: re.Match) -> str:
    word = m.group()
    return word.translate(_LOOKALIKES) if any(c.isdigit() for c in word) else word


def find_pii(text: str) -> list[Span]:
    """Non-overlapping PII spans of ``text`` in order; on overlaps the longest wins (an ID card
    holds a phone-like run, an e-mail a QQ number, a WeChat id a number), then the kind
    earlier in ``KINDS``. Address parts
    found apart (road number, building, unit, room) are joined into one span."""
    folded = fold(text)
    if not _MAYBE.search(folded):
        return []  # most comments: no digit, at sign or contact word, nothing to look for
    found = _candidates(folded) + _lookalikes(folded)
    chosen: list[Span] = []
    for span in sorted(found, key=lambda s: (s.start - s.end, KINDS.index(s.kind), s.start)):
        if span.kind != "ADDRESS" and not any(span.overlaps(c) for c in chosen):
            chosen.append(span)
    places = [s for s in found if s.kind == "ADDRESS" and not any(s.overlaps(c) for c in chosen)]
    return _merge_addresses(sorted(chosen + places, key=lambda s: (s.start, s.end)), folded)


def _merge_addresses(spans: list[Span], folded: str) -> list[Span]:
    """Address spans that overlap, or lie apart by at most two spaces or marks, become one."""
    out: list[Span] = []
    for span in spans:
        prev = out[-1] if out else None
        near = prev is not None and (
            span.start <= prev.end or re.fullmatch(r"[\W_]{0,2}", folded[prev.end : span.start])
        )
        if near and prev.kind == span.kind == "ADDRESS":
            out[-1] = Span(prev.start, max(prev.end, span.end), "ADDRESS")
        else:
            out.append(span)
    return out


def scrub(text: str) -> str:
    """``text`` with each PII span replaced by its placeholder (``[PHONE]`` ...)."""
    spans = find_pii(text)
    if not spans:
        return text
    parts, at = [], 0
    for span in spans:
        parts += [text[at : span.start], f"[{span.kind}]"]
        at = span.end
    return "".join(parts) + text[at:]


def scrub_comments(records: list[dict], field: str = "comment") -> list[dict]:
    """Event records with the text of ``field`` scrubbed; records without it are the same
    objects, so a batch without comments costs one pass."""
    return [
        {**r, field: scrub(r[field])} if isinstance(r.get(field), str) else r for r in records
    ]


__all__ = ["KINDS", "Span", "find_pii", "fold", "scrub", "scrub_comments"]
