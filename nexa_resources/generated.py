"""Markdown sections written by code: the text between a begin and an end marker, and the command that writes it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    """A generated part of a Markdown file, between two marker lines."""

    begin: str
    end: str

    def fill(self, doc: str, text: str) -> str:
        """The document with the text between the markers replaced by `text`."""
        head, begin, rest = doc.partition(self.begin)
        _old, end, tail = rest.partition(self.end)
        if not begin or not end:
            raise ValueError(f"the document has no generated section: add the lines {self.begin!r} and {self.end!r}")
        return f"{head}{self.begin}\n{text}{self.end}{tail}"


def main(
    prog: str, description: str | None, section: Section, generate: Callable[[], str], argv: list[str] | None = None
) -> int:
    """Print the generated text, or with --write DOC rewrite that file's section."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--write", metavar="DOC", help="rewrite the generated section of this Markdown file")
    args = parser.parse_args(argv)
    if not args.write:
        sys.stdout.write(generate())
        return 0
    with open(args.write, encoding="utf-8") as fh:
        doc = fh.read()
    with open(args.write, "w", encoding="utf-8") as fh:
        fh.write(section.fill(doc, generate()))
    return 0
