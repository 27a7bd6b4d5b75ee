"""PII detection: e-mail addresses, phone numbers, payment cards, IBANs and US SSNs.

One delimiter-led regex finds candidates; each is then vetted by the rules of its format
(Luhn for cards, ISO 13616 mod 97 and the country's length for IBANs, SSA ranges for
SSNs, digit counts and plausibility for phones) so that ordinary numbers stay unflagged.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

# Country → IBAN length (the SWIFT registry).  A known length lets a candidate that ran
# on into the following text be trimmed, and rejects strings that only look like IBANs.
_IBAN_LENGTHS: Mapping[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28,
    "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24,
    "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# "icon@2x.png" and "git@github.com:org/repo" look like addresses and are not.
_FILE_EXTENSIONS = frozenset(
    ("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "pdf", "txt", "js", "ts", "jsx",
     "tsx", "css", "json", "yaml", "yml", "html", "lock")
)  # fmt: skip

# The same trick as for jailbreaks: the PII regex starts at a delimiter (found in C) and
# a one-character look-ahead, so ordinary words cost almost nothing.  The text is padded
# with a space so that position 0 counts; delimiters exclude '-', '/' and '.' so that
# pieces of dates, ranges and dotted numbers are never candidates.  CJK text needs no
# space before a number.
_PII = re.compile(
    r"[ \t\n\"'`=:;,(\[{<>\u3000-\u9fff\uff00-\uffef](?=[0-9A-Z+(])(?:"
    # IBAN: country, check digits, BBAN in groups of four (validated by length + mod 97).
    r"(?P<iban>[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?)(?![A-Za-z0-9])"
    # International phone: +, then digit groups (validated: 8-15 digits).  The possessive
    # ``++`` stops a long digit run from being split every possible way on failure.
    r"|(?P<phone_intl>\+[1-9](?:[ .\-]?\(?[0-9]+\)?)++)(?![%])"
    # Area code in brackets: (415) 555-2671, (11) 98765-4321.
    r"|(?P<phone_paren>\([1-9][0-9]{1,3}\) ?[0-9]{3,5}[-. ][0-9]{4})(?![0-9])"
    # Payment card: 13-19 digits, plain or in groups of 4 (4-6-5 / 4-6-4 for Amex/Diners).
    r"|(?<![.,])(?P<card>[2-6](?:[0-9]{12,18}|[0-9]{3}(?P<cs>[ \-])[0-9]{4}(?P=cs)[0-9]{4}"
    r"(?P=cs)[0-9]{4}(?:(?P=cs)[0-9]{1,3})?|[0-9]{3}(?P<as>[ \-])[0-9]{6}(?P=as)[0-9]{4,5}))"
    r"(?![0-9])"
    # The rest refuse to be one piece of a longer run of numbers ("250 500 1000 2000").
    # US SSN AAA-GG-SSSS (ranges checked after the match).
    r"|(?<![.,])(?<![0-9][ .])(?:(?P<ssn>[0-9]{3}(?P<ss>[- ])[0-9]{2}(?P=ss)[0-9]{4})"
    # 3-3-4 numbers, the North-American form: 555-123-4567, 555.123.4567, 1-800-555-0199.
    r"|(?P<phone_nanp>(?:1[-. ])?[2-9][0-9]{2}(?P<ns>[-. ])[0-9]{3}(?P=ns)[0-9]{4})"
    # National numbers with a trunk 0: 06 12 34 56 78, 020 7946 0958, 030 1234567.
    r"|(?P<phone_trunk>0[1-9][0-9]{0,4}(?P<ts>[ .\-/])[0-9]{2,8}(?:(?P=ts)[0-9]{2,8}){0,4})"
    # Nine-digit mobiles without a trunk prefix (ES, PT, IT): 612 34 56 78, 912 345 678.
    r"|(?P<phone_mobile>[6-9][0-9]{2}(?P<ms>[ .\-])[0-9]{2,3}(?P=ms)[0-9]{2,3}(?:(?P=ms)[0-9]{2})?)"
    r")(?![0-9]|[ .\-/][0-9])"
    r")"
)

# E-mail is found from its '@' (a literal ``re`` finds fast); the local part is recovered
# by walking back, which avoids retrying it at every letter.
_EMAIL = re.compile(r"@(?<=[\w.%+\-]@)(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{2,24}(?![\w-])")
_EMAIL_LOCAL = re.compile(r"[\w.%+\-]{1,64}\Z")


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every payment card number carries."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """ISO 13616: move the first four characters to the end, letters → 10..35, mod 97 == 1."""
    compact = iban.replace(" ", "").upper()
    if len(compact) < 15 or not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def ssn_valid(ssn: str) -> bool:
    """SSA rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    digits = ssn.replace("-", "").replace(" ", "")
    if len(digits) != 9 or not digits.isdigit():
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _digits(text: str) -> str:
    return "".join(char for char in text if "0" <= char <= "9")


