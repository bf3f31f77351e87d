"""The runs dashboard in a real browser (Playwright driving Debian's Chromium) against the real server on
127.0.0.1: the runs list, a run page (figures, per-fact table with escaped model output, curves, settings), two
runs side by side, a teach started from an uploaded file followed live to "done"; a rater sees runs but cannot
start one, and nobody reaches a file outside the runs folder."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from conftest import small_pack
from feedback_helpers import csrf_of, make_db, signed_in, start_feedback
from test_feedback_web import browser, sign_in  # noqa: F401  (the module's browser fixture)

runner = CliRunner()


@pytest.fixture(scope="module")
def taught(tmp_path_factory, tiny_model):
    """A runs folder with two finished tiny teach runs (different learning rates) and a base config for new ones."""
    from knowtune.cli import app

    root = tmp_path_factory.mktemp("dash")
    runs = root / "runs"
    pack = small_pack(root / "pack.yaml", n_facts=3)
    for name, lr in (("alpha", "5e-3"), ("beta", "1e-2")):
        got = runner.invoke(app, ["teach", str(pack), "--model", str(tiny_model), "--out", str(runs / name),
                                  "--epochs", "2", "--learning-rate", lr, "--batch-size", "4",
                                  "--set", "unknown_questions=0", "--no-tensorboard"])
        assert got.exit_code == 0, got.output
    audit = json.loads((runs / "alpha" / "audit.json").read_text())  # model output with markup, to be escaped
    audit["facts"][0]["example_output"] = "<script>window.pwned = 1</script><b>bold?</b>"
    (runs / "alpha" / "audit.json").write_text(json.dumps(audit))
    base = root / "base.yaml"
    base.write_text(yaml.safe_dump({"model": str(tiny_model), "batch_size": 4, "unknown_questions": 0,
                                    "min_epochs": 1, "tensorboard": False}))
    return root, runs, pack, base


@pytest.fixture
def server(taught, tmp_path):
    root, runs, pack, base = taught
    db = make_db(tmp_path / "app.db", ["rita"], ["ada"])
    proc, url = start_feedback(db, tmp_path / "home", None, "--runs", str(runs), "--teach-config", str(base))
    yield url, runs, pack
    proc.kill()
    proc.wait()


def test_runs_list_run_page_and_comparison(browser, server):  # noqa: F811
    url, runs, _ = server
    page = browser.new_page()
    sign_in(page, url, "rita", start="/runs")
    assert page.url.endswith("/runs")
    rows = page.locator("#runs tbody tr")
    assert rows.count() == 2
    text = page.inner_text("#runs")
    assert "alpha" in text and "beta" in text and "teach" in text and "done" in text and "pack.yaml" in text
    assert page.locator("#new-run").count() == 0  # a rater sees no form to start runs

    page.click("a:has-text('alpha')")
    assert page.url.endswith("/runs/alpha")
    assert "Held-out questions" in page.inner_text("#figures")
    facts = page.inner_text("#facts")
    assert "founder" in facts and "<script>window.pwned = 1</script><b>bold?</b>" in facts  # shown as text
    assert page.evaluate("typeof window.pwned") == "undefined" and page.locator("#facts b").count() == 0
    assert page.locator("svg.curve polyline").count() >= 1  # the training-loss curve
    assert "learning_rate" in page.inner_text("#settings")
    assert page.locator("img.plot").count() >= 1
    plot = page.locator("img.plot").first.get_attribute("src")
    assert page.evaluate(f"fetch({json.dumps(plot)}).then(r => r.status)") == 200

    page.goto(url + "/runs")
    page.check("input[value=alpha]")
    page.check("input[value=beta]")
    page.click("button:has-text('Compare the two ticked runs')")
    assert "/runs/compare" in page.url
    assert "learning_rate" in page.inner_text("#compare-settings")  # the one setting that differs
    assert "probe accuracy after" in page.inner_text("#compare-figures")
    assert page.locator("#compare-facts tbody tr").count() == 3
    page.close()


def test_admin_starts_a_teach_and_follows_it_to_done(browser, server):  # noqa: F811
    url, runs, pack = server
    page = browser.new_page()
    sign_in(page, url, "ada", start="/runs")
    page.fill("input[name=name]", "from-the-page")
    page.set_input_files("input[type=file]", str(pack))
    page.fill("input[name=epochs]", "1")
    page.fill("input[name=learning_rate]", "5e-3")
    page.click("button:has-text('Start teaching')")
    page.wait_for_url("**/runs/from-the-page")
    page.wait_for_selector("#run-status.done", timeout=240_000)  # the page polls progress.json, then reloads
    assert "Held-out questions" in page.inner_text("#figures")
    settings = yaml.safe_load((runs / "from-the-page" / "config.yaml").read_text())
    assert settings["epochs"] == 1 and settings["learning_rate"] == 5e-3 and settings["tensorboard"] is False
    assert (runs / "from-the-page" / "audit.json").exists()
    page.goto(url + "/runs")
    assert "from-the-page" in page.inner_text("#runs")
    page.close()


def test_a_rater_cannot_start_runs_and_paths_stay_inside(server):
    url, runs, pack = server
    rater = signed_in(url, "rita")
    token = csrf_of(rater.get("/runs").text)
    r = rater.post("/runs/new", files={"csrf_token": (None, token), "name": (None, "sneaky"),
                                        "file": ("pack.yaml", pack.read_bytes())}, follow_redirects=False)
    assert r.status_code == 403 and "This page is for admins" in r.text
    assert not (runs / "sneaky").exists()
    admin = signed_in(url, "ada")
    r = admin.post("/runs/new", files={"name": (None, "nocsrf"), "file": ("pack.yaml", pack.read_bytes())})
    assert r.status_code in (400, 403) and not (runs / "nocsrf").exists()
    for path in ("/runs/..%2F..%2Fetc", "/runs/alpha/plots/..%2Fconfig.yaml", "/runs/alpha/plots/loss.png%00",
                 "/runs/nothing"):
        assert admin.get(path).status_code in (404, 422), path
    assert httpx.get(url + "/runs", follow_redirects=False).status_code == 303  # signed out: to the sign-in page
