"""The rating app in a real browser (Playwright driving Debian's Chromium) against the real server on
127.0.0.1: sign in, rate with the keyboard, correct, import, generate answers, export; and what must be
refused: admin pages for raters, forms without a CSRF token, endless password guessing."""

from __future__ import annotations

import json
import re
import shutil

import httpx
import pytest

from feedback_helpers import PASSWORD, csrf_of, make_db, prompts, signed_in, start_feedback

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield b
        b.close()


@pytest.fixture
def app(tmp_path, tiny_model):
    """A fresh database (rater rita, admin ada, three prompts with answers) and its server with the tiny model."""
    db = make_db(tmp_path / "feedback.db", ["rita"], ["ada"], prompts(3, script=True))
    proc, url = start_feedback(db, tmp_path / "home", str(tiny_model))
    yield url, db
    proc.kill()
    proc.wait()


def sign_in(page, url: str, name: str, start: str = "/rate"):
    page.goto(url + start)
    assert "/login" in page.url  # not signed in: sent to the sign-in page
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button:has-text('Sign in')")


def ratings_in(db: str) -> list[dict]:
    from knowtune.web.store import Store

    return Store(db).rating_rows()


def test_rater_rates_and_corrects_with_the_keyboard(browser, app):
    url, db = app
    page = browser.new_page()
    sign_in(page, url, "rita")
    assert page.url.endswith("/rate")
    assert "You have rated 0 of 3" in page.inner_text("#progress-text")
    # model output with markup is shown as text, never run
    answers = page.inner_text("#answer-left .text") + page.inner_text("#answer-right .text")
    assert "<script>window.pwned = 1</script><b>bold?</b>" in answers
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator(".answer b").count() == 0
    right_text = page.inner_text("#answer-right .text")
    page.keyboard.press("4")  # left scored 4
    page.keyboard.press("Shift+Digit2")  # right scored 2
    page.keyboard.press("Shift+W")  # right states a wrong fact
    assert page.is_checked("input[name=score_left][value='4']") and page.is_checked("input[name=wrong_right]")
    page.keyboard.press("c")
    page.keyboard.type("The answer is 0, as the handbook says.")
    page.keyboard.press("Escape")
    page.keyboard.press("a")  # left is better: sends the rating
    page.wait_for_selector("text=Saved.")
    assert "You have rated 1 of 3" in page.inner_text("#progress-text")
    [r] = ratings_in(db)
    wrong_side = "a" if r["a"] == right_text else "b"
    right_side = {"a": "b", "b": "a"}[wrong_side]
    assert r["rater"] == "rita" and r["choice"] == right_side
    assert r[f"score_{wrong_side}"] == 2 and r[f"score_{right_side}"] == 4 and r[f"wrong_{wrong_side}"] and not r[f"wrong_{right_side}"]
    assert r["correction"] == "The answer is 0, as the handbook says."
    page.close()


def test_admin_imports_generates_and_exports(browser, app, tmp_path):
    url, db = app
    rater = signed_in(url, "rita")  # one rating with a correction to export
    page = rater.get("/rate").text
    cid = re.search(r'name="comparison_id" value="(\d+)"', page).group(1)
    rater.post("/rate", data={"csrf_token": csrf_of(page), "comparison_id": cid, "choice": "left",
                              "wrong_right": "on", "correction": "Fixed answer."})
    page = browser.new_page()
    sign_in(page, url, "ada", start="/")
    assert page.url.endswith("/admin")  # an admin's start page
    upload = tmp_path / "new.jsonl"
    upload.write_text('{"prompt": "Who keeps the lantern ledger?", "reference": "Marguerite"}\n'
                      '{"question": "When is the winter fair?", "answer": "December"}\n')
    page.set_input_files("input[type=file]", str(upload))
    page.click("button:has-text('Import')")
    page.wait_for_selector("text=Imported 2 prompts from new.jsonl")
    assert "2 prompts wait for answers" in page.inner_text("main")
    page.click("button:has-text('Write answers with the model')")
    page.wait_for_selector("text=0 prompts wait for answers", timeout=180_000)  # the page polls, then reloads
    assert "5 comparisons" in page.inner_text("main")
    with page.expect_download() as dl:
        page.click("a:has-text('pairs.jsonl')")
    pairs = [json.loads(x) for x in open(dl.value.path()).read().splitlines()]
    assert any(p["chosen"] == "Fixed answer." for p in pairs) and all({"prompt", "chosen", "rejected"} <= set(p) for p in pairs)
    with page.expect_download() as dl:
        page.click("a:has-text('corrections.jsonl')")
    [c] = [json.loads(x) for x in open(dl.value.path()).read().splitlines()]
    assert c["messages"][-1] == {"role": "assistant", "content": "Fixed answer."}
    page.close()


def test_a_rater_cannot_reach_admin_pages(browser, app):
    url, _ = app
    page = browser.new_page()
    sign_in(page, url, "rita")
    for path in ("/admin", "/admin/export/pairs.jsonl", "/admin/jobs.json"):
        response = page.goto(url + path)
        assert response.status == 403, path
        assert "This page is for admins" in page.inner_text("main")
    assert page.locator("a:has-text('Admin')").count() == 0  # and no link to them
    page.close()


def test_requests_without_a_csrf_token_are_refused(app):
    url, db = app
    client = signed_in(url, "rita")
    page = client.get("/rate").text
    cid = re.search(r'name="comparison_id" value="(\d+)"', page).group(1)
    for token in (None, "forged-token"):
        data = {"comparison_id": cid, "choice": "left", **({"csrf_token": token} if token else {})}
        r = client.post("/rate", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert ratings_in(db) == []
    anonymous = httpx.Client(base_url=url)
    r = anonymous.post("/login", data={"name": "rita", "password": PASSWORD})
    assert r.status_code == 403  # the login form needs its token too
    r = client.post("/rate", data={"csrf_token": csrf_of(page), "comparison_id": cid, "choice": "left"})
    assert r.status_code == 303 and len(ratings_in(db)) == 1  # the same request with the token is accepted


def test_failed_logins_are_rate_limited_and_there_are_no_default_accounts(app):
    url, _ = app
    client = httpx.Client(base_url=url)
    for name, password in (("admin", "admin"), ("admin", "password"), ("root", "root")):
        r = client.post("/login", data={"name": name, "password": password, "csrf_token": csrf_of(client.get("/login").text)})
        assert r.status_code == 401
    for _ in range(5):
        r = client.post("/login", data={"name": "rita", "password": "guess", "csrf_token": csrf_of(client.get("/login").text)})
        assert r.status_code == 401 and "Wrong name or password" in r.text
    r = client.post("/login", data={"name": "rita", "password": PASSWORD, "csrf_token": csrf_of(client.get("/login").text)})
    assert r.status_code == 429 and "Too many failed sign-ins" in r.text  # even the right password waits now
    signed_in(url, "ada")  # other accounts are not locked out by rita's guesser
