"""Render the rating page of a rating database to a PNG (the README's screenshot).

Works on a copy of the database (the original is never touched): adds a rater, serves the copy on
127.0.0.1, signs in with Playwright driving Debian's Chromium and captures /rate.

    python docs/screenshot_rating_page.py runs/bench/feedback/ratings.db docs/images/rating_page.png
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def main(db: str, png: str) -> None:
    from playwright.sync_api import sync_playwright

    from knowtune.web.auth import hash_password
    from knowtune.web.store import Store

    work = Path(tempfile.mkdtemp())
    copy = work / "ratings.db"
    with sqlite3.connect(db) as src, sqlite3.connect(copy) as dst:  # a consistent copy, WAL included
        src.backup(dst)
    Store(str(copy)).add_user("rita", "rater", hash_password("screenshot-only"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "knowtune.cli", "feedback", "serve", "--db", str(copy),
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1150, "height": 760}, device_scale_factor=1)
            page.goto(url + "/rate")
            page.fill("input[name=name]", "rita")
            page.fill("input[name=password]", "screenshot-only")
            page.click("button:has-text('Sign in')")
            page.wait_for_url("**/rate")
            page.wait_for_load_state("networkidle")
            page.keyboard.press("5")
            page.keyboard.press("Shift+Digit2")
            page.keyboard.press("Shift+W")
            Path(png).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=png, full_page=True)
            browser.close()
    finally:
        server.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {png}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
