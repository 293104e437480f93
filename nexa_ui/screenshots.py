"""Screenshot every dashboard page of a running `make up` (or any Streamlit URL) with headless Chromium.

    .venv/bin/python -m nexa_ui.screenshots                          # http://127.0.0.1:8501 → test-artifacts/screenshots/live
    .venv/bin/python -m nexa_ui.screenshots --url http://127.0.0.1:8600 --out /tmp/shots

Uses Playwright with Debian's Chromium (`/usr/bin/chromium`, or NEXA_CHROMIUM); never `playwright install`.
Prints each page's headline numbers as it saves the picture.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

PAGES: tuple[tuple[str, str], ...] = (
    ("leaderboard", ""),
    ("cells", "cells"),
    ("inspector", "inspector"),
    ("training", "training"),
    ("costs", "costs"),
    ("sql", "sql"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('NEXA_UI_PORT', '8501')}")
    parser.add_argument("--out", default="test-artifacts/screenshots/live")
    parser.add_argument("--wait-ms", type=int, default=6000, help="time for each page to render")
    args = parser.parse_args(argv)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("needs playwright: .venv/bin/pip install playwright (Chromium comes from apt: chromium)")
        return 2
    chromium = os.environ.get("NEXA_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        print(f"no Chromium at {chromium}: apt-get install -y chromium (or set NEXA_CHROMIUM)")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in PAGES:
            page.goto(f"{args.url.rstrip('/')}/{path}")
            page.wait_for_timeout(args.wait_ms)
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            main_area = page.query_selector("[data-testid=stMain]") or page.query_selector("body")
            text = " ".join((main_area.inner_text() if main_area else "").split())
            print(f"{target}: {text[:160]}")
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
