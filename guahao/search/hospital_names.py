"""The short names people give hospitals, generated from the registered name by rules.

Nobody says 澜江市第一人民医院: people say 市一院, 一院, 第一医院; 澜江市中医院 is 中医院 or 市中医;
a 妇幼保健院 is 妇幼. Hospitals register a few aliases, never all of them, and a region has
hundreds of hospitals, so the usual forms are derived here for every hospital, the same way:

* drop the city (and province) in front, and the district for a district hospital; the city
  is read from the name (``…市``) or the hospital's address;
* an ordinal people's hospital: 第一人民医院 ↔ 第一医院 ↔ 一院 ↔ 一医院 ↔ 市一院 ↔ 市一医院, and
  人民医院 ↔ 人医 (市人医);
* a type of hospital by its usual short form: 中医医院 ↔ 中医院 ↔ 中医, 妇幼保健院 ↔ 妇幼,
  妇产医院 ↔ 妇产, 儿童医院 ↔ 儿院, 医科大学附属医院 ↔ 医大附院 ↔ 附院, 社区卫生服务中心 ↔
  社区医院 ↔ 社卫, 中西医结合医院 ↔ 中西医院;
* a plain name without its 医院 once the city is gone (澜江市协和医院 → 协和).

It also gives English names from the type (``children's hospital``, ``people's hospital``,
``maternity hospital``, ``tcm hospital``), so foreign residents find hospitals in English.

>>> names = short_names("澜江市第一人民医院", address="澜江市朝阳区解放路88号")
>>> [n for n in ("第一人民医院", "一院", "市一院", "第一医院", "澜江一院") if n in names]
['第一人民医院', '一院', '市一院', '第一医院', '澜江一院']
>>> sorted(n for n in short_names("澜江市妇幼保健院") if "妇幼" in n)[:3]
['妇幼', '妇幼保健院', '市妇幼']
>>> english_names("澜江市第二人民医院")
('second people hospital', 'no 2 people hospital', 'people hospital', 'hospital')
"""

from __future__ import annotations

import re

__all__ = ["english_names", "short_names"]

_NUMERALS = "一二三四五六七八九十"
_ORDINAL = re.compile(r"^(.*?)第([一二三四五六七八九十]{1,3}|\d{1,3})(人民)?医院$")
_CITY = re.compile(r"^(.{2,4}?)(?:省.{2,4}?)?市")
_PROVINCE = re.compile(r"^.{2,4}?省")
_ENGLISH_ORDINALS = (
    "first",
    "second",
    "third",
    "fourth",
    "fifth",
    "sixth",
    "seventh",
    "eighth",
    "ninth",
    "tenth",
)

_TYPES: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    # (ending of the name, its short forms, English names)
    ("妇幼保健计划生育服务中心", ("妇幼", "妇幼保健院"), ("maternal and child health hospital",)),
    ("妇幼保健院", ("妇幼", "妇幼保健院"), ("maternal and child health hospital",)),
    ("中西医结合医院", ("中西医院", "中西医结合医院"), ("integrated medicine hospital",)),
    ("中医药大学附属医院", ("中医附院", "中医院"), ("tcm hospital", "chinese medicine hospital")),
    ("中医医院", ("中医院", "中医"), ("tcm hospital", "chinese medicine hospital")),
    ("中医院", ("中医院", "中医"), ("tcm hospital", "chinese medicine hospital")),
    ("医科大学附属医院", ("医大附院", "附院", "附属医院"), ("affiliated hospital",)),
    ("大学附属医院", ("附院", "附属医院"), ("affiliated hospital", "university hospital")),
    ("附属医院", ("附院", "附属医院"), ("affiliated hospital",)),
    ("儿童医院", ("儿童医院", "儿院"), ("children hospital",)),
    ("妇产医院", ("妇产医院", "妇产"), ("maternity hospital", "women hospital")),
    ("妇女儿童医院", ("妇儿医院", "妇儿"), ("women and children hospital",)),
    ("口腔医院", ("口腔医院", "牙科医院"), ("dental hospital", "stomatological hospital")),
    ("眼科医院", ("眼科医院", "眼院"), ("eye hospital",)),
    ("肿瘤医院", ("肿瘤医院",), ("cancer hospital",)),
    ("精神卫生中心", ("精卫中心", "精神病院"), ("mental health center",)),
    ("传染病医院", ("传染病院",), ("infectious disease hospital",)),
    (
        "社区卫生服务中心",
        ("社区医院", "社卫", "社区"),
        ("community health center", "community hospital"),
    ),
    ("卫生院", ("卫生院",), ("health center",)),
    ("人民医院", ("人民医院", "人医"), ("people hospital",)),
)


