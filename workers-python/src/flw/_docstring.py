"""Docstring parsing: the tool description and Google-style ``Args:`` entries.

The description is the cleaned docstring up to its first section header
(``Args:``, ``Returns:``, ``Raises:``, ...). Entries of ``Args:``,
``Arguments:``, ``Parameters:``, ``Keyword Args:`` and ``Attributes:``
sections map a name to its description; continuation lines are joined.
"""

from __future__ import annotations

import inspect
import re
from typing import NamedTuple

_SECTION = re.compile(
    r"(?P<name>Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Other Parameters"
    r"|Attributes|Returns?|Yields?|Raises|Examples?|Notes?|Warnings?|See Also|Todo"
    r"|References|Methods)\s*:\s*",
    re.IGNORECASE,
)
_ENTRY_SECTIONS = frozenset(
    {
        "args",
        "arguments",
        "parameters",
        "params",
        "keyword args",
        "keyword arguments",
        "other parameters",
        "attributes",
    }
)
_ENTRY = re.compile(r"\*{0,2}(?P<name>\w+)\s*(?:\([^)]*\))?\s*:(?P<text>.*)")


class Docstring(NamedTuple):
    """A parsed docstring."""

    description: str
    """Text before the first section, cleaned, paragraphs kept."""
    params: dict[str, str]
    """Descriptions of names listed in argument or attribute sections."""


def parse_docstring(doc: str | None) -> Docstring:
    """Split ``doc`` into the description and per-name descriptions."""
    if not doc:
        return Docstring("", {})
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    entry_indent: int | None = None
    current: str | None = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        header = _SECTION.fullmatch(stripped) if indent == 0 else None
        if header is not None:
            section = " ".join(header.group("name").lower().split())
            entry_indent = None
            current = None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in _ENTRY_SECTIONS or not stripped:
            continue
        if entry_indent is None:
            entry_indent = indent
        if indent <= entry_indent:
            match = _ENTRY.fullmatch(stripped)
            if match is not None:
                current = match.group("name")
                params[current] = match.group("text").strip()
                continue
        if current is not None and indent > entry_indent:
            params[current] = f"{params[current]} {stripped}".strip()
    return Docstring("\n".join(description).strip(), params)


def class_description(cls: type, given: str | None) -> str:
    """An instance's description: ``given`` when set, else its own class's
    docstring (not an inherited one)."""
    if given is not None:
        return inspect.cleandoc(given).strip()
    own = cls.__dict__.get("__doc__")
    return parse_docstring(inspect.cleandoc(own)).description if isinstance(own, str) else ""
