"""The rating store under load and under a crash, over real HTTP against the real server.

Load: 20 raters post 100 ratings each at the same time: every acknowledged rating is stored once, none is
lost or doubled, and nobody is shown "database is locked". Fault: the server is killed with SIGKILL while
raters are writing: the database passes `PRAGMA integrity_check` and holds every rating that was
acknowledged before the kill."""

from __future__ import annotations

import signal
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from feedback_helpers import make_db, prompts, rate_next, signed_in, start_feedback


def stored(db: str) -> list[tuple[int, int]]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT r.rater_id, r.comparison_id FROM ratings r ORDER BY 1, 2").fetchall()


def rater_ids(db: str) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT name, id FROM users"))


def test_twenty_raters_posting_at_once_lose_and_double_nothing(tmp_path):
    names = [f"rater{i:02d}" for i in range(20)]
    db = make_db(tmp_path / "load.db", names, prompts=prompts(100))
    proc, url = start_feedback(db, tmp_path / "home")
    bodies: list[str] = []

    def work(name: str) -> list[int]:
        client = signed_in(url, name)
        client.event_hooks["response"] = [lambda r: (r.read(), bodies.append(r.text))]
        done = [rate_next(client) for _ in range(100)]
        assert rate_next(client) is None  # all 100 rated: nothing left for this rater
        return done

    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            acknowledged = dict(zip(names, pool.map(work, names)))
    finally:
        proc.kill()
        proc.wait()
    assert not any("database is locked" in b.lower() for b in bodies)
    ids = rater_ids(db)
    expected = sorted((ids[n], cid) for n, cids in acknowledged.items() for cid in cids)
    assert all(len(set(cids)) == 100 for cids in acknowledged.values())
    assert stored(db) == expected  # 2,000 rows: each acknowledged rating once, nothing else


def test_a_server_killed_mid_write_keeps_every_acknowledged_rating(tmp_path):
    names = [f"rater{i}" for i in range(8)]
    db = make_db(tmp_path / "fault.db", names, prompts=prompts(400))
    proc, url = start_feedback(db, tmp_path / "home")
    acknowledged: list[tuple[str, int]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def work(name: str) -> None:
        client = signed_in(url, name)
        try:
            while True:
                cid = rate_next(client)
                with lock:
                    acknowledged.append((name, cid))
                    if len(acknowledged) >= 150:
                        enough.set()
        except (httpx.TransportError, AssertionError):
            return  # the server is gone

    threads = [threading.Thread(target=work, args=(n,)) for n in names]
    for t in threads:
        t.start()
    assert enough.wait(300), "the raters did not get going"
    proc.send_signal(signal.SIGKILL)  # mid-write: eight raters are posting right now
    proc.wait()
    for t in threads:
        t.join(60)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    ids = rater_ids(db)
    rows = set(stored(db))
    assert {(ids[n], cid) for n, cid in acknowledged} <= rows  # nothing acknowledged was lost
    assert len(rows) <= len(acknowledged) + len(names)  # at most the in-flight ones beyond that
    proc, url = start_feedback(db, tmp_path / "home")  # and the app starts again on the same file
    try:
        assert rate_next(signed_in(url, names[0])) is not None
    finally:
        proc.kill()
        proc.wait()