def _city(name: str, address: str) -> str:
    for text in (name, address):
        found = _CITY.match(text)
        if found:
            return found.group(1)
    return ""


def _number(ordinal: str) -> int:
    if ordinal.isdigit():
        return int(ordinal)
    if ordinal == "十":
        return 10
    if ordinal.startswith("十"):
        return 10 + _NUMERALS.index(ordinal[1]) + 1
    if "十" in ordinal:
        tens, _, ones = ordinal.partition("十")
        return (_NUMERALS.index(tens) + 1) * 10 + (_NUMERALS.index(ones) + 1 if ones else 0)
    return _NUMERALS.index(ordinal) + 1


def _stripped(name: str, city: str, district: str) -> list[str]:
    """The name without the city (with or without 市), the province and the district."""
    forms = [name]
    province = _PROVINCE.match(name)
    if province:
        forms.append(name[province.end() :])
    for form in list(forms):
        for prefix in (f"{city}市", city) if city else ():
            if form.startswith(prefix) and len(form) > len(prefix) + 1:
                forms.append(form[len(prefix) :])
    for form in list(forms):
        if district and form.startswith(district) and len(form) > len(district) + 1:
            forms.append(form[len(district) :])
    return list(dict.fromkeys(forms))


def short_names(name: str, *, address: str = "", district: str = "") -> tuple[str, ...]:
    """Every short form of a hospital's registered name (not the name itself).

    >>> names = short_names("澜江市朝阳区人民医院", district="朝阳区")
    >>> {"朝阳区医院", "区人民医院", "人民医院"} <= set(names)
    True
    >>> {"南湖社区卫生服务中心", "南湖社区医院", "南湖社区"} <= set(
    ...     short_names("长乐区南湖街道社区卫生服务中心", district="长乐区")
    ... )
    True
    """
    city = _city(name, address)
    out: list[str] = []
    for form in _stripped(name, city, district):
        out.append(form)
        if "街道" in form:
            out.append(form.replace("街道", "", 1))
    for form in list(out):
        ordinal = _ORDINAL.match(form)
        if ordinal:
            place, number, people = ordinal.groups()
            n = _number(number)
            chinese = _NUMERALS[n - 1] if n <= 10 else number
            base = place.removesuffix("市")
            out += [
                f"{place}第{chinese}医院",
                f"{base}{chinese}院",
                f"{base}{chinese}医院",
                f"市{chinese}院",
                f"市{chinese}医院",
                f"{chinese}院",
                f"{chinese}医院",
                f"第{chinese}医院",
                f"{city}{chinese}院" if city else "",
                f"{base}{n}院",
                f"第{n}医院",
            ]
            if people:
                out += [f"第{chinese}人民医院", f"{base}{chinese}人医", f"市{chinese}人医"]
            continue
        for ending, shorts, _ in _TYPES:
            if form.endswith(ending):
                place = form[: -len(ending)]
                for short in shorts:
                    out += [f"{place}{short}", short]
                    if place.endswith("区") and short.endswith("人民医院"):
                        out.append(f"{place}医院")
                    if place[-1:] in ("省", "市", "区"):
                        out.append(f"{place[-1]}{short}")  # 省人医, 市中医院, 区人民医院
                    if city and (name.startswith(city) or name.startswith(f"{city}市")):
                        out += [f"市{short}", f"{city}{short}"]
                break
        else:
            bare = not form.startswith("市") and not (city and form.startswith(city))
            if form.endswith("医院") and len(form) >= 4 and bare:
                out.append(form.removesuffix("医院"))  # 和美医院 → 和美
    seen = {name}
    ordered = []
    for form in out:
        if form and len(form) >= 2 and form not in seen:
            seen.add(form)
            ordered.append(form)
    return tuple(ordered)


def english_names(name: str) -> tuple[str, ...]:
    """English names of a hospital from its type and ordinal (lower case, no possessive
    apostrophes, as queries are read); every hospital is at least ``hospital``."""
    out: list[str] = []
    ordinal = _ORDINAL.match(name)
    if ordinal:
        n = _number(ordinal.group(2))
        kind = "people hospital" if ordinal.group(3) else "hospital"
        if n <= len(_ENGLISH_ORDINALS):
            out.append(f"{_ENGLISH_ORDINALS[n - 1]} {kind}")
        out.append(f"no {n} {kind}")
    for ending, _, english in _TYPES:
        if name.endswith(ending):
            out += english
            break
    if "区" in name and "人民医院" in name:
        out.append("district hospital")
    out.append("hospital")
    return tuple(dict.fromkeys(out))