def _plausible_number(digits: str) -> bool:
    # Round figures ("+10 000 000 users") and repeated digits are not phone numbers.
    return digits.count("0") * 10 < len(digits) * 6 and len(set(digits)) > 2


def _card_valid(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _iban_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The valid IBAN at ``text[start:end]``, trimmed to its country's length, if any."""
    country = text[start : start + 2]
    length = _IBAN_LENGTHS.get(country)
    if length is None:
        return None
    count = 0
    for index in range(start, end):
        if text[index] != " ":
            count += 1
            if count == length:
                return (start, index + 1) if iban_valid(text[start : index + 1]) else None
    return None


def _email_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    domain = text[start:end]
    tld = domain.rsplit(".", 1)[-1].lower()
    if tld in _FILE_EXTENSIONS:
        return None
    if end + 1 < len(text) and text[end] == ":" and not text[end + 1].isspace():
        return None  # scp-style remote (git@host:path), not an address
    local = _EMAIL_LOCAL.search(text, max(0, start - 65), start - 1)
    if local is None:
        return None
    local_start = local.start()
    while local_start < start - 1 and text[local_start] in ".-+":
        local_start += 1
    word = text[max(0, local_start - 200) : local_start].rsplit(None, 1)
    if word and "://" in word[-1]:
        return None  # the user-info part of a URL (https://token@host), not an address
    return (local_start, end) if local_start < start - 1 else None


def _phone_valid(kind: str, digits: str) -> bool:
    if kind == "phone_intl":
        ok = 8 <= len(digits) <= 15
    elif kind == "phone_mobile":
        ok = len(digits) == 9
    elif kind == "phone_trunk":
        ok = 9 <= len(digits) <= 12
    elif kind == "phone_paren":
        ok = 9 <= len(digits) <= 11
    else:  # phone_nanp, with or without the leading 1
        ok = len(digits) == 10 or (len(digits) == 11 and digits[0] == "1")
    return ok and _plausible_number(digits)


def _pii_spans(text: str) -> Iterator[tuple[str, int, int]]:
    """(placeholder, start, end) for each valid PII match."""
    for match in _EMAIL.finditer(text):
        span = _email_span(text, match.start() + 1, match.end())
        if span is not None:
            yield "[EMAIL]", span[0], span[1]
    for match in _PII.finditer(" " + text):
        kind = match.lastgroup or ""
        start, end = match.start(kind) - 1, match.end(kind) - 1  # undo the padding
        token = text[start:end]
        if kind == "iban":
            span = _iban_span(text, start, end)
            if span is not None:
                yield "[IBAN]", span[0], span[1]
        elif kind == "card":
            if _card_valid(token):
                yield "[CARD]", start, end
        elif kind == "ssn":
            if ssn_valid(token):
                yield "[SSN]", start, end
        elif _phone_valid(kind, _digits(token)):
            yield "[PHONE]", start, end
