"""Personal data in training text: find it (`find_pii`), count it per file and line (`knowtune check --pii`,
values never printed), and replace it with typed placeholders (`--scrub-pii`) before anything reaches a run
folder.

Standing on Presidio's recognisers where they serve: emails (with a real top-level domain), payment cards (Luhn),
IBANs (the country's length and mod-97), IP addresses, US social security numbers (issued ranges), UK National
Insurance numbers (issued prefixes); phone numbers through python-phonenumbers. Presidio has no recogniser for
URLs with credentials, API keys, postal addresses, and its person names need a spaCy NER model, which is not on
PyPI (and so cannot be installed here); those are written below: patterns for the first three, and for names a
gazetteer (the person-name lists of Faker's locales) with the cues people's names come with (greetings,
sign-offs, honorifics, "my name is", "spoke with"), in `data/names.py`.

Scrubbing is consistent within a record: the same value gets the same placeholder everywhere in the record
(`<PERSON>` for the first name of a record, `<PERSON_2>` for a second one; a first name alone that belongs to a
full name found in the record gets that name's placeholder).
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import Any, Iterator

from knowtune.data.names import Found, persons, table_names

KINDS: dict[str, str] = {
    "EMAIL": "email addresses", "PHONE": "phone numbers", "CARD": "payment cards (Luhn)",
    "IBAN": "IBANs (mod-97)", "IP": "IP addresses", "URL_CREDENTIALS": "URLs with a user name and password",
    "SECRET": "API keys, tokens and passwords", "SSN": "US social security numbers",
    "NINO": "UK National Insurance numbers", "ADDRESS": "postal addresses", "PERSON": "person names",
}


# --- Presidio's recognisers --------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _presidio():
    """(kind, recogniser, minimum score, context words that admit a weaker match) for the Presidio kinds."""
    _offline_tld_list()
    from presidio_analyzer.predefined_recognizers import (CreditCardRecognizer, EmailRecognizer, IbanRecognizer,
                                                          IpRecognizer, UkNinoRecognizer, UsSsnRecognizer)

    return [("EMAIL", EmailRecognizer(), 0.5, ()), ("CARD", CreditCardRecognizer(), 0.5, ()),
            ("IBAN", IbanRecognizer(), 0.5, ()), ("IP", IpRecognizer(), 0.5, ()),
            ("NINO", UkNinoRecognizer(), 0.5, ()),
            ("SSN", UsSsnRecognizer(), 0.5, ("ssn", "social security", "social-security", "ss#", "ss #"))]


def _offline_tld_list() -> None:
    """Presidio checks an email's domain with tldextract, which fetches the public-suffix list from the internet
    on first use; the list tldextract ships is used instead (no network, no warning traceback in the log)."""
    import tldextract.tldextract as tx

    if tx.TLD_EXTRACTOR.suffix_list_urls:
        tx.TLD_EXTRACTOR = tx.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _context_before(text: str, start: int, words: tuple[str, ...], width: int = 40) -> bool:
    before = text[max(0, start - width):start].lower()
    return any(w in before for w in words)


CARD_2_SERIES = re.compile(r"(?<![\w-])2(?:2[2-9]\d|[3-6]\d\d|7[01]\d|720)(?:[ \-]?\d{4}){3}(?![\w-])")


def luhn(digits: str) -> bool:
    total = 0
    for i, d in enumerate(reversed(digits)):
        n = int(d) * (2 if i % 2 else 1)
        total += n - 9 if n > 9 else n
    return total % 10 == 0


def _cards_2_series(text: str) -> list[Found]:
    """Mastercard's 2221-2720 range (since 2017), which Presidio's card pattern does not cover; Luhn-checked."""
    return [Found(m.start(), m.end(), "CARD") for m in CARD_2_SERIES.finditer(text)
            if luhn(re.sub(r"\D", "", m.group(0)))]


def _presidio_found(text: str) -> list[Found]:
    found = []
    for kind, rec, min_score, context in _presidio():
        for r in rec.analyze(text, rec.supported_entities, None):
            if kind == "SSN" and not re.fullmatch(r"\d{3}([- .]?)\d{2}\1\d{4}", text[r.start:r.end]):
                continue  # 12345-6789 is a ZIP+4 code; an SSN is written 3-2-4
            if kind == "EMAIL" and re.match(r":[\w.\-]+/", text[r.end:]):
                continue  # git@github.com:org/repo.git: a git remote, not a person's address
            if r.score >= min_score or (context and r.score > 0 and _context_before(text, r.start, context, 70)):
                found.append(Found(r.start, r.end, kind, r.score))
    return found + _cards_2_series(text)


# --- Phone numbers (python-phonenumbers) --------------------------------------------------------------------

PHONE_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PL", "BR", "IE", "IN", "CA", "AU", "BE", "AT", "CH",
                 "SE", "DK", "NO", "FI", "PT", "MX", "TR", "NZ", "ZA", "NG", "JP")
PHONE_CONTEXT = ("phone", "tel", "call", "mobile", "mob", "cell", "ring", "text me", "whatsapp", "fax", "reach", "direct",
                 "contact", "landline", "office", "voicemail", "sms", "number is", "my number")
# national formats a number written for people takes: North American (555) 123-4567, and trunk-prefixed
# numbers such as 020 7946 0958 or 01 23 45 67 89
PHONE_SHAPES = re.compile(r"^(?:(?:1[\s.\-]?)?\(?\d{3}\)?[\s.\-]?\d{3}[\s.\-]\d{4}|\(?0\d{1,4}\)?(?:[\s.\-/]?\d{2,8}){1,4}"
                          r"|0[\s.\-]?\(\d{2,5}\)(?:[\s.\-]?\d{2,4}){2,4})$")
NOT_PHONE_CONTEXT = re.compile(r"(?i)(?:order|ticket|invoice|part|sku|ref|reference|tracking|serial|case|account|card|"
                               r"acct|po|item|batch|lot|build|version|model|code|id|no\.?|number|#)\W{0,3}$")
DATE_LIKE = re.compile(r"^(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})$")


def _phones(text: str) -> list[Found]:
    """Numbers python-phonenumbers accepts as possible for one of the regions, kept when they are written the
    way phone numbers are (a + or 00 prefix, a national format) or follow a word like 'phone', and are not part
    of a longer code, a date, or an order, ticket or part number."""
    import phonenumbers

    found: dict[tuple[int, int], Found] = {}
    for region in PHONE_REGIONS:
        for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.POSSIBLE):
            raw, a, b = m.raw_string, m.start, m.end
            if raw.startswith("(") and raw.count("(") > raw.count(")"):
                raw, a = raw[1:], a + 1  # "(+44 151 545 8865)": the bracket around the number is not part of it
            groups = [g for g in re.split(r"[\s.\-/()]+", raw) if g]
            if (a, b) in found or not 7 <= sum(c.isdigit() for c in raw) <= 15 or DATE_LIKE.match(raw):
                continue
            if (a and (text[a - 1].isalnum() or text[a - 1] in "-_/#")) or (b < len(text) and (
                    text[b].isalnum() or (text[b] in "-_/" and b + 1 < len(text) and text[b + 1].isalnum()))):
                continue  # inside a longer code: ORD-2024-118273, 1Z999AA10123456784
            if re.search(r"\d[ .\-]$", text[max(0, a - 2):a]) or re.match(r"[ .\-]\d", text[b:b + 2]):
                continue  # the tail or head of a longer digit run (a card number that failed Luhn)
            international = raw.lstrip("(").startswith(("+", "00"))
            if not international and any(len(g) == 1 for g in groups[1:]):
                continue  # a one-digit group outside a country code: a version (10.0.19045), not a phone
            cued = _context_before(text, a, PHONE_CONTEXT, 30)
            before = text[max(0, a - 25):a]
            if NOT_PHONE_CONTEXT.search(before) and not re.search(r"(?i)(?:phone|tel|mobile|cell|fax)\W*(?:no\.?|number|#)?\W{0,3}$", before):
                continue
            if international or PHONE_SHAPES.match(raw) or cued:
                found[(a, b)] = Found(a, b, "PHONE", 0.6)
    # an extension written after the number belongs to it
    out = []
    for f in found.values():
        ext = re.match(r"\s*(?:x|ext\.?|extension)\s*\d{1,6}", text[f.end:], re.I)
        out.append(Found(f.start, f.end + (ext.end() if ext else 0), "PHONE", f.score))
    return out


# --- Patterns Presidio lacks --------------------------------------------------------------------------------

URL_CREDENTIALS = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]{1,20}://[^\s/:@'\"<>]*:[^\s/@'\"<>]+@[^\s'\"<>]+")
SECRET_PATTERNS = [
    re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"),  # AWS access key ids
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),  # GitHub tokens
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{40,}\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack
    re.compile(r"\b(?:sk|pk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b"),  # Stripe
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_\-]{20,}"),  # OpenAI / Anthropic style
    re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"),  # Google API keys
    re.compile(r"\bglpat-[A-Za-z0-9_\-]{20}\b"),  # GitLab
    re.compile(r"\bSG\.[\w\-]{16,}\.[\w\-]{16,}"),  # SendGrid
    re.compile(r"\bdop_v1_[a-f0-9]{64}\b"),  # DigitalOcean
    re.compile(r"\bpypi-[A-Za-z0-9_\-]{50,}"),  # PyPI
    re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face
    re.compile(r"\b\d{8,10}:[A-Za-z0-9_\-]{35}\b"),  # Telegram bot tokens
    re.compile(r"\b(?:SK|AC)[0-9a-f]{32}\b"),  # Twilio
    re.compile(r"\bshp(?:at|ss|ca|pa)_[a-fA-F0-9]{32}\b"),  # Shopify
    re.compile(r"\bsq0(?:atp|csp)-[A-Za-z0-9_\-]{22,}"),  # Square
    re.compile(r"(?<=AccountKey=)[A-Za-z0-9+/=]{40,}"),  # Azure storage
    re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    re.compile(r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWT
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+?-----END [A-Z ]*PRIVATE KEY-----"),
]
# a value after a key-like name: `api_key=...`, `AWS_SECRET_ACCESS_KEY=...`, `token: ...`, `password is ...`
SECRET_ASSIGNED = re.compile(
    r"(?i)(?:\b|_)(?:api[_\- ]?key|apikey|access[_\- ]?key|secret|client[_\- ]?secret|token|bearer|password|passwd|"
    r"pwd|private[_\- ]?key|credentials?)[A-Za-z0-9_]*[\"']?\s*(?:[:=]|\bis\b|\bwas\b)?\s*[\"']?(?:bearer\s+)?"
    r"([A-Za-z0-9_\-+/=.~]{8,})")
TOKEN = re.compile(r"(?<![\w+/=\-.])[A-Za-z0-9_\-+/]{20,}={0,2}(?![\w+/=\-])")
SECRET_WORDS = re.compile(r"(?i)key|secret|token|passw|credential|bearer|auth")
HASH_WORDS = re.compile(r"(?i)sha|md5|checksum|hash|digest|commit|etag|fingerprint|revert|bisect|build|uuid|"
                        r"tracking|reference|ref\b|order|transaction")


def _entropy_like(value: str) -> bool:
    """A token rather than a word: long, mixed letters and digits (or long hex)."""
    if len(value) < 12 and not re.fullmatch(r"(?=.*\d)(?=.*[A-Za-z]).{8,}", value):
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d", r"[_\-+/=.~]"))
    return classes >= 2 and bool(re.search(r"\d", value)) and not re.fullmatch(r"v?\d+(?:\.\d+)+", value)


def _secrets(text: str) -> list[Found]:
    """Keys of a known shape (AWS, GitHub, Slack, Stripe, JWT, ...); a token-like value after a key-like name;
    and a long random token standing alone: mixed-case letters with digits (base64-like, 24+ characters), or 32-64
    hex digits after a word like key / secret / token on the same line (hex without one is a checksum or a
    commit)."""
    found = [Found(m.start(), m.end(), "SECRET") for p in SECRET_PATTERNS for m in p.finditer(text)]
    for m in SECRET_ASSIGNED.finditer(text):
        value = m.group(1).rstrip(".,;")
        if value.isalpha() and value.isupper():
            continue  # a placeholder: REDACTED, CHANGEME
        if _entropy_like(value) or re.search(r"(?i)password|passwd|pwd", m.group(0)[:20]):
            found.append(Found(m.start(1), m.start(1) + len(value), "SECRET"))
    for m in TOKEN.finditer(text):
        value = m.group(0).rstrip("-_")
        if "//" in value or (value.startswith("/") and any(re.fullmatch(r"[a-z]{3,}", p) for p in value.split("/"))):
            continue  # a path: /api/v2/orders/...
        line = text[text.rfind("\n", 0, m.start()) + 1:m.start()][-90:]
        if re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{40}|[0-9a-fA-F]{64}", value):
            if SECRET_WORDS.search(line) and not HASH_WORDS.search(line[-40:]):
                found.append(Found(m.start(), m.start() + len(value), "SECRET"))
        elif (len(value) >= 24 and re.search(r"[a-z]", value) and re.search(r"[A-Z]", value) and re.search(r"\d", value)
              and not HASH_WORDS.search(line[-30:])):
            found.append(Found(m.start(), m.start() + len(value), "SECRET"))
    return found


def _url_credentials(text: str) -> list[Found]:
    """URLs with a password in them; a masked one (`redis://:****@host`) holds none."""
    return [Found(m.start(), len(m.group(0).rstrip(".,;)")) + m.start(), "URL_CREDENTIALS")
            for m in URL_CREDENTIALS.finditer(text)
            if not re.fullmatch(r"[*xX•.]+|<[^>]*>|\{[^}]*\}|\$\{?\w+\}?", m.group(0).split("://", 1)[1].split("@")[0].split(":", 1)[1])]


# Postal addresses: anchored on how they end (a US "City, ST 12345", an Australian "Suburb NSW 2000", a Canadian
# "City, ON K1A 0B1", a UK postcode) and extended back over the
# street line (a house number, or Flat / Apartment / Unit / PO Box) within the same address block.
US_STATES = ("AL AK AZ AR CA CO CT DE FL GA HI ID IL IN IA KS KY LA ME MD MA MI MN MS MO MT NE NV NH NJ NM NY NC ND "
             "OH OK OR PA RI SC SD TN TX UT VT VA WA WV WI WY DC AS GU MP PR VI AA AE AP").split()
US_END = re.compile(r"\b[A-Z][A-Za-z.'\- ]{1,40},? (?:" + "|".join(US_STATES) + r")\.? \d{5}(?:-\d{4})?\b")
AU_END = re.compile(r"\b[A-Z][A-Za-z.'\- ]{1,40},? (?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT) \d{4}\b")
CA_END = re.compile(r"\b[A-Z][A-Za-z.'\- ]{1,40},? (?:AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT) [ABCEGHJ-NPRSTVXY]\d[A-Z] ?\d[A-Z]\d\b")
UK_POSTCODE = re.compile(r"\b(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?) ?\d[ABD-HJLNP-UW-Z]{2}\b")
ADDRESS_START = re.compile(
    r"(?i)\b(?:\d{1,6}[A-Za-z]?(?:[-/]\d{1,4})?\s+(?=[A-Za-z]|\d{1,4}(?:st|nd|rd|th)\b)|(?:flat|apartment|apt\.?|unit|suite|studio|"
    r"p\.?\s?o\.?\s?box|psc|house)\s+\w+|usns|uss|usnv|usnc)")


def _addresses(text: str) -> list[Found]:
    found = []
    ends = [(m, 1) for p in (US_END, AU_END, CA_END) for m in p.finditer(text)]
    for end, lines_back in ends + [(m, 3) for m in UK_POSTCODE.finditer(text)]:
        # the address block: this line and the lines before it (one for the US, Australia and Canada, three for
        # the UK), after the last sentence end
        lo = end.start()
        for _ in range(lines_back + 1):
            lo = text.rfind("\n", 0, lo - 1) if lo > 0 else -1
            if lo < 0:
                break
        lo = max(lo + 1, end.start() - 160)
        stops = [m for m in re.finditer(r"(\w*)[.!?:;](?:\s|$)|\n\s*\n", text[lo:end.start()])
                 if not (m.group(0).startswith(tuple(ADDRESS_ABBREVIATIONS)) and m.group(1) in ADDRESS_ABBREVIATIONS)]
        lo += stops[-1].end() if stops else 0
        for start in ADDRESS_START.finditer(text, lo, end.start() + 1):
            words = re.findall(r"[^\s,]+", text[start.start():end.start()])
            if all(not w[0].islower() or w.lower().rstrip(".") in ADDRESS_WORDS for w in words):
                found.append(Found(start.start(), end.end(), "ADDRESS"))
                break
    return found


ADDRESS_ABBREVIATIONS = {"St", "Ave", "Rd", "Dr", "Ln", "Blvd", "Ct", "Pl", "Apt", "Ste", "Mt", "Ft", "Hwy", "Pkwy",
                         "Sq", "Ter", "Cres", "Cl", "N", "S", "E", "W", "NE", "NW", "SE", "SW", "No", "Bldg", "Fl"}
ADDRESS_WORDS = {"de", "la", "le", "of", "the", "and", "on", "upon", "apt", "suite", "unit", "box", "flat", "floor", "no"}


# --- Everything together ------------------------------------------------------------------------------------

# when two findings overlap, the more specific kind wins (a card number inside a URL is a card)
PRIORITY = ["URL_CREDENTIALS", "SECRET", "EMAIL", "IBAN", "CARD", "SSN", "NINO", "IP", "ADDRESS", "PHONE", "PERSON"]


def find_pii(text: str, names: frozenset = frozenset()) -> list[Found]:
    """Every piece of personal data in `text`, non-overlapping, in order. `names`: name words already found
    elsewhere in the same record (a first name alone in a reply to the ticket that gave the full name)."""
    return _with_persons(text, _patterned(text), names)


def _patterned(text: str) -> list[Found]:
    """Everything but the names found by their cues: the pattern, checksum and address findings (and name
    columns), non-overlapping, the more specific kind first. The costly part; it does not depend on `names`."""
    if not text or not text.strip():
        return []
    found = (_url_credentials(text) + _secrets(text) + _presidio_found(text) + _addresses(text) + _phones(text)
             + table_names(text))
    kept: list[Found] = []
    for f in sorted(found, key=lambda f: (PRIORITY.index(f.kind), -(f.end - f.start))):
        if f.start < f.end and not any(k.start < f.end and f.start < k.end for k in kept):
            kept.append(f)
    return kept


def _with_persons(text: str, patterned: list[Found], names: frozenset) -> list[Found]:
    """`patterned` and the names `persons` finds around them, in order."""
    return sorted(patterned + persons(text, patterned, names), key=lambda f: f.start)


class Scrubber:
    """Replaces personal data with typed placeholders, consistently within one record: `value(record)` scrubs
    every string of it; `counts` says how many of each kind. A name found anywhere in the record is found again
    wherever it stands alone ("Thanks, Jesse" in the reply to Jesse Hernandez's ticket)."""

    def __init__(self):
        self.names: dict[tuple[str, str], str] = {}  # (kind, normalised value) -> placeholder
        self.per_kind: Counter = Counter()
        self.counts: Counter = Counter()
        self.known: frozenset = frozenset()  # name words found in the record
        self.patterned: dict[str, list[Found]] = {}  # each string's findings but the cued names (computed once)

    def placeholder(self, kind: str, value: str) -> str:
        key = (kind, re.sub(r"\W+", "", value).lower())
        if key not in self.names:
            if kind == "PERSON":  # "Dana" after "Dana Whitfield": the same person
                for (k, v), ph in self.names.items():
                    if k == "PERSON" and (v.startswith(key[1]) or key[1].startswith(v)):
                        self.names[key] = ph
                        return ph
            self.per_kind[kind] += 1
            n = self.per_kind[kind]
            self.names[key] = f"<{kind}>" if n == 1 else f"<{kind}_{n}>"
        return self.names[key]

    def text(self, text: str) -> str:
        out, last = [], 0
        patterned = self.patterned[text] if text in self.patterned else _patterned(text)
        for f in _with_persons(text, patterned, self.known):
            out += [text[last:f.start], self.placeholder(f.kind, text[f.start:f.end])]
            self.counts[f.kind] += 1
            last = f.end
        return "".join(out) + text[last:]

    def value(self, value: Any) -> Any:
        """A record's value (dicts, lists and strings, nested), scrubbed: first every name word of the record
        (April too, from "I'm April Norman"), then each string with them."""
        self.patterned = {t: _patterned(t) for t in _strings(value)}
        self.known = frozenset(w for t, found in self.patterned.items() for f in _with_persons(t, found, frozenset())
                               if f.kind == "PERSON"
                               for w in re.split(r"[\s.]+", t[f.start:f.end]) if len(w) > 1 and w[0].isupper())
        return self._replace(value)

    def _replace(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self._replace(v) for v in value]
        if isinstance(value, dict):
            return {k: self._replace(v) for k, v in value.items()}
        return value


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)


