"""One written form for every text search compares: what a citizen types and what the index holds.

People type the same word in several ways: full-width Latin letters and digits from a Chinese
input method (``ＸＮＫ``, ``１``), Traditional characters from Hong Kong, Macao and Taiwan
(``醫院``, ``皮膚科``), capitals, and stray spaces. Search would find none of these if it
compared them as typed, so both sides go through ``normalise`` before anything else:

* Unicode NFKC, which folds full-width forms to their ordinary ones (``ＡＢＣ１`` → ``ABC1``,
  ``（`` → ``(``);
* Traditional to Simplified Chinese with OpenCC's ``t2s`` conversion (the maintained converter
  with phrase tables, so ``乾燥`` becomes ``干燥`` while names it knows stay as they are);
* lower case, curly apostrophes as straight ones, and runs of white space as one space.

Converting Simplified text is a no-op, so index and query agree whatever the source wrote.

>>> normalise("  ＸＮＫ　心臟內科 ")
'xnk 心脏内科'
>>> normalise("兒童醫院"), normalise("Children’s  Hospital")
('儿童医院', "children's hospital")
"""

from __future__ import annotations

import re
import threading
import unicodedata
from functools import lru_cache

import opencc

__all__ = ["normalise"]

_SPACES = re.compile(r"\s+")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'"})
_converter: opencc.OpenCC | None = None
_lock = threading.Lock()


def _to_simplified(text: str) -> str:
    global _converter
    if _converter is None:
        with _lock:
            if _converter is None:
                _converter = opencc.OpenCC("t2s")
    converted: str = _converter.convert(text)
    return converted


@lru_cache(maxsize=200_000)
def normalise(text: str) -> str:
    """The form search compares: NFKC, Simplified, lower case, single spaces, trimmed."""
    if text.isascii():
        return _SPACES.sub(" ", text).strip().lower()
    folded = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES)
    return _SPACES.sub(" ", _to_simplified(folded)).strip().lower()
