"""Mainland mobile numbers as people type them: normalised to eleven ASCII digits first.

A phone keyboard or an input method may give full-width digits (１３８…), spaces or dashes
between groups, or the country code (+86, 0086, 86). Every lookup, hash and rate-limit key uses
the normalised form, so one phone is one key however it was typed.
"""

from __future__ import annotations

import re
import unicodedata

from guahao.platform.error_codes import refuse

__all__ = ["MOBILE", "normalise_phone"]

MOBILE = re.compile(r"1[3-9]\d{9}")
"""An eleven-digit mainland mobile number (ASCII digits only)."""

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212().·]")


def normalise_phone(raw: str) -> str:
    """The eleven ASCII digits of a mainland mobile number, or ``VALIDATION_FAILED``.

    >>> normalise_phone("＋８６ １３８-0013 8000")
    '13800138000'
    >>> normalise_phone("0086 13800138000")
    '13800138000'
    >>> normalise_phone("１３８００１３８０００")
    '13800138000'
    """
    text = _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw))
    # NFKC maps every Unicode decimal digit form to ASCII only for the compatibility forms;
    # other scripts' digits (Arabic-Indic and so on) are refused below, as they should be.
    for prefix in ("+86", "0086", "86"):
        if text.startswith(prefix) and len(text) == len(prefix) + 11:
            text = text[len(prefix) :]
            break
    if not text.isascii() or not MOBILE.fullmatch(text):
        refuse("VALIDATION_FAILED", field="phone", reason="an 11-digit mainland mobile number")
    return text