def scrub_record(value: Any) -> tuple[Any, Counter]:
    """(the record with its personal data replaced, how many of each kind)."""
    s = Scrubber()
    return s.value(value), s.counts


def count_pii(value: Any) -> Counter:
    """How many of each kind a record holds."""
    return scrub_record(value)[1]


# --- The switch the run lifecycle turns on: readers scrub what they read while it is on ------------------------

_SCRUB: ContextVar[Counter | None] = ContextVar("knowtune_scrub_pii", default=None)


@contextmanager
def scrubbing(on: bool) -> Iterator[Counter]:
    """While this is open and `on`, the data readers (`formats.read_rows`, documents) replace personal data in
    every record they return; the Counter yielded adds up what they replaced, by kind."""
    counts: Counter = Counter()
    token = _SCRUB.set(counts if on else None)
    try:
        yield counts
    finally:
        _SCRUB.reset(token)


def scrub_if_on(value: Any) -> Any:
    """`value` scrubbed when a `scrubbing(True)` block is open, else unchanged."""
    counts = _SCRUB.get()
    if counts is None:
        return value
    clean, n = scrub_record(value)
    counts.update(n)
    return clean


def refuse_scrubbing(path, why: str) -> None:
    """A reader whose records a placeholder would break (CoNLL tags, SQuAD offsets) refuses --scrub-pii."""
    if _SCRUB.get() is not None:
        from knowtune.errors import DataError

        raise DataError(f"{path}: --scrub-pii cannot scrub this file: {why}.",
                        fix="scrub the file yourself (`knowtune check --pii` shows where personal data is), or run "
                            "without --scrub-pii.")


def counts_line(counts: Counter) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"
