"""`python -m nexa_resources.tables [--write]`: print the catalog's table reference, or rewrite docs/lake.md's."""

from __future__ import annotations

import argparse

from nexa_resources.tables.docs import DOC, render, tables_markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nexa_resources.tables", description=__doc__)
    parser.add_argument("--write", action="store_true", help=f"rewrite the generated section of {DOC.name}")
    args = parser.parse_args(argv)
    if not args.write:
        print(tables_markdown())
        return 0
    before = DOC.read_text(encoding="utf-8")
    after = render(before)
    if after != before:
        DOC.write_text(after, encoding="utf-8")
    print(f"{DOC}: {'updated' if after != before else 'already up to date'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
