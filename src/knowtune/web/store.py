"""The rating store: the tables of the human-feedback app and every read and write it makes.

SQLite by default, set up for many raters writing at once: WAL (readers never wait for the writer), a 30 s
busy timeout, `synchronous=FULL` (a rating acknowledged to a rater is on disk), and every write transaction
opened with BEGIN IMMEDIATE, so two writers queue on the lock instead of one failing with "database is
locked" when it tries to upgrade a read to a write. Any other SQLAlchemy URL (Postgres, MySQL) works too.

A SQLite file and its -wal/-shm files are readable by their owner only (0600): they hold password hashes
and every rating. The cookie-signing key is not in the database but in a file of its own (`keyfile`).
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import (Boolean, DateTime, ForeignKey, Integer, String, Text, UniqueConstraint, create_engine, event,
                        delete, func, inspect, make_url, select, text, update)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from knowtune.errors import KnowtuneError
from knowtune.web import keyfile

ROLES = ("admin", "rater")
CHOICES = ("a", "b", "tie")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    role: Mapped[str] = mapped_column(String(10))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Carried in the session cookie and compared on every request; sign-out, a new password and disabling
    # add one, so every cookie signed before stops working (added to older databases by `_migrate`).
    session_version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Prompt(Base):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text, unique=True)
    reference: Mapped[str | None] = mapped_column(Text, nullable=True)  # a known right answer, if the import had one
    source: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Answer(Base):
    __tablename__ = "answers"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Comparison(Base):
    """One prompt and two of its answers, shown side by side."""
    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    answer_a_id: Mapped[int] = mapped_column(ForeignKey("answers.id"))
    answer_b_id: Mapped[int] = mapped_column(ForeignKey("answers.id"))


class Rating(Base):
    """One rater's verdict on one comparison; rating it again replaces the verdict (no duplicates)."""
    __tablename__ = "ratings"
    __table_args__ = (UniqueConstraint("comparison_id", "rater_id", name="one_rating_per_rater"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), index=True)
    rater_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    choice: Mapped[str] = mapped_column(String(4))  # a | b | tie
    score_a: Mapped[int | None] = mapped_column(Integer, nullable=True)  # 1..5
    score_b: Mapped[int | None] = mapped_column(Integer, nullable=True)
    wrong_a: Mapped[bool] = mapped_column(Boolean, default=False)  # flagged: states a wrong fact
    wrong_b: Mapped[bool] = mapped_column(Boolean, default=False)
    correction: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class LoginAttempt(Base):
    """One password check. Written (ok=False) before the check runs and set ok=True when it succeeded, so a
    check still running counts against the limit like a failure (`Store.begin_login`)."""
    __tablename__ = "login_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(80), index=True)
    ip: Mapped[str] = mapped_column(String(64), index=True)
    ok: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20), default="running")  # running | done | failed | interrupted
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class Meta(Base):
    """Settings. (It held the cookie-signing key before the key got a file of its own; `_migrate` drops it.)"""
    __tablename__ = "meta"
    key: Mapped[str] = mapped_column(String(80), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def database_url(db: str) -> str:
    """A SQLAlchemy URL as given, or a file path turned into a SQLite URL."""
    return db if "://" in db else f"sqlite:///{Path(db).expanduser()}"


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and for an in-memory SQLite."""
    parsed = make_url(url)
    name = parsed.database
    if parsed.get_backend_name() != "sqlite" or not name or name == ":memory:" or name.startswith("file:"):
        return None
    return Path(name)


def default_key_file(url: str) -> Path | None:
    """Where the cookie-signing key lives when --key-file is not given: next to a SQLite file."""
    path = sqlite_file(url)
    return None if path is None else path.with_name(path.name + ".key")


def make_engine(url: str):
    url = database_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, pool_size=10, max_overflow=20, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # the driver must not open transactions itself: BEGIN is ours
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=30000", "synchronous=FULL", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


class Store:
    """Every query of the rating app, each in its own short transaction."""

    def __init__(self, db: str):
        self.url = database_url(db)
        self.file = sqlite_file(self.url)
        if self.file is not None and self.file.parent.is_dir() and not keyfile.create_private_file(self.file):
            keyfile.make_private(self.file)  # it was there already: mend a 0644 one from an older knowtune
        try:
            self.engine = make_engine(self.url)
            self._writer = self.engine.execution_options(write=True)
            Base.metadata.create_all(self.engine)
            self._migrate()
        except KnowtuneError:
            raise
        except Exception as exc:
            raise KnowtuneError(f"Could not open the database {self.url}: {exc}",
                                fix="check --db (a file path or a SQLAlchemy URL such as postgresql://user@host/db).") from exc
        self.check_private()

    def check_private(self) -> None:
        """The database and its -wal/-shm files readable by their owner only. SQLite gives the -wal and -shm
        files the database file's mode, so a 0600 database gives 0600 companions; this also mends files made
        by an older knowtune (0644) and is run once more after the first connection made them."""
        if self.file is not None:
            for suffix in ("", "-wal", "-shm", "-journal"):
                keyfile.make_private(self.file.with_name(self.file.name + suffix))

    def _migrate(self) -> None:
        """Bring a database made by an older knowtune up to date: add users.session_version (every user at 1:
        cookies from before carry no version and are refused, so everyone signs in once more) and delete the
        cookie-signing key the database used to hold. That key is not reused: the file was readable by
        others, so whoever read it could sign cookies; the key file gets a fresh one."""
        columns = {c["name"] for c in inspect(self.engine).get_columns("users")}
        if "session_version" not in columns:
            try:
                with self.write() as s:
                    s.execute(text("ALTER TABLE users ADD COLUMN session_version INTEGER NOT NULL DEFAULT 1"))
            except OperationalError:  # another process added it first
                if "session_version" not in {c["name"] for c in inspect(self.engine).get_columns("users")}:
                    raise
        with self.read() as s:  # read first: opening a database to read ratings must not need write access
            legacy_key = s.get(Meta, "session_secret")
        if legacy_key is not None:
            with self.write() as s:
                s.execute(delete(Meta).where(Meta.key == "session_secret"))

    @contextmanager
    def read(self):
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def write(self):
        """A write transaction: BEGIN IMMEDIATE on SQLite; committed on leaving, rolled back on error."""
        with Session(self._writer, expire_on_commit=False) as s, s.begin():
            yield s

    # --- the cookie-signing key -------------------------------------------------------------------
    def key_file(self, given: str | Path | None = None) -> Path:
        """The key file: `given`, or `<database file>.key`; other databases (Postgres...) need it given."""
        path = Path(given).expanduser() if given else default_key_file(self.url)
        if path is None:
            raise KnowtuneError(f"{self.url} is not a SQLite file, so there is no folder to keep the cookie-signing key in.",
                                fix="give --key-file PATH (a file only the server's user can read; it is made if missing).")
        return path

    def signing_key(self, given: str | Path | None = None) -> keyfile.SigningKey:
        """The server's key, made (0600) on first use."""
        path = self.key_file(given)
        keyfile.ensure_key(path)
        key = keyfile.SigningKey(path)
        key.current()  # refuse to start with a key others can read
        return key

    # --- users ------------------------------------------------------------------------------------
    def add_user(self, name: str, role: str, password_hash: str) -> User:
        if role not in ROLES:
            raise KnowtuneError(f"Unknown role {role!r}.", fix="use --role admin or --role rater.")
        name = name.strip()
        if not name or len(name) > 80:
            raise KnowtuneError("A user name must be 1 to 80 characters.", fix="choose another name.")
        try:
            with self.write() as s:
                user = User(name=name, role=role, password_hash=password_hash)
                s.add(user)
            return user
        except IntegrityError as exc:
            raise KnowtuneError(f"A user named {name!r} already exists.", fix="choose another name.") from exc

    def user(self, user_id: int) -> User | None:
        with self.read() as s:
            return s.get(User, user_id)

    def user_by_name(self, name: str) -> User | None:
        with self.read() as s:
            return s.scalar(select(User).where(User.name == name))

    def users(self) -> list[User]:
        with self.read() as s:
            return list(s.scalars(select(User).order_by(User.name)))

    def set_password(self, name: str, password_hash: str) -> User:
        """A new password; every session of the user ends (a stolen cookie too)."""
        return self._change_user(name, password_hash=password_hash)

    def set_active(self, name: str, active: bool) -> User:
        """Disable (every session ends at once; sign-in refused) or enable a user."""
        return self._change_user(name, active=active)

    def _change_user(self, name: str, **values) -> User:
        with self.write() as s:
            user = s.scalar(select(User).where(User.name == name.strip()))
            if user is None:
                raise KnowtuneError(f"No user named {name!r} in {self.url}.",
                                    fix="check the name (the admin page lists users) and --db.")
            for k, v in values.items():
                setattr(user, k, v)
            user.session_version += 1
            return user

    def end_sessions(self, user_id: int) -> None:
        """Sign-out: the user's version goes up, so every cookie carrying the old one is refused."""
        with self.write() as s:
            s.execute(update(User).where(User.id == user_id).values(session_version=User.session_version + 1))

    def update_password_hash(self, user_id: int, password_hash: str) -> None:
        """The same password hashed again at today's cost (sessions stay: the password did not change)."""
        with self.write() as s:
            s.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))

    def begin_login(self, name: str, ip: str, window: timedelta, max_per_name: int, max_per_ip: int) -> int | None:
        """Claim one password check: the id of an attempt recorded as failed (it turns ok in `login_succeeded`),
        or None when the name or the address already has its limit of failed and running checks.

        Counting and recording happen in one BEGIN IMMEDIATE transaction, so parallel guesses queue here and
        each sees the ones before it: 40 at once for one name get 5 checks, not one per request."""
        since = utcnow() - window
        with self.write() as s:
            q = select(func.count()).select_from(LoginAttempt).where(LoginAttempt.ok.is_(False), LoginAttempt.at >= since)
            if (s.scalar(q.where(LoginAttempt.name == name[:80])) >= max_per_name
                    or s.scalar(q.where(LoginAttempt.ip == ip[:64])) >= max_per_ip):
                return None
            attempt = LoginAttempt(name=name[:80], ip=ip[:64], ok=False)
            s.add(attempt)
            s.flush()
            return attempt.id

    def login_succeeded(self, attempt_id: int) -> None:
        with self.write() as s:
            s.execute(update(LoginAttempt).where(LoginAttempt.id == attempt_id).values(ok=True))

    # --- prompts and answers ----------------------------------------------------------------------
    def import_prompts(self, rows: list[dict], source: str, model: str = "import") -> dict:
        """Add prompts (skipping ones already there); rows with two or more answers become comparisons."""
        added = skipped = comparisons = 0
        with self.write() as s:
            for row in rows:
                prompt = s.scalar(select(Prompt).where(Prompt.text == row["prompt"]))
                if prompt is None:
                    prompt = Prompt(text=row["prompt"], reference=row.get("reference"), source=source)
                    s.add(prompt)
                    s.flush()
                    added += 1
                else:
                    skipped += 1
                if row.get("answers"):
                    comparisons += self._add_answers(s, prompt.id, row["answers"], model)
        return {"added": added, "skipped": skipped, "comparisons": comparisons}

    def add_answers(self, prompt_id: int, texts: list[str], model: str) -> int:
        with self.write() as s:
            return self._add_answers(s, prompt_id, texts, model)

    @staticmethod
    def _add_answers(s: Session, prompt_id: int, texts: list[str], model: str) -> int:
        """Store answers and pair them up: answers 1+2, 3+4, ... each become a comparison."""
        answers = [Answer(prompt_id=prompt_id, text=t, model=model) for t in texts]
        s.add_all(answers)
        s.flush()
        pairs = [(answers[i], answers[i + 1]) for i in range(0, len(answers) - 1, 2)]
        s.add_all(Comparison(prompt_id=prompt_id, answer_a_id=a.id, answer_b_id=b.id) for a, b in pairs)
        return len(pairs)

    def prompts_without_comparison(self) -> list[Prompt]:
        with self.read() as s:
            has = select(Comparison.prompt_id)
            return list(s.scalars(select(Prompt).where(Prompt.id.not_in(has)).order_by(Prompt.id)))

    # --- rating -----------------------------------------------------------------------------------
    def next_comparison(self, rater_id: int) -> dict | None:
        """The next comparison this rater has not rated: the least-rated first, so every answer gets a rating
        before any gets a second (the second ratings are what agreement is measured on)."""
        with self.read() as s:
            mine = select(Rating.comparison_id).where(Rating.rater_id == rater_id)
            n = select(func.count()).select_from(Rating).where(Rating.comparison_id == Comparison.id).scalar_subquery()
            comp = s.scalar(select(Comparison).where(Comparison.id.not_in(mine)).order_by(n, Comparison.id).limit(1))
            return None if comp is None else self._comparison(s, comp)

    def comparison(self, comparison_id: int) -> dict | None:
        with self.read() as s:
            comp = s.get(Comparison, comparison_id)
            return None if comp is None else self._comparison(s, comp)

    @staticmethod
    def _comparison(s: Session, comp: Comparison) -> dict:
        prompt = s.get(Prompt, comp.prompt_id)
        return {"id": comp.id, "prompt": prompt.text, "reference": prompt.reference,
                "a": s.get(Answer, comp.answer_a_id).text, "b": s.get(Answer, comp.answer_b_id).text}

    def save_rating(self, rater_id: int, comparison_id: int, choice: str, score_a: int | None = None,
                    score_b: int | None = None, wrong_a: bool = False, wrong_b: bool = False,
                    correction: str | None = None) -> bool:
        """Insert or replace this rater's rating of the comparison; True when it was new."""
        values = dict(choice=choice, score_a=score_a, score_b=score_b, wrong_a=wrong_a, wrong_b=wrong_b,
                      correction=(correction or "").strip() or None, updated_at=utcnow())
        for attempt in range(2):  # a concurrent insert of the same pair (possible outside SQLite) becomes an update
            try:
                with self.write() as s:
                    if s.get(Comparison, comparison_id) is None:
                        raise KnowtuneError(f"No comparison {comparison_id}.", fix="reload the rating page.")
                    row = s.scalar(select(Rating).where(Rating.comparison_id == comparison_id, Rating.rater_id == rater_id))
                    if row is None:
                        s.add(Rating(comparison_id=comparison_id, rater_id=rater_id, **values))
                        return True
                    for k, v in values.items():
                        setattr(row, k, v)
                    return False
            except IntegrityError:
                if attempt:
                    raise
        return False

    def progress(self, rater_id: int) -> tuple[int, int]:
        """(comparisons this rater has rated, comparisons in all)."""
        with self.read() as s:
            done = s.scalar(select(func.count()).select_from(Rating).where(Rating.rater_id == rater_id))
            return done, s.scalar(select(func.count()).select_from(Comparison))

    def counts(self) -> dict:
        with self.read() as s:
            n = lambda t: s.scalar(select(func.count()).select_from(t))  # noqa: E731
            return {"prompts": n(Prompt), "answers": n(Answer), "comparisons": n(Comparison), "ratings": n(Rating),
                    "raters": s.scalar(select(func.count(func.distinct(Rating.rater_id)))),
                    "corrections": s.scalar(select(func.count()).select_from(Rating).where(Rating.correction.is_not(None)))}

    def rating_rows(self) -> list[dict]:
        """Every rating joined with its prompt, both answers and the rater's name (for exports and agreement)."""
        with self.read() as s:
            q = (select(Rating, Comparison, Prompt, User.name)
                 .join(Comparison, Rating.comparison_id == Comparison.id)
                 .join(Prompt, Comparison.prompt_id == Prompt.id).join(User, Rating.rater_id == User.id)
                 .order_by(Rating.comparison_id, Rating.id))
            answers = {a.id: a.text for a in s.scalars(select(Answer))}
            return [{"comparison_id": c.id, "prompt": p.text, "reference": p.reference, "a": answers[c.answer_a_id],
                     "b": answers[c.answer_b_id], "rater": name, "choice": r.choice, "score_a": r.score_a,
                     "score_b": r.score_b, "wrong_a": r.wrong_a, "wrong_b": r.wrong_b, "correction": r.correction}
                    for r, c, p, name in s.execute(q)]

    # --- background jobs --------------------------------------------------------------------------
    def create_job(self, kind: str, total: int, message: str = "") -> int:
        with self.write() as s:
            job = Job(kind=kind, total=total, message=message)
            s.add(job)
            s.flush()
            return job.id

    def update_job(self, job_id: int, **values) -> None:
        with self.write() as s:
            job = s.get(Job, job_id)
            for k, v in {**values, "updated_at": utcnow()}.items():
                setattr(job, k, v)

    def jobs(self, limit: int = 20) -> list[dict]:
        with self.read() as s:
            return [{"id": j.id, "kind": j.kind, "status": j.status, "total": j.total, "done": j.done,
                     "message": j.message, "created_at": j.created_at.isoformat(timespec="seconds")}
                    for j in s.scalars(select(Job).order_by(Job.id.desc()).limit(limit))]

    def mark_stale_jobs(self) -> int:
        """Jobs left 'running' by a server that stopped: mark them interrupted (a new job resumes the work)."""
        with self.write() as s:
            stale = list(s.scalars(select(Job).where(Job.status == "running")))
            for j in stale:
                j.status, j.message = "interrupted", "the server stopped; start it again to finish the rest"
            return len(stale)
