"""Entities in a support message: order ids and item ids (rules; item ids known to the catalog), amounts with
currency (price-parser), dates (dateparser, on date-like phrases only: searching whole texts is slow),
e-mails and phone numbers (phonenumbers)."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import phonenumbers
from price_parser import Price

_ORDER = re.compile(
    r"\b((?:order|ord)-[A-Z0-9]{3,})\b|"
    r"(?:order|ord|订单号?|单号|#)\s*(?:number|no\.?|id)?\s*[:：#]?\s*([A-Z]{0,3}-?\d{4,}|[A-Z]{1,3}-\d{3,})",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_AMOUNT = re.compile(
    r"(?:[€$£¥]|USD|EUR|GBP|CNY|RMB)\s?\d+(?:[.,]\d{1,2})?"
    r"|\d+(?:[.,]\d{1,2})?\s?(?:euros?|dollars?|pounds?|元|块钱?|USD|EUR|GBP|CNY|RMB|€|\$|£)",
    re.IGNORECASE,
)
_CURRENCY = {
    "€": "EUR", "eur": "EUR", "euro": "EUR", "euros": "EUR",
    "$": "USD", "usd": "USD", "dollar": "USD", "dollars": "USD",
    "£": "GBP", "gbp": "GBP", "pound": "GBP", "pounds": "GBP",
    "¥": "CNY", "cny": "CNY", "rmb": "CNY", "元": "CNY", "块": "CNY", "块钱": "CNY",
}  # fmt: skip
_WEEKDAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
_MONTHS = "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:tember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
_DATE = re.compile(
    rf"\b(?:yesterday|today|tomorrow|(?:last|next|this|on)\s+(?:{_WEEKDAYS}|week|month)|\d+\s+(?:days?|weeks?)\s+ago"
    rf"|\d{{1,2}}[/.-]\d{{1,2}}(?:[/.-]\d{{2,4}})?|\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})|(?:{_MONTHS})\s+\d{{1,2}}(?:st|nd|rd|th)?)\b"
    r"|昨天|今天|明天|前天|上周[一二三四五六日天]?|下周[一二三四五六日天]?|\d{1,2}月\d{1,2}[日号]",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,}")


@dataclass(frozen=True)
class Entity:
    kind: str  # order_id, amount, date, email, phone, item_id
    value: str
    text: str


def _amounts(text: str) -> list[Entity]:
    found = []
    for match in _AMOUNT.finditer(text):
        price = Price.fromstring(match.group(0))
        if price.amount is None:
            continue
        symbol = (price.currency or re.sub(r"[\d\s.,]", "", match.group(0))).lower()
        currency = _CURRENCY.get(symbol, symbol.upper() or "")
        found.append(Entity("amount", f"{price.amount:f} {currency}".strip(), match.group(0)))
    return found


def _dates(text: str, language: str, now: datetime) -> list[Entity]:
    import dateparser

    found = []
    for match in _DATE.finditer(text):
        parsed = dateparser.parse(
            match.group(0),
            languages=["zh", "en"] if language == "zh" else ["en"],
            settings={"RELATIVE_BASE": now.replace(tzinfo=None), "PREFER_DATES_FROM": "past"},
        )
        if parsed is not None:
            found.append(Entity("date", parsed.date().isoformat(), match.group(0)))
    return found


def _phones(text: str, language: str, region: str) -> list[Entity]:
    found = []
    for match in phonenumbers.PhoneNumberMatcher(text, "CN" if language == "zh" else region):
        number = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        found.append(Entity("phone", number, match.raw_string))
    return found


def extract_entities(
    text: str,
    language: str,
    now: datetime,
    known_items: Collection[str] = (),
    phone_region: str = "US",
) -> list[Entity]:
    entities = [
        Entity("order_id", (m.group(1) or m.group(2)).upper(), m.group(0)) for m in _ORDER.finditer(text)
    ]
    entities += [Entity("email", m.group(0).lower(), m.group(0)) for m in _EMAIL.finditer(text)]
    entities += _amounts(text)
    entities += _dates(text, language, now)
    order_digits = {e.value.lstrip("#") for e in entities if e.kind == "order_id"}
    entities += [p for p in _phones(text, language, phone_region) if p.value.lstrip("+") not in order_digits]
    if known_items:
        entities += [
            Entity("item_id", m.group(0), m.group(0))
            for m in _TOKEN.finditer(text)
            if m.group(0) in known_items
        ]
    return entities
