"""Transcript normalization to the label alphabet (lowercase a–z, apostrophe, space).

The steps follow the usual English ASR recipe: transliterate to ASCII (unidecode), expand
currency, ordinals, years, decimals, percentages and plain numbers into words (inflect), expand
common abbreviations, drop punctuation, collapse whitespace.  A character that has no spoken form
(``*``, ``_``, an emoji, ...) is never dropped silently: ``normalize_text`` raises
``TextNormalizationError`` naming it, and the caller decides to skip and report the utterance.
"""
from __future__ import annotations

import functools
import re

import inflect
from unidecode import unidecode

from src.text.labels import Labels, load_labels


class TextNormalizationError(ValueError):
    """Text holding characters that cannot be mapped to the labels."""

    def __init__(self, text: str, chars: list[str]) -> None:
        self.text, self.chars = text, chars
        super().__init__(f"cannot normalize characters {chars!r} in {text!r}; "
                         "edit the transcript or extend labels.json")


# Expanded only when followed by a period ("St." is ambiguous, "st" alone is not an abbreviation),
# except the unambiguous titles that British text writes without one.
_ABBREVIATIONS = {
    "mr": "mister", "mrs": "misses", "ms": "miss", "dr": "doctor", "drs": "doctors", "st": "saint",
    "co": "company", "jr": "junior", "sr": "senior", "maj": "major", "gen": "general", "rev": "reverend",
    "lt": "lieutenant", "hon": "honorable", "sgt": "sergeant", "capt": "captain", "esq": "esquire",
    "ltd": "limited", "col": "colonel", "ft": "fort", "mt": "mount", "prof": "professor", "vs": "versus",
    "etc": "et cetera",
}
_TITLES_WITHOUT_PERIOD = ("mr", "mrs", "dr", "drs")
_ABBREV_RE = re.compile(r"\b(" + "|".join(sorted(_ABBREVIATIONS, key=len, reverse=True)) + r")\.", re.I)
_TITLE_RE = re.compile(r"\b((?i:" + "|".join(_TITLES_WITHOUT_PERIOD) + r"))\b(?=\s+[A-Z])")
# "No." is "number" only before a numeral ("No. 5"), otherwise it ends a sentence ("I said no.").
_NUMBER_ABBREV_RE = re.compile(r"\bno\.(?=\s*\d)", re.I)

_CURRENCIES = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
               "€": ("euro", "euros", "cent", "cents"), "¥": ("yen", "yen", "sen", "sen")}
_CURRENCY_RE = re.compile(r"([$£€¥])\s?(\d[\d,]*)(?:\.(\d\d))?\b")
_ORDINAL_RE = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b", re.I)
_DECIMAL_RE = re.compile(r"\b(\d[\d,]*)\.(\d+)\b")
_PERCENT_RE = re.compile(r"(\d)\s?%")
_COMMA_NUMBER_RE = re.compile(r"\b\d{1,3}(?:,\d{3})+\b")
_NUMBER_RE = re.compile(r"\d+")
_SYMBOLS = {"&": " and ", "+": " plus ", "@": " at ", "=": " equals ", "%": " percent ", "#": " number "}
# Punctuation that separates words and has no spoken form; replaced by a space.
_SEPARATORS = re.compile(r"[.,;:!?\"()\[\]{}/\-]+")
_QUOTES_RE = re.compile(r"(^|\s)'+|'+(?=\s|$)")
_SPACES = re.compile(r"\s+")


@functools.lru_cache(maxsize=1)
def _engine() -> inflect.engine:
    return inflect.engine()


def _cardinal(n: int) -> str:
    return _engine().number_to_words(n, andword="").replace("-", " ").replace(",", "")


def _year(n: int) -> str:
    """1984 → nineteen eighty four, 1900 → nineteen hundred, 2005 → two thousand five."""
    if 2000 <= n <= 2009 or n % 1000 == 0:
        return _cardinal(n)
    hi, lo = divmod(n, 100)
    if lo == 0:
        return f"{_cardinal(hi)} hundred"
    return f"{_cardinal(hi)} {'oh ' if lo < 10 else ''}{_cardinal(lo)}"


def _number(digits: str) -> str:
    n = int(digits.replace(",", ""))
    if len(digits) == 4 and 1000 <= n <= 2099:
        return _year(n)
    return _cardinal(n)


def _currency(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCIES[m.group(1)]
    whole = int(m.group(2).replace(",", ""))
    parts = [f"{_cardinal(whole)} {one if whole == 1 else many}"] if whole or not m.group(3) else []
    if m.group(3) and int(m.group(3)):
        cents = int(m.group(3))
        parts.append(f"{_cardinal(cents)} {sub_one if cents == 1 else sub_many}")
    return " " + " and ".join(parts) + " "


def _ordinal(m: re.Match) -> str:
    return " " + _engine().ordinal(_cardinal(int(m.group(1).replace(",", "")))) + " "


def _decimal(m: re.Match) -> str:
    digits = " ".join(_cardinal(int(d)) for d in m.group(2))
    return f" {_cardinal(int(m.group(1).replace(',', '')))} point {digits} "


def _transliterate(text: str) -> tuple[str, list[str]]:
    """ASCII transliteration per character; characters with no ASCII form are collected."""
    out, lost = [], []
    for ch in text:
        if ch.isascii() or ch in _CURRENCIES:
            out.append(ch)
            continue
        ascii_form = unidecode(ch)
        if ascii_form.strip() or ch.isspace():
            out.append(ascii_form)
        else:
            lost.append(ch)
    return "".join(out), lost


def normalize_text(text: str, labels: Labels | None = None) -> str:
    """Normalize a transcript to the label alphabet.

    >>> normalize_text("Mr. Smith paid $3.50 on the 2nd of May, 1984!")
    'mister smith paid three dollars and fifty cents on the second of may nineteen eighty four'

    Raises TextNormalizationError naming characters that have no spoken form.
    """
    labels = labels or load_labels()
    s, lost = _transliterate(text)
    s = _CURRENCY_RE.sub(_currency, s)
    s = _NUMBER_ABBREV_RE.sub(" number ", s)
    s = _ABBREV_RE.sub(lambda m: " " + _ABBREVIATIONS[m.group(1).lower()] + " ", s)
    s = _TITLE_RE.sub(lambda m: _ABBREVIATIONS[m.group(1).lower()], s)
    s = _ORDINAL_RE.sub(_ordinal, s)
    s = _PERCENT_RE.sub(r"\1 percent", s)
    s = _DECIMAL_RE.sub(_decimal, s)
    s = _COMMA_NUMBER_RE.sub(lambda m: " " + _number(m.group(0)) + " ", s)
    s = _NUMBER_RE.sub(lambda m: " " + _number(m.group(0)) + " ", s)
    for sym, word in _SYMBOLS.items():
        s = s.replace(sym, word)
    s = s.lower().replace("`", "'")
    s = _SEPARATORS.sub(" ", s)
    s = _QUOTES_RE.sub(r"\1", s)  # quotation marks, not apostrophes inside words
    s = _SPACES.sub(" ", s).strip()
    bad = lost + labels.unknown_chars(s)
    if bad:
        raise TextNormalizationError(text, list(dict.fromkeys(bad)))
    return s
