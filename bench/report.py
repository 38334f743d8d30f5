"""Writing a benchmark's section of BENCHMARKS.md (shared by the benchmark scripts)."""

from __future__ import annotations

import re


def replace_section(document: str, title: str, body: str) -> str:
    """`document` with its `## title` section (up to the next `## ` or a marker) replaced by
    `body`, or the section added before the load-test sections when it has none."""
    section = f"## {title}\n\n{body.rstrip()}\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |^<!-- |\Z)", re.S | re.M)
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    marker = document.find("<!-- loadtest:")
    if marker < 0:
        return document.rstrip("\n") + "\n\n" + section
    return document[:marker] + section + document[marker:]
