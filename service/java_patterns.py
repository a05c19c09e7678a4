"""Java regular expressions of the botocore model (as Coral matches them) compiled for Python."""

from __future__ import annotations

import functools
import logging
import re
import unicodedata

__all__ = ["java_pattern"]

_LOGGER = logging.getLogger(__name__)

# Characters Java's `.` does not match (Python's `.` only excludes "\n").
_JAVA_LINE_TERMINATORS = "\\n\\r\\u0085\\u2028\\u2029"


@functools.cache
def java_pattern(pattern: str) -> re.Pattern[str]:
    """A model pattern compiled to match as Java does (compiled once)."""
    # re.ASCII: Java's \d, \w and \s are ASCII-only unless UNICODE_CHARACTER_CLASS is set.
    return re.compile(_translate_java_regex(pattern), re.ASCII)


def _translate_java_regex(pattern: str) -> str:
    """Rewrite the Java-only parts of a model pattern (`\\p{L}`, `.`) for Python's `re`."""
    out = []
    in_class = False
    index = 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escape = pattern[index + 1]
            if escape in "pP" and pattern.startswith("{", index + 2):
                end = pattern.index("}", index + 3)
                ranges = _category_ranges(pattern[index + 3 : end])
                if escape == "P":
                    if in_class:
                        raise ValueError(f"\\P{{...}} inside a character class: {pattern}")
                    out.append(f"[^{ranges}]")
                else:
                    out.append(ranges if in_class else f"[{ranges}]")
                index = end + 1
                continue
            out.append(pattern[index : index + 2])
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class:
            in_class = False
        elif char == "." and not in_class:
            char = f"[^{_JAVA_LINE_TERMINATORS}]"
        out.append(char)
        index += 1
    return "".join(out)


@functools.cache
def _category_ranges(category: str) -> str:
    """A character-class body matching the Unicode general category (`L`, `Lu`, `Z`, `N`, ...)."""
    if not re.fullmatch(r"[A-Z][a-z]?", category):
        raise ValueError(f"Unsupported Unicode property in model pattern: {category}")
    parts = []
    start = None
    for code in range(0x110001):
        inside = code < 0x110000 and unicodedata.category(chr(code)).startswith(category)
        if inside and start is None:
            start = code
        elif not inside and start is not None:
            end = code - 1
            parts.append(_escape(start) if start == end else f"{_escape(start)}-{_escape(end)}")
            start = None
    if not parts:
        raise ValueError(f"Unknown Unicode category in model pattern: {category}")
    return "".join(parts)


def _escape(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
