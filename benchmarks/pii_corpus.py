"""A synthetic, seeded corpus of everyday business text with personal data planted in it, for measuring a
personal-data (PII) detector (scored by `benchmarks/pii.py`).

Nothing here is real. Every record is written from templates by `make_corpus(seed, n_records)`: the same seed
gives the same corpus, byte for byte, under the same Faker version (written against Faker 40): random.Random(seed)
draws the structure and the values, Faker instances seeded from the same seed draw people's and companies' names.
Names, numbers and secrets are drawn fresh for each record; the card numbers pass the Luhn check but belong to
nobody, the IBANs pass mod-97, the keys and tokens have the shape of real ones but were never issued.

The texts read like the things a fine-tuning data set scraped from a company's systems would hold: customer
support tickets and the agents' replies (sometimes quoting the ticket), emails between colleagues with
greetings and signatures, CRM notes, chat transcripts, order and shipping notices, payment messages, HR and
clinic-style notes, IT helpdesk tickets, developer chat, log lines and config snippets. Each genre draws its
sentences from pools of templates and mixes them, so no two records share a shape for long.

Each record is {"id", "genre", "text", "spans", "distractors"}; every span and distractor is
{"start", "end", "kind", "value"} with text[start:end] == value. Planted spans never overlap each other or a
distractor.

spans: the personal data planted, of these kinds --
  EMAIL            email addresses
  PHONE            US, UK and international numbers (DE, FR, ES, IT, NL, PL, BR), with or without a country
                   code, spaces, dashes, dots, parentheses
  CARD             payment card numbers (Visa, Mastercard, Amex, Discover) that pass Luhn, spaced, dashed or bare
  IBAN             IBANs of 12 countries with valid mod-97 check digits, grouped in 4s or compact
  IP               IPv4 (public and private) and IPv6 (full and compressed) addresses
  URL_CREDENTIALS  whole URLs that carry user:password@ (https, ftp, postgres, mysql, mongodb, redis, amqp...);
                   the span is the URL, from the scheme to its last character
  SECRET           API keys and tokens: AWS access key ids and secret keys, GitHub, Slack, Stripe, Google,
                   OpenAI-style, SendGrid and npm tokens, JWTs, and generic hex/base64 tokens after words such
                   as api_key=, token:, Authorization: Bearer (the span is the token alone)
  SSN              US social security numbers with valid area numbers (not 000, 666, 9xx), mostly 123-45-6789
  NINO             UK National Insurance numbers with valid prefixes, AB 12 34 56 C / AB123456C / AB 123456 C
  ADDRESS          US (number street [unit], city, ST ZIP) and UK ([Flat n,] number street, [district,]
                   town, postcode) postal addresses; the span runs from the flat/house number to the ZIP or
                   postcode and may cross commas and newlines
  PERSON           people's names: full names, first names in greetings and chat, surnames after a title
                   ("Dear Ms. Kowalska": the span is "Kowalska", the title stays outside), "Last, First" in
                   CRM notes, upper-case names on shipping labels, drawn from nine Faker locales (en_US, en_GB,
                   de_DE, fr_FR, es_ES, it_IT, nl_NL, pl_PL, pt_BR) and from invented names in none of Faker's lists

distractors: things in the same texts that a detector must leave alone, recorded so that false positives
can be attributed -- YEAR, PRICE, ORDER_NUMBER, VERSION, PRODUCT_CODE, DATE, TIMESTAMP, TIME, QUANTITY,
TRACKING, INVOICE, PERCENT, MODEL_NUMBER, SERIAL, NON_LUHN_NUMBER (long card-like digit strings that fail
Luhn), COMMIT (hex commit hashes in a developer context), CHECKSUM (md5/sha256 of artifacts), UUID (request
and job ids), TICKET, CARD_LAST4, SSN_LAST4, MASKED_CARD, BIC, VOUCHER, URL (without credentials), PACKAGE
(name@version, name==version), GIT_REMOTE (git@github.com:org/repo.git), PLACEHOLDER (${DB_PASSWORD},
<your-api-key>, ********), TAX_CODE (UK, 1257L), MEASUREMENT (blood pressure, weight), PLACE (a town or city
on its own), COMPANY (Faker's, many built from surnames: "Haynes, Mendez and Peck"), PRODUCT_NAME (a quarter
of the furniture named like people: "the Monroe desk lamp"), WEEKDAY, MONTH. Beyond these, the templates are
full of capitalised ordinary words at the start of sentences, job titles, drug, tool and product names and
greetings, which are traps for a name detector too.
Plain text outside both lists holds no personal data by construction.

    python benchmarks/pii_corpus.py OUT.jsonl [--seed 0] [--records 700]

writes the corpus, checks it (`check_corpus`: every span matches its value, every CARD passes Luhn, every
IBAN mod-97, every SSN and NINO its rules, no planted span overlaps another or a distractor, and, from 700
records up, the minimum counts MIN_PER_KIND, MIN_PLANTED and MIN_DISTRACTORS) and prints the counts per kind.
At 700 records a corpus holds about 4,500 planted items (some 2,200 of them PERSON, 180-300 of each other kind)
and 4,000 distractors, and is written in well under a second.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import importlib
import ipaddress
import json
import random
import re
import string
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

PII_KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL_CREDENTIALS", "SECRET", "SSN", "NINO", "ADDRESS", "PERSON")
# the minimum counts a corpus of 700 records must hold (checked by check_corpus from 700 records up)
MIN_PER_KIND = {**{k: 150 for k in PII_KINDS}, "PERSON": 500}
MIN_PLANTED = 2400
MIN_DISTRACTORS = 1500
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_BR")
INVENTED = "invented"


# --- checksums and validity rules (also used by the checks) ---------------------------------------------------

def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return len(digits) > 1 and total % 10 == 0


def _luhn_complete(payload: str) -> str:
    for c in "0123456789":
        if luhn_ok(payload + c):
            return payload + c
    raise AssertionError(payload)


def _iban_number(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s))


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    return len(s) >= 15 and s[:2].isalpha() and s[2:4].isdigit() and _iban_number(s[4:] + s[:4]) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    d = re.sub(r"\D", "", ssn)
    return (len(d) == 9 and d[:3] not in ("000", "666") and d[0] != "9" and d[3:5] != "00"
            and d[5:] != "0000")


_NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"          # not D F I Q U V
_NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"          # not D F I O Q U V
_NINO_BANNED = {"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"}


def nino_ok(nino: str) -> bool:
    s = nino.replace(" ", "").upper()
    return (len(s) == 9 and s[0] in _NINO_FIRST and s[1] in _NINO_SECOND and s[:2] not in _NINO_BANNED
            and s[2:8].isdigit() and s[8] in "ABCD")


# --- vocabulary (the values are composed from these at random) ------------------------------------------------

US_CITIES = [("Springfield", "IL", "627"), ("Austin", "TX", "787"), ("Portland", "OR", "972"), ("Denver", "CO", "802"),
             ("Columbus", "OH", "432"), ("Raleigh", "NC", "276"), ("Madison", "WI", "537"), ("Tucson", "AZ", "857"),
             ("Sacramento", "CA", "958"), ("San Jose", "CA", "951"), ("Brooklyn", "NY", "112"), ("Buffalo", "NY", "142"),
             ("Boston", "MA", "021"), ("Cambridge", "MA", "021"), ("Seattle", "WA", "981"), ("Spokane", "WA", "992"),
             ("Atlanta", "GA", "303"), ("Savannah", "GA", "314"), ("Miami", "FL", "331"), ("Orlando", "FL", "328"),
             ("Nashville", "TN", "372"), ("Louisville", "KY", "402"), ("Omaha", "NE", "681"), ("Boise", "ID", "837"),
             ("Salt Lake City", "UT", "841"), ("Albuquerque", "NM", "871"), ("Pittsburgh", "PA", "152"),
             ("Philadelphia", "PA", "191"), ("Baltimore", "MD", "212"), ("Richmond", "VA", "232"),
             ("Charlotte", "NC", "282"), ("Minneapolis", "MN", "554"), ("St. Paul", "MN", "551"), ("Des Moines", "IA", "503"),
             ("Kansas City", "MO", "641"), ("St. Louis", "MO", "631"), ("Tulsa", "OK", "741"), ("Little Rock", "AR", "722"),
             ("New Orleans", "LA", "701"), ("Birmingham", "AL", "352"), ("Jackson", "MS", "392"), ("Anchorage", "AK", "995"),
             ("Honolulu", "HI", "968"), ("Burlington", "VT", "054"), ("Portland", "ME", "041"), ("Hartford", "CT", "061"),
             ("Providence", "RI", "029"), ("Newark", "NJ", "071"), ("Ann Arbor", "MI", "481"), ("Grand Rapids", "MI", "495"),
             ("Fort Wayne", "IN", "468"), ("Cheyenne", "WY", "820"), ("Fargo", "ND", "581"), ("Reno", "NV", "895")]
US_STREETS = ["Main", "Oak", "Maple", "Cedar", "Elm", "Pine", "Washington", "Lincoln", "Jefferson", "Park", "Lake",
              "Hill", "Church", "Mill", "River", "Spring", "Sunset", "Highland", "Willow", "Chestnut", "Walnut",
              "Madison", "Franklin", "Jackson", "Adams", "Broad", "Market", "Union", "Center", "Meadow", "Forest",
              "Ridge", "Valley", "Cherry", "Magnolia", "Dogwood", "Sycamore", "Laurel", "Prospect", "Orchard",
              "2nd", "3rd", "5th", "7th", "12th", "Martin Luther King Jr", "Old Mill", "Country Club", "Kings", "Bay"]
US_SUFFIXES = ["St", "St.", "Street", "Ave", "Ave.", "Avenue", "Blvd", "Boulevard", "Rd", "Road", "Dr", "Drive", "Ln",
               "Lane", "Ct", "Court", "Way", "Pl", "Place", "Terrace", "Pkwy", "Circle"]
UK_TOWNS = [("Manchester", "M"), ("Leeds", "LS"), ("Bristol", "BS"), ("Birmingham", "B"), ("London", "SW"),
            ("London", "N"), ("London", "E"), ("London", "SE"), ("London", "NW"), ("Glasgow", "G"), ("Edinburgh", "EH"),
            ("Cardiff", "CF"), ("Norwich", "NR"), ("York", "YO"), ("Brighton", "BN"), ("Oxford", "OX"),
            ("Cambridge", "CB"), ("Sheffield", "S"), ("Nottingham", "NG"), ("Leicester", "LE"), ("Liverpool", "L"),
            ("Newcastle upon Tyne", "NE"), ("Reading", "RG"), ("Bath", "BA"), ("Exeter", "EX"), ("Plymouth", "PL"),
            ("Southampton", "SO"), ("Belfast", "BT"), ("Aberdeen", "AB"), ("Swansea", "SA"), ("Coventry", "CV"),
            ("Derby", "DE"), ("Milton Keynes", "MK"), ("Guildford", "GU"), ("Canterbury", "CT"), ("Durham", "DH"),
            ("Harrogate", "HG"), ("Truro", "TR"), ("Inverness", "IV"), ("Dundee", "DD")]
UK_DISTRICTS = {"Oxford": ["Headington", "Jericho"], "Bristol": ["Clifton", "Redland"], "Newcastle upon Tyne": ["Jesmond"],
                "Manchester": ["Didsbury", "Chorlton"], "Leeds": ["Headingley"], "Cardiff": ["Roath"],
                "Edinburgh": ["Morningside", "Leith"], "Brighton": ["Hove"], "Birmingham": ["Kings Heath", "Moseley"],
                "Sheffield": ["Ecclesall"],
                "Nottingham": ["Mapperley"], "Glasgow": ["Partick", "Dennistoun"]}
UK_STREETS = ["High Street", "Station Road", "Church Lane", "Victoria Road", "Green Lane", "Manor Road", "Park Avenue",
              "Queens Road", "Mill Lane", "The Crescent", "King Street", "Kingsway", "London Road", "Albert Road",
              "Grange Road", "New Road", "Springfield Road", "Windsor Road", "Richmond Road", "St John's Road",
              "Chapel Street", "North Street", "Mount Pleasant", "Castle Street", "Orchard Close", "Beech Grove",
              "Elm Grove", "Meadow Way", "Hawthorn Drive", "Ashfield Avenue", "Cromwell Road", "Gladstone Street",
              "Nelson Terrace", "Brook Street", "Riverside Walk", "School Lane", "Fore Street", "Market Place"]
OTHER_PLACES = ["Berlin", "Hamburg", "Munich", "Rotterdam", "Amsterdam", "Utrecht", "Lyon", "Paris", "Marseille",
                "Madrid", "Valencia", "Milan", "Turin", "Warsaw", "Krakow", "Lisbon", "Porto", "São Paulo", "Dublin",
                "Toronto", "Chicago", "Dallas", "Phoenix", "Singapore", "Zurich", "Vienna", "Brussels", "Oslo"]
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"
FREE_MAIL = {"en_US": ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "aol.com", "hotmail.com", "proton.me"],
             "en_GB": ["gmail.com", "btinternet.com", "yahoo.co.uk", "hotmail.co.uk", "outlook.com", "sky.com"],
             "de_DE": ["gmx.de", "web.de", "t-online.de", "gmail.com", "posteo.de"],
             "fr_FR": ["orange.fr", "free.fr", "laposte.net", "gmail.com", "sfr.fr"],
             "es_ES": ["gmail.com", "hotmail.es", "yahoo.es", "telefonica.net"],
             "it_IT": ["libero.it", "gmail.com", "virgilio.it", "tiscali.it"],
             "nl_NL": ["ziggo.nl", "kpnmail.nl", "gmail.com", "hotmail.nl"],
             "pl_PL": ["wp.pl", "onet.pl", "o2.pl", "gmail.com", "interia.pl"],
             "pt_BR": ["uol.com.br", "gmail.com", "bol.com.br", "hotmail.com", "terra.com.br"],
             INVENTED: ["gmail.com", "outlook.com", "proton.me", "fastmail.com", "mailbox.org"]}
TLD = {"en_US": ".com", "en_GB": ".co.uk", "de_DE": ".de", "fr_FR": ".fr", "es_ES": ".es", "it_IT": ".it",
       "nl_NL": ".nl", "pl_PL": ".pl", "pt_BR": ".com.br", INVENTED: ".io"}
ROLES = ["Customer Success Manager", "Account Executive", "Support Engineer", "Head of Operations", "Office Manager",
         "Senior Buyer", "Finance Controller", "HR Business Partner", "Product Manager", "Logistics Coordinator",
         "Sales Director", "IT Administrator", "Practice Manager", "Payroll Specialist", "Customer Care Advisor"]
RELATIONS = ["wife", "husband", "partner", "mother", "father", "sister", "brother", "daughter", "son", "friend"]
CARRIERS = ["UPS", "FedEx", "DHL", "USPS", "Royal Mail", "DPD", "Evri", "PostNL"]
PRODUCT_TYPES = ["desk lamp", "armchair", "sofa", "bookshelf", "duvet cover", "coffee grinder", "kettle",
                 "office chair", "throw blanket", "side table", "floor lamp", "rucksack", "wall clock", "rug"]
PRODUCT_PERSONLIKE = ["Monroe", "Harper", "Eleanor", "Jasper", "Franklin", "Beatrice", "Sullivan", "Margot",
                      "Hudson", "Florence", "Milo", "Isadora", "Wallace", "Audrey"]
BRAND_PRODUCTS = ["Galaxy S24", "ThinkPad X1 Carbon", "Kindle Paperwhite", "AirPods Pro", "Pixel 8", "MacBook Air",
                  "Surface Pro 9", "Apple Watch", "Instant Pot Duo", "Roomba j7", "Echo Dot", "iPad mini",
                  "Nest Thermostat", "PlayStation 5", "Dyson V15", "Fitbit Charge 6", "Sonos Era 100"]
PRODUCT_LINES = ["Nordic Oak", "Aurora", "Summit", "Cascade", "Halcyon", "Linden", "Bramble", "Solstice", "Tundra",
                 "Meridian", "Juniper", "Obsidian"]
DRUGS = ["Amoxicillin 500 mg", "Ibuprofen 400 mg", "Metformin 850 mg", "Sertraline 50 mg", "Ramipril 5 mg",
         "Atorvastatin 20 mg", "Omeprazole 20 mg", "Paracetamol 1 g", "Levothyroxine 75 mcg", "Salbutamol inhaler"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
SYS_USERS = ["deploy", "ubuntu", "root", "admin", "ci", "svc_backup", "app", "etl", "jenkins", "ops"]
DB_NAMES = ["orders", "crm", "billing", "analytics", "app_prod", "inventory", "payroll", "customers", "events"]
HOST_WORDS = ["db", "db-primary", "pg-01", "mysql-replica", "cache", "mq", "reports", "legacy", "staging-db",
              "warehouse", "ftp", "files", "backup", "sftp-gw", "mongo-2"]
PW_WORDS = ["Summer", "Winter", "Autumn", "Harbor", "Falcon", "Tiger", "Coffee", "Rocket", "Velvet", "Maple",
            "Orion", "Sparrow", "Pepper", "Granite", "Lantern", "Violet"]
CODE_NAMES = ["atlas", "helios", "kestrel", "nimbus", "pollux", "quasar", "tessera", "umbra", "vireo", "zephyr"]
PLACEHOLDERS = ["${SMTP_PASSWORD}", "${DB_PASSWORD}", "<your-api-key>", "<token>", "REDACTED", "********",
                "${{ secrets.DEPLOY_TOKEN }}", "%(api_key)s", "YOUR_API_KEY_HERE", "changeme"]
GPUS = ["A100", "H100", "RTX 4090", "L4", "T4", "V100"]
# invented names: consonant-vowel syllables with name-like endings ("Talvena Ardelucci", "Marisel Quennford")
SYLL_ON = ["b", "br", "d", "dr", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "tr", "v", "z", "st", "j", "h"]
SYLL_V = ["a", "e", "i", "o", "u", "a", "e", "o", "ia"]
SYLL_MID = ["l", "r", "n", "m", "v", "s", "d", "t", "nd", "rv", "ll", "lv", "sk"]
END_FIRST = ["a", "o", "en", "is", "el", "ine", "ia", "an", "ek", "ara", "ius", "wen", "ette", "ir"]
END_LAST = ["ford", "wick", "ani", "escu", "ovic", "ley", "more", "ayan", "oux", "berg", "sson", "akis", "quist",
            "holt", "ucci", "aro", "ssen", "ez", "by", "ton", "ski", "ides"]


# --- the text being written: pieces with their spans --------------------------------------------------------------

class _Doc:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.n = 0
        self.spans: list[dict] = []
        self.distractors: list[dict] = []

    def add(self, text: str, kind: str | None = None) -> None:
        if not text:
            return
        if kind is not None:
            target = self.spans if kind in PII_KINDS else self.distractors
            target.append({"start": self.n, "end": self.n + len(text), "kind": kind, "value": text})
        self.parts.append(text)
        self.n += len(text)

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def add_quoted(self, sub: "_Doc", prefix: str = "> ") -> None:
        """Append `sub` with `prefix` before each of its lines, as a mail client quotes a message."""
        text = sub.text
        base = self.n
        for item, target in [(s, self.spans) for s in sub.spans] + [(s, self.distractors) for s in sub.distractors]:
            assert "\n" not in item["value"], item
            shift = len(prefix) * (text.count("\n", 0, item["start"]) + 1)
            target.append({**item, "start": base + item["start"] + shift, "end": base + item["end"] + shift})
        quoted = "\n".join(prefix + line for line in text.split("\n"))
        self.parts.append(quoted)
        self.n += len(quoted)


_SLOT = re.compile(r"\{([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)?)\}")


class _Person:
    __slots__ = ("first", "last", "female", "locale", "region", "title", "middle", "cache")

    def __init__(self, first, last, female, locale, region, title, middle):
        self.first, self.last, self.female, self.locale = first, last, female, locale
        self.region, self.title, self.middle = region, title, middle
        self.cache: dict = {}


class _Ctx:
    """One record's cast (customer c, agent a, others x, y, z, me, b) and its company."""

    def __init__(self, gen: "_Gen") -> None:
        self.gen = gen
        self.people: dict[str, _Person] = {}
        self.single_line = False
        self.co = gen.company()
        self.co_domain = gen.domain_for(self.co)

    def person(self, role: str) -> _Person:
        if role not in self.people:
            self.people[role] = self.gen.new_person()
        return self.people[role]


def _ascii(s: str) -> str:
    s = s.replace("ł", "l").replace("Ł", "L").replace("ß", "ss").replace("ø", "o").replace("æ", "ae")
    s = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()
    return re.sub(r"[^A-Za-z0-9]", "", s)


def _b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


class _Gen:
    def __init__(self, seed: int) -> None:
        from faker import Faker

        self.r = random.Random(seed)
        self.fakers = {}
        for i, loc in enumerate(LOCALES):
            f = Faker(loc)
            f.seed_instance(seed * 1009 + i)
            self.fakers[loc] = f
        self.known_names = set()
        for loc in LOCALES:
            prov = importlib.import_module(f"faker.providers.person.{loc}").Provider
            for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
                self.known_names.update(n.lower() for n in (getattr(prov, attr, None) or ()))

    # -- small draws
    def pick(self, seq):
        return seq[self.r.randrange(len(seq))]

    def chance(self, p: float) -> bool:
        return self.r.random() < p

    def digits(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def chars(self, alphabet: str, n: int) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    def date(self) -> dt.date:
        return dt.date(2018, 1, 1) + dt.timedelta(days=self.r.randrange(2900))

    # -- people
    def invented_name(self, last: bool) -> str:
        while True:
            name = self.pick(SYLL_ON) + self.pick(SYLL_V)
            for _ in range(self.r.randint(0 if last else 1, 1)):
                name += self.pick(SYLL_MID) + self.pick(SYLL_V)
            end = self.pick(END_LAST if last else END_FIRST)
            if name[-1] in "aeiou" and end[0] in "aeiou":
                name = name[:-1]
            name += end
            name = re.sub(r"([aeiou])\1", r"\1", name)
            name = name[0].upper() + name[1:]
            if 4 <= len(name) <= 10 and name.lower() not in self.known_names:
                return name

    def new_person(self) -> _Person:
        loc = self.r.choices(LOCALES + (INVENTED,), weights=(22, 20, 9, 8, 8, 7, 7, 6, 6, 7))[0]
        female = self.chance(0.5)
        if loc == INVENTED:
            first, last = self.invented_name(False), self.invented_name(True)
        else:
            f = self.fakers[loc]
            first = f.first_name_female() if female else f.first_name_male()
            last = f.last_name()
            if loc == "es_ES" and self.chance(0.4):
                last = f"{last} {f.last_name()}"
        region = {"en_US": "US", "en_GB": "UK"}.get(loc) or self.r.choices(["US", "UK", "EU"], weights=(3, 4, 4))[0]
        title = self.pick(["Ms.", "Mrs.", "Ms", "Dr."] if female else ["Mr.", "Mr", "Dr."])
        middle = self.pick(string.ascii_uppercase.replace("X", "")) + "." if self.chance(0.1) else None
        return _Person(first, last, female, loc, region, title, middle)

    def full(self, p: _Person) -> str:
        return f"{p.first} {p.middle} {p.last}" if p.middle else f"{p.first} {p.last}"

    def email_for(self, first: str, last: str, locale: str, domain: str | None = None) -> str:
        fa, la = _ascii(first).lower(), _ascii(last).lower() or "x"
        fa = fa or "m"
        r = self.r
        local = self.pick([f"{fa}.{la}", f"{fa[0]}{la}", f"{fa}_{la}", f"{fa}{r.randint(1, 99)}",
                           f"{fa}.{la}{r.randint(1, 99)}", f"{la}.{fa}", f"{fa}{la[0]}", f"{fa}.{la}"])
        if self.chance(0.05):
            local += "+" + self.pick(["orders", "shop", "news", "work"])
        if domain is None:
            domain = self.pick(FREE_MAIL[locale])
        email = f"{local}@{domain}"
        if self.chance(0.03):
            email = email[0].upper() + email[1:]
        return email

    def company(self) -> str:
        loc = self.r.choices(["en_US", "en_GB", "de_DE", "fr_FR", "nl_NL", "it_IT"], weights=(5, 4, 2, 1, 1, 1))[0]
        return self.fakers[loc].company()

    def domain_for(self, company: str) -> str:
        words = [_ascii(w).lower() for w in re.split(r"[\s,&-]+", company)]
        words = [w for w in words if w and w not in ("and", "sons", "llc", "plc", "ltd", "inc", "group", "gmbh",
                                                     "ag", "kg", "sa", "sarl", "nv", "bv", "spa", "srl", "und")]
        base = "-".join(words[:2]) or "example"
        return base + self.pick([".com", ".com", ".co.uk", ".de", ".io", ".net", ".eu"])

    # -- PII values
    def phone(self, region: str, locale: str | None = None) -> str:
        r = self.r
        if region == "US":
            area = f"{r.randint(2, 9)}{r.randint(0, 9)}{r.randint(0, 9)}"
            while area[1:] == "11":
                area = f"{r.randint(2, 9)}{r.randint(0, 8)}{r.randint(0, 9)}"
            ex, line = f"{r.randint(2, 9)}{self.digits(2)}", self.digits(4)
            return self.pick([f"({area}) {ex}-{line}", f"{area}-{ex}-{line}", f"{area}.{ex}.{line}",
                              f"+1 {area} {ex} {line}", f"+1-{area}-{ex}-{line}", f"1 ({area}) {ex}-{line}",
                              f"+1 ({area}) {ex}-{line}", f"{area} {ex} {line}", f"({area}) {ex}-{line}"])
        if region == "UK":
            kind = r.randrange(4)
            if kind == 0:  # London
                a, b = f"{self.pick('378')}{self.digits(3)}", self.digits(4)
                return self.pick([f"020 {a} {b}", f"+44 20 {a} {b}", f"+44 (0)20 {a} {b}", f"(020) {a} {b}"])
            if kind == 1:  # mobile
                a, b = f"7{r.randint(4, 9)}{self.digits(2)}", self.digits(6)
                return self.pick([f"0{a} {b}", f"+44 {a} {b}", f"+44{a}{b}", f"0{a} {b[:3]} {b[3:]}",
                                  f"+44 (0){a} {b}", f"0{a}{b}"])
            if kind == 2:  # big-city geographic
                code = self.pick(["161", "113", "121", "117", "131", "141", "114", "115", "151", "191", "118"])
                a, b = self.digits(3), self.digits(4)
                return self.pick([f"0{code} {a} {b}", f"+44 {code} {a} {b}", f"(0{code}) {a} {b}", f"0{code}-{a}-{b}"])
            code, b = f"1{r.randint(2, 9)}{self.digits(2)}", self.digits(6)
            return self.pick([f"0{code} {b}", f"+44 {code} {b}", f"(0{code}) {b}"])
        country = locale if locale in ("de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_BR") else \
            self.pick(["de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pl_PL", "pt_BR"])
        d = self.digits
        if country == "de_DE":
            if self.chance(0.5):
                m = f"1{self.pick(['51', '52', '60', '62', '70', '76'])}"
                n = d(8)
                return self.pick([f"+49 {m} {n}", f"0{m} {n}", f"+49 (0){m} {n[:4]} {n[4:]}", f"0{m}-{n}"])
            city, n = self.pick(["30", "40", "89", "221", "69", "711", "211"]), d(7)
            return self.pick([f"+49 {city} {n}", f"0{city} {n}", f"+49 (0){city} {n[:3]} {n[3:]}", f"0{city}/{n}"])
        if country == "fr_FR":
            first = self.pick(["1", "2", "3", "4", "5", "6", "7", "9"])
            g = [d(2) for _ in range(4)]
            return self.pick([f"+33 {first} {' '.join(g)}", f"0{first} {' '.join(g)}", f"0{first}.{'.'.join(g)}",
                              f"+33 (0){first} {' '.join(g)}", f"0{first}{''.join(g)}"])
        if country == "es_ES":
            n = self.pick(["6", "7", "9"]) + d(8)
            return self.pick([f"+34 {n[:3]} {n[3:6]} {n[6:]}", f"{n[:3]} {n[3:6]} {n[6:]}", f"+34 {n}",
                              f"(+34) {n[:3]} {n[3:5]} {n[5:7]} {n[7:]}"])
        if country == "it_IT":
            if self.chance(0.5):
                m = "3" + d(2)
                n = d(7)
                return self.pick([f"+39 {m} {n[:3]} {n[3:]}", f"{m} {n}", f"+39 {m}{n}", f"{m}-{n[:3]}{n[3:]}"])
            return self.pick([f"+39 06 {d(4)} {d(4)}", f"+39 02 {d(4)} {d(4)}", f"06 {d(8)}", f"+39 011 {d(3)} {d(4)}"])
        if country == "nl_NL":
            if self.chance(0.5):
                n = d(8)
                return self.pick([f"+31 6 {n}", f"06-{n}", f"06 {n[:2]} {n[2:4]} {n[4:6]} {n[6:]}", f"+31 (0)6 {n}"])
            return self.pick([f"+31 20 {d(3)} {d(4)}", f"020-{d(3)} {d(4)}", f"+31 10 {d(3)} {d(4)}",
                              f"030 {d(3)} {d(4)}"])
        if country == "pl_PL":
            n = self.pick(["5", "6", "7", "8"]) + d(8)
            return self.pick([f"+48 {n[:3]} {n[3:6]} {n[6:]}", f"{n[:3]} {n[3:6]} {n[6:]}", f"+48 {n}",
                              f"+48 22 {d(3)} {d(2)} {d(2)}", f"{n[:3]}-{n[3:6]}-{n[6:]}"])
        area = self.pick(["11", "21", "31", "41", "51", "61", "71", "81", "85"])
        if self.chance(0.6):
            n = "9" + d(4)
            m = d(4)
            return self.pick([f"+55 {area} {n}-{m}", f"({area}) {n}-{m}", f"+55 ({area}) {n}-{m}", f"+55{area}{n}{m}"])
        n, m = f"{self.r.randint(2, 5)}{d(3)}", d(4)
        return self.pick([f"+55 {area} {n}-{m}", f"({area}) {n}-{m}", f"+55 ({area}) {n}-{m}"])

    def card(self) -> str:
        r = self.r
        brand = r.choices(["visa", "mc", "mc2", "amex", "disc"], weights=(45, 25, 7, 15, 8))[0]
        if brand == "amex":
            num = _luhn_complete(self.pick(["34", "37"]) + self.digits(12))
            return self.pick([f"{num[:4]} {num[4:10]} {num[10:]}", num, f"{num[:4]}-{num[4:10]}-{num[10:]}"])
        prefix = {"visa": "4", "mc": str(r.randint(51, 55)), "mc2": str(r.randint(2221, 2720)),
                  "disc": self.pick(["6011", "65"])}[brand]
        num = _luhn_complete(prefix + self.digits(15 - len(prefix)))
        g = [num[i:i + 4] for i in range(0, 16, 4)]
        return self.pick([" ".join(g), " ".join(g), "-".join(g), num, num])

    IBAN_SPECS = {"DE": "8n10n", "GB": "4b6n8n", "FR": "5n5n11n2n", "ES": "4n4n2n10n", "IT": "1a5n5n12n",
                  "NL": "4b10n", "BE": "3n7n2n", "PL": "8n16n", "CH": "5n12n", "AT": "5n11n", "PT": "4n4n11n2n",
                  "IE": "4b6n8n"}
    BANKS = {"GB": ["NWBK", "BARC", "LOYD", "HBUK", "MIDL", "SRLG", "MONZ"], "NL": ["ABNA", "INGB", "RABO", "TRIO", "SNSB"],
             "IE": ["AIBK", "BOFI", "IPBS", "ULSB"]}

    def iban(self, country: str | None = None) -> str:
        country = country or self.r.choices(list(self.IBAN_SPECS), weights=(6, 5, 4, 3, 3, 3, 2, 2, 2, 2, 1, 2))[0]
        bban = ""
        for n, t in re.findall(r"(\d+)([nab])", self.IBAN_SPECS[country]):
            n = int(n)
            if t == "n":
                bban += self.digits(n)
            elif t == "b":
                bban += self.pick(self.BANKS[country])
            else:
                bban += self.chars(string.ascii_uppercase, n)
        check = 98 - _iban_number(bban + country + "00") % 97
        iban = f"{country}{check:02d}{bban}"
        assert iban_ok(iban), iban
        if self.chance(0.6):
            return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        return iban

    def ipv4(self, private: bool | None = None) -> str:
        r = self.r
        if private is None:
            private = self.chance(0.35)
        if private:
            return self.pick([f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
                              f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}",
                              f"172.{r.randint(16, 31)}.{r.randint(0, 255)}.{r.randint(1, 254)}"])
        first = self.pick([x for x in range(1, 224) if x not in (10, 127, 172, 192, 169, 100)])
        return f"{first}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"

    def ipv6(self) -> str:
        r = self.r
        prefix = self.pick([0x20010DB8, 0x2A001450, 0x26001F18, 0x2A02C7C8, 0x24041A00, 0xFE800000])
        groups = [prefix >> 16, prefix & 0xFFFF] + [r.getrandbits(16) if self.chance(0.6) else 0 for _ in range(6)]
        if prefix == 0xFE800000:
            groups[2:4] = [0, 0]
        addr = ipaddress.IPv6Address(sum(g << (16 * (7 - i)) for i, g in enumerate(groups)))
        return addr.exploded if self.chance(0.2) else addr.compressed

    def ip(self) -> str:
        return self.ipv6() if self.chance(0.2) else self.ipv4()

    def password(self) -> str:
        r = self.r
        return self.pick([f"{self.pick(PW_WORDS)}{r.randint(1, 99)}{self.pick(['!', '', '*', ''])}",
                          self.chars(string.ascii_letters + string.digits, r.randint(10, 20)),
                          f"{self.pick(PW_WORDS).lower()}-{self.pick(PW_WORDS).lower()}-{r.randint(10, 999)}",
                          f"{self.pick(PW_WORDS)}%40{r.randint(1990, 2025)}",
                          self.chars(string.ascii_letters + string.digits + "_-.~", r.randint(12, 24))])

    URL_SCHEMES = {"any": (["https", "http", "ftp", "sftp", "postgres", "postgresql", "mysql", "mongodb", "mongodb+srv",
                            "redis", "amqp", "smtp"], (8, 3, 4, 2, 7, 3, 5, 3, 2, 3, 3, 2)),
                   "db": (["postgres", "postgresql", "mysql", "mongodb"], (5, 2, 4, 2)),
                   "mongo": (["mongodb", "mongodb+srv"], (1, 1)), "broker": (["amqp", "redis"], (1, 1)),
                   "redis": (["redis"], (1,)), "ftp": (["ftp", "sftp"], (3, 2)), "web": (["https", "http"], (4, 1))}

    def urlcred(self, family: str = "any") -> str:
        r = self.r
        schemes, weights = self.URL_SCHEMES[family]
        scheme = r.choices(schemes, weights=weights)[0]
        user = self.pick(SYS_USERS + ["svc", "report", "readonly", "guest", "backup"]) if self.chance(0.7) else \
            _ascii(self.fakers[self.pick(LOCALES)].first_name()).lower()
        pw = self.password()
        host = self.pick([f"{self.pick(HOST_WORDS)}.internal", f"{self.pick(HOST_WORDS)}.{self.pick(CODE_NAMES)}.local",
                          self.ipv4(True), f"{self.pick(HOST_WORDS)}", f"{self.pick(CODE_NAMES)}.example.com",
                          f"{self.pick(HOST_WORDS)}.{self.domain_for(self.company())}"])
        port = {"postgres": 5432, "postgresql": 5432, "mysql": 3306, "mongodb": 27017, "redis": 6379,
                "amqp": 5672, "smtp": 587, "ftp": 21, "sftp": 22}.get(scheme)
        if scheme == "mongodb+srv":
            port = None
        hostport = f"{host}:{port}" if port and self.chance(0.7) else host
        if scheme == "redis" and self.chance(0.5):
            cred = f":{pw}"
        else:
            cred = f"{user}:{pw}"
        path = {"postgres": f"/{self.pick(DB_NAMES)}", "postgresql": f"/{self.pick(DB_NAMES)}",
                "mysql": f"/{self.pick(DB_NAMES)}", "mongodb": f"/{self.pick(DB_NAMES)}?authSource=admin",
                "mongodb+srv": f"/{self.pick(DB_NAMES)}?retryWrites=true&w=majority", "redis": f"/{r.randint(0, 3)}",
                "amqp": "/%2F", "smtp": "", "ftp": self.pick(["/uploads/", "/export/daily.csv", "", "/in"]),
                "sftp": self.pick(["/data/outgoing", "", "/home/drop"])}.get(
            scheme, self.pick(["/", "/api/v1/export", "/admin/", "/repo.git", "/jenkins/job/nightly/", "/dav/shared/"]))
        return f"{scheme}://{cred}@{hostport}{path}"

    B64 = string.ascii_letters + string.digits + "+/"
    ALNUM = string.ascii_letters + string.digits

    def aws_key(self) -> str:
        return self.pick(["AKIA", "AKIA", "ASIA"]) + self.chars(string.ascii_uppercase + "234567", 16)

    def aws_secret(self) -> str:
        return self.chars(self.B64, 40)

    def ghp(self) -> str:
        if self.chance(0.15):
            return "github_pat_11" + self.chars(string.ascii_uppercase + string.digits, 20) + "_" + self.chars(self.ALNUM, 59)
        return self.pick(["ghp_", "ghp_", "ghp_", "gho_", "ghs_", "ghu_"]) + self.chars(self.ALNUM, 36)

    def slack(self) -> str:
        if self.chance(0.7):
            return f"xoxb-{self.digits(12)}-{self.digits(13)}-{self.chars(self.ALNUM, 24)}"
        return f"xoxp-{self.digits(12)}-{self.digits(12)}-{self.digits(13)}-{self.chars('0123456789abcdef', 32)}"

    def stripe(self) -> str:
        return self.pick(["sk_live_", "sk_live_", "rk_live_", "sk_test_"]) + self.chars(self.ALNUM, self.pick([24, 24, 34, 99]))

    def jwt(self) -> str:
        r = self.r
        alg = self.pick(["HS256", "HS256", "HS256", "RS256"])
        header = {"alg": alg, "typ": "JWT"}
        iat = 1_600_000_000 + r.randrange(150_000_000)
        payload = {"sub": self.pick([str(r.randint(10_000, 9_999_999)), f"usr_{self.chars(self.ALNUM, 12)}"]),
                   "iat": iat, "exp": iat + self.pick([900, 3600, 86400])}
        if self.chance(0.5):
            payload["scope"] = self.pick(["read", "read write", "admin", "orders:read"])
        if self.chance(0.3):
            payload["iss"] = f"https://auth.{self.pick(CODE_NAMES)}.example.com/"
        enc = lambda o: _b64u(json.dumps(o, separators=(",", ":")).encode())  # noqa: E731
        sig = _b64u(bytes(r.getrandbits(8) for _ in range(32 if alg == "HS256" else 256)))
        return f"{enc(header)}.{enc(payload)}.{sig}"

    def hex_token(self) -> str:
        return self.chars("0123456789abcdef", self.pick([32, 32, 40]))

    def b64_token(self) -> str:
        return self.chars(self.ALNUM + self.pick(["", "_-", "+/"]), self.r.randint(32, 40))

    def generic_secret(self) -> str:
        return self.hex_token() if self.chance(0.5) else self.b64_token()

    def secret(self) -> str:
        kind = self.r.choices(["aws", "gh", "slack", "stripe", "jwt", "google", "openai", "sendgrid", "npm", "hex",
                               "b64"], weights=(4, 4, 3, 3, 3, 2, 2, 1, 1, 3, 2))[0]
        return {"aws": self.aws_key, "gh": self.ghp, "slack": self.slack, "stripe": self.stripe, "jwt": self.jwt,
                "google": lambda: "AIza" + self.chars(self.ALNUM + "_-", 35),
                "openai": lambda: self.pick(["sk-", "sk-proj-"]) + self.chars(self.ALNUM, 48),
                "sendgrid": lambda: f"SG.{self.chars(self.ALNUM + '_-', 22)}.{self.chars(self.ALNUM + '_-', 43)}",
                "npm": lambda: "npm_" + self.chars(self.ALNUM, 36), "hex": self.hex_token, "b64": self.b64_token}[kind]()

    def ssn(self) -> str:
        r = self.r
        area = r.randint(1, 899)
        while area == 666:
            area = r.randint(1, 899)
        s = f"{area:03d}{r.randint(1, 99):02d}{r.randint(1, 9999):04d}"
        return r.choices([f"{s[:3]}-{s[3:5]}-{s[5:]}", f"{s[:3]} {s[3:5]} {s[5:]}", s], weights=(80, 12, 8))[0]

    def nino(self) -> str:
        while True:
            pre = self.pick(_NINO_FIRST) + self.pick(_NINO_SECOND)
            if pre not in _NINO_BANNED:
                break
        n, suf = self.digits(6), self.pick("ABCD")
        return self.r.choices([f"{pre} {n[:2]} {n[2:4]} {n[4:]} {suf}", f"{pre}{n}{suf}", f"{pre} {n} {suf}"],
                              weights=(50, 35, 15))[0]

    def address_parts(self, region: str) -> tuple[list[str], str]:
        """([lines], joiner-free single line) for a US or UK postal address."""
        r = self.r
        if region == "US":
            num = str(r.choice([r.randint(1, 99), r.randint(100, 999), r.randint(1000, 9999), r.randint(10000, 29999)]))
            pre = self.pick(["N ", "S ", "E ", "W ", "NW ", ""]) if self.chance(0.15) else ""
            street = f"{num} {pre}{self.pick(US_STREETS)} {self.pick(US_SUFFIXES)}"
            unit = self.pick([f"Apt {r.randint(1, 40)}{self.pick('ABCD')}", f"Apt. {r.randint(100, 999)}",
                              f"Suite {r.randint(100, 990)}", f"Unit {r.randint(1, 60)}", f"#{r.randint(2, 40)}"]) \
                if self.chance(0.3) else ""
            city, state, z3 = self.pick(US_CITIES)
            zipc = z3 + self.digits(2) + (f"-{self.digits(4)}" if self.chance(0.15) else "")
            last = f"{city}, {state} {zipc}"
            lines = [street + (f" {unit}" if unit else "")] if (not unit or self.chance(0.5)) else [street, unit]
            return lines + [last], ", ".join([street + (f" {unit}" if unit else ""), last])
        town, area = self.pick(UK_TOWNS)
        district = f"{area}{r.randint(1, 20 if len(area) == 1 else 9)}"
        if area in ("SW", "E", "N") and self.chance(0.2):
            district = f"{area}1{self.pick('ACPVW')}"
        pc = f"{district} {r.randint(1, 9)}{self.pick(POSTCODE_LETTERS)}{self.pick(POSTCODE_LETTERS)}"
        street = f"{r.randint(1, 240)}{self.pick('ab') if self.chance(0.05) else ''} {self.pick(UK_STREETS)}"
        flat = f"Flat {r.randint(1, 24)}" if self.chance(0.2) else ""
        loc = self.pick(UK_DISTRICTS[town]) if town in UK_DISTRICTS and self.chance(0.4) else ""
        lines = ([flat] if flat else []) + [street] + ([loc] if loc else [])
        if self.chance(0.5):
            lines += [town, pc]
        else:
            lines += [f"{town} {pc}"]
        single = ", ".join(([flat] if flat else []) + [street] + ([loc] if loc else []) + [town]) + \
            self.pick([", ", " "]) + pc
        if self.chance(0.4) and flat:
            lines = [f"{flat}, {street}"] + lines[2:]
        return lines, single

    # -- distractor values
    def year(self) -> str:
        return str(self.r.randint(1985, 2026))

    def price(self) -> str:
        r = self.r
        amount = self.pick([r.randint(3, 99) + self.pick([0, 0.99, 0.5, 0.49]), r.randint(100, 2500) + 0.0,
                            r.randint(1000, 25000) + r.randint(0, 99) / 100])
        return self.pick([f"${amount:,.2f}", f"${int(amount):,}", f"€{int(amount)}", f"€{amount:,.2f}",
                          f"{amount:.2f} €".replace(".", ","), f"£{amount:,.2f}", f"£{int(amount)}",
                          f"USD {amount:,.2f}", f"{amount:,.2f} EUR", f"CHF {int(amount)}"])

    def order(self) -> str:
        r = self.r
        return self.pick([f"#A-{r.randint(10000, 99999)}", self.digits(7).lstrip("0") or "5", f"ORD-{self.year()}-{self.digits(6)}",
                          f"{r.randint(100, 999)}-{self.digits(7)}-{self.digits(7)}", f"#{r.randint(100000, 999999)}",
                          f"PO-{r.randint(10000, 99999)}", f"WEB{self.digits(8)}"])

    def version(self) -> str:
        r = self.r
        return self.pick([f"v{r.randint(0, 5)}.{r.randint(0, 30)}.{r.randint(0, 20)}",
                          f"{r.randint(1, 12)}.{r.randint(0, 9)}.{r.randint(0, 40)}",
                          f"10.0.{r.randint(17000, 22631)}",
                          f"{r.randint(1, 4)}.{r.randint(0, 9)}.{r.randint(0, 9)}-rc.{r.randint(1, 5)}",
                          f"{r.randint(100, 126)}.0.{r.randint(4000, 6999)}.{r.randint(10, 250)}",
                          f"{r.randint(14, 18)}.{r.randint(0, 7)}.{r.randint(1, 3)}",
                          f"{r.randint(2, 6)}.{r.randint(0, 9)}.{r.randint(300, 9999)}.{r.randint(0, 99)}"])

    def sku(self) -> str:
        r = self.r
        return self.pick([f"KT-{r.randint(1000, 9999)}-{self.pick('ABCDEF')}",
                          f"{r.randint(10, 99)}-{r.randint(1000, 9999)}-{r.randint(10, 99)}", f"SKU{self.digits(6)}",
                          f"{self.chars(string.ascii_uppercase, 2)}-{r.randint(100, 999)}-{self.pick(['BLK', 'WHT', 'OAK'])}",
                          f"B0{self.chars(string.ascii_uppercase + string.digits, 8)}"])

    def date_str(self) -> str:
        d = self.date()
        return self.pick([d.isoformat(), d.strftime("%m/%d/%Y"), d.strftime("%d/%m/%Y"), d.strftime("%d.%m.%Y"),
                          f"{MONTHS[d.month - 1]} {d.day}, {d.year}", f"{d.day} {MONTHS[d.month - 1]} {d.year}",
                          f"{d.day} {MONTHS[d.month - 1][:3]} {d.year}", f"{MONTHS[d.month - 1][:3]} {d.day}"])

    def timestamp(self) -> str:
        d = dt.datetime(2019, 1, 1) + dt.timedelta(seconds=self.r.randrange(200_000_000))
        return self.pick([d.strftime("%Y-%m-%dT%H:%M:%SZ"), d.strftime("%Y-%m-%d %H:%M:%S"),
                          d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.r.randrange(1000):03d}Z"])

    def time_str(self) -> str:
        r = self.r
        h, m = r.randint(7, 19), self.pick([0, 15, 30, 45, r.randint(0, 59)])
        return self.pick([f"{h:02d}:{m:02d}", f"{(h - 1) % 12 + 1}:{m:02d} {'AM' if h < 12 else 'PM'}",
                          f"{(h - 1) % 12 + 1}{'am' if h < 12 else 'pm'}", f"{h}:{m:02d}"])

    def qty(self) -> str:
        r = self.r
        return self.pick([f"{r.randint(2, 20)} units", f"{r.randint(2, 12)} x", f"{r.randint(100, 900)} ml",
                          f"{r.randint(1, 9)},{r.randint(100, 999)} pcs", f"{r.randint(1, 30)}.{r.randint(1, 9)} kg",
                          f"{r.randint(5, 250)} seats", f"{r.randint(2, 6)} boxes", f"{r.randint(2, 24)} items"])

    def tracking(self) -> str:
        r = self.r
        kind = r.randrange(5)
        if kind == 0:
            return "1Z" + self.chars(string.ascii_uppercase + string.digits, 6) + self.digits(10)
        if kind == 1:
            n = "94" + self.digits(20)
            return self.pick([" ".join(n[i:i + 4] for i in range(0, 22, 4)), n])
        if kind == 2:
            n = self.digits(12)
            return self.pick([n, f"{n[:4]} {n[4:8]} {n[8:]}"])
        if kind == 3:
            return f"{self.pick(['RR', 'AB', 'LX', 'CP', 'RM'])}{self.digits(9)}GB"
        return f"JJD{self.digits(18)}"

    def invoice(self) -> str:
        r = self.r
        return self.pick([f"INV-{self.year()}-{r.randint(1, 99999):05d}", f"INV{self.digits(6)}", f"{r.randint(10000, 99999)}",
                          f"{self.year()}/{r.randint(1, 9999):04d}", f"RE-{self.digits(7)}"])

    def percent(self) -> str:
        r = self.r
        return self.pick([f"{r.randint(1, 60)}%", f"{r.randint(1, 20)}.{r.randint(1, 9)}%", f"{r.randint(5, 40)} %"])

    def model(self) -> str:
        r = self.r
        return self.pick([f"SM-S9{r.randint(10, 28)}B", f"WH-1000XM{r.randint(3, 5)}", f"RT-AX{self.pick(['55', '86U', '88U'])}",
                          f"DCP-L{r.randint(2000, 3999)}DW", f"KX-TG{r.randint(1000, 9999)}", f"A{r.randint(1400, 3200)}",
                          f"XPS 13 {r.randint(9300, 9350)}", f"MX-{r.randint(100, 900)}{self.pick('ABX')}"])

    def serial(self) -> str:
        return self.pick(["C02", "4CE", "SN", "FVF", "R5C", "PF"]) + \
            self.chars(string.ascii_uppercase + string.digits, self.r.randint(7, 10))

    def non_luhn(self, n: int | None = None) -> str:
        n = n or self.pick([16, 16, 16, 18, 19])
        num = self.pick(["4", "5", "6", "3", "9", "7"]) + self.digits(n - 1)
        if luhn_ok(num):
            num = num[:-1] + str((int(num[-1]) + 1) % 10)
        assert not luhn_ok(num)
        if n == 16 and self.chance(0.5):
            return self.pick([" ", "-"]).join(num[i:i + 4] for i in range(0, 16, 4))
        return num

    def commit(self, full: bool = False) -> str:
        return self.chars("0123456789abcdef", 40 if full else self.pick([7, 7, 8, 10, 12]))

    def product(self) -> str:
        if self.chance(0.25):
            return f"{self.pick(PRODUCT_PERSONLIKE)} {self.pick(PRODUCT_TYPES)}"
        if self.chance(0.5):
            return f"{self.pick(PRODUCT_LINES)} {self.pick(PRODUCT_TYPES)}"
        return self.pick(BRAND_PRODUCTS)

    def bic(self) -> str:
        country = self.pick(["DE", "FR", "NL", "GB", "ES", "IT", "BE", "AT", "PL", "IE"])
        b = self.chars(string.ascii_uppercase, 4) + country + self.chars(string.ascii_uppercase + "2", 2)
        return b + (self.chars(string.ascii_uppercase + string.digits, 3) if self.chance(0.3) else "")

    def masked_card(self) -> str:
        l4 = self.digits(4)
        return self.pick([f"**** **** **** {l4}", f"XXXX-XXXX-XXXX-{l4}", f"************{l4}", f"•••• {l4}"])

    # -- template filling
    def slot(self, name: str, ctx: _Ctx) -> list[tuple[str, str | None]]:
        if "." in name:
            role, attr = name.split(".")
            return self.person_slot(ctx, ctx.person(role), attr)
        fn = getattr(self, f"s_{name}")
        out = fn(ctx)
        if isinstance(out, str):
            return [(out, None)]
        if isinstance(out, tuple):
            return [out]
        return out

    def person_slot(self, ctx: _Ctx, p: _Person, attr: str) -> list[tuple[str, str | None]]:
        c = p.cache
        if attr == "first":
            return [(p.first, "PERSON")]
        if attr == "last":
            return [(p.last, "PERSON")]
        if attr == "full":
            return [(self.full(p), "PERSON")]
        if attr == "name":  # full name or first name
            return [(self.full(p) if self.chance(0.6) else p.first, "PERSON")]
        if attr == "title_last":
            return [(p.title + " ", None), (p.last, "PERSON")]
        if attr == "title_full":
            return [(p.title + " ", None), (self.full(p), "PERSON")]
        if attr == "rev":
            return [(f"{p.last}, {p.first}", "PERSON")]
        if attr == "upper":
            return [(self.full(p).upper(), "PERSON")]
        if attr == "at":
            return [("@", None), (p.first, "PERSON")]
        if attr == "his":
            return [("her" if p.female else "his", None)]
        if attr == "he":
            return [("she" if p.female else "he", None)]
        if attr == "email":
            if "email" not in c:
                c["email"] = self.email_for(p.first, p.last, p.locale)
            return [(c["email"], "EMAIL")]
        if attr == "work_email":
            if "work_email" not in c:
                c["work_email"] = self.email_for(p.first, p.last, p.locale, ctx.co_domain)
            return [(c["work_email"], "EMAIL")]
        if attr == "phone":
            if "phone" not in c:
                c["phone"] = self.phone(p.region, p.locale)
            return [(c["phone"], "PHONE")]
        if attr in ("addr", "addr1"):
            if "addr" not in c:
                uk = p.region == "UK" or (p.region == "EU" and self.chance(0.6))
                c["addr"] = self.address_parts("UK" if uk else "US")
            lines, single = c["addr"]
            if attr == "addr1" or ctx.single_line:
                return [(single, "ADDRESS")]
            return [("\n".join(lines), "ADDRESS")]
        if attr == "natid":
            if "natid" not in c:
                us = p.region == "US" or (p.region == "EU" and self.chance(0.4))
                c["natid"] = ("SSN", self.ssn()) if us else ("NINO", self.nino())
            kind, value = c["natid"]
            return [(value, kind)]
        if attr == "natid_label":
            self.person_slot(ctx, p, "natid")
            return [(self.pick(["SSN", "Social Security number", "SSN#", "social"]) if c["natid"][0] == "SSN"
                     else self.pick(["NI number", "NINO", "National Insurance no.", "NI no."]), None)]
        if attr == "ssn":
            c.setdefault("ssn", self.ssn())
            return [(c["ssn"], "SSN")]
        if attr == "nino":
            c.setdefault("nino", self.nino())
            return [(c["nino"], "NINO")]
        raise KeyError(attr)

    def render(self, doc: _Doc, template: str, ctx: _Ctx) -> None:
        pos = 0
        for m in _SLOT.finditer(template):
            doc.add(template[pos:m.start()])
            for text, kind in self.slot(m.group(1), ctx):
                doc.add(text, kind)
            pos = m.end()
        doc.add(template[pos:])

    # generic slots (a fresh value each time): PII
    def s_email(self, ctx):
        loc = self.pick(LOCALES)
        f = self.fakers[loc]
        return (self.email_for(f.first_name(), f.last_name(), loc, None if self.chance(0.6) else
                               self.domain_for(self.company())), "EMAIL")

    def s_phone(self, ctx):
        return (self.phone(self.pick(["US", "UK", "EU"])), "PHONE")

    def s_card(self, ctx):
        return (self.card(), "CARD")

    def s_iban(self, ctx):
        return (self.iban(), "IBAN")

    def s_ip(self, ctx):
        return (self.ip(), "IP")

    def s_ip4(self, ctx):
        return (self.ipv4(), "IP")

    def s_ip6(self, ctx):
        return (self.ipv6(), "IP")

    def s_pubip(self, ctx):
        return (self.ipv4(False), "IP")

    def s_urlcred(self, ctx):
        return (self.urlcred(), "URL_CREDENTIALS")

    def s_dburl(self, ctx):
        return (self.urlcred("db"), "URL_CREDENTIALS")

    def s_pgurl(self, ctx):
        return (self.urlcred("db").replace("mysql://", "postgres://").replace("mongodb://", "postgresql://")
                .replace("?authSource=admin", ""), "URL_CREDENTIALS")

    def s_mongourl(self, ctx):
        return (self.urlcred("mongo"), "URL_CREDENTIALS")

    def s_brokerurl(self, ctx):
        return (self.urlcred("broker"), "URL_CREDENTIALS")

    def s_redisurl(self, ctx):
        return (self.urlcred("redis"), "URL_CREDENTIALS")

    def s_ftpurl(self, ctx):
        return (self.urlcred("ftp"), "URL_CREDENTIALS")

    def s_weburl(self, ctx):
        return (self.urlcred("web"), "URL_CREDENTIALS")

    def s_ghremote(self, ctx):  # a token as the password: the whole URL is the span
        return (f"https://{self.pick(SYS_USERS + ['x-access-token', 'oauth2'])}:{self.ghp()}@github.com/"
                f"{self.pick(CODE_NAMES)}-labs/{self.pick(CODE_NAMES)}.git", "URL_CREDENTIALS")

    def s_secret(self, ctx):
        return (self.secret(), "SECRET")

    def s_aws_key(self, ctx):
        return (self.aws_key(), "SECRET")

    def s_aws_secret(self, ctx):
        return (self.aws_secret(), "SECRET")

    def s_ghp(self, ctx):
        return (self.ghp(), "SECRET")

    def s_slack(self, ctx):
        return (self.slack(), "SECRET")

    def s_stripe(self, ctx):
        return (self.stripe(), "SECRET")

    def s_jwt(self, ctx):
        return (self.jwt(), "SECRET")

    def s_token(self, ctx):
        return (self.generic_secret(), "SECRET")

    def s_hexkey(self, ctx):
        return (self.chars("0123456789abcdef", self.pick([32, 40])), "SECRET")

    def s_bearer(self, ctx):
        return (self.jwt() if self.chance(0.5) else self.b64_token(), "SECRET")

    def s_ssn(self, ctx):
        return (self.ssn(), "SSN")

    def s_nino(self, ctx):
        return (self.nino(), "NINO")

    def s_addr(self, ctx):
        lines, single = self.address_parts(self.pick(["US", "UK"]))
        return (single if ctx.single_line else "\n".join(lines), "ADDRESS")

    def s_addr1(self, ctx):
        return (self.address_parts(self.pick(["US", "UK"]))[1], "ADDRESS")

    def s_name(self, ctx):
        return (self.full(self.new_person()), "PERSON")

    def s_first(self, ctx):
        return (self.new_person().first, "PERSON")

    # distractors
    def s_year(self, ctx):
        return (self.year(), "YEAR")

    def s_price(self, ctx):
        return (self.price(), "PRICE")

    def s_order(self, ctx):
        return (self.order(), "ORDER_NUMBER")

    def s_version(self, ctx):
        return (self.version(), "VERSION")

    def s_sku(self, ctx):
        return (self.sku(), "PRODUCT_CODE")

    def s_date(self, ctx):
        return (self.date_str(), "DATE")

    def s_ts(self, ctx):
        return (self.timestamp(), "TIMESTAMP")

    def s_clf(self, ctx):
        d = dt.datetime(2019, 1, 1) + dt.timedelta(seconds=self.r.randrange(200_000_000))
        return (d.strftime("%d/%b/%Y:%H:%M:%S +0000"), "TIMESTAMP")

    def s_time(self, ctx):
        return (self.time_str(), "TIME")

    def s_timerange(self, ctx):
        h = self.r.randint(7, 15)
        a, b = dt.time(h, self.pick([0, 30])), dt.time(h + self.r.randint(1, 4), self.pick([0, 30]))
        if self.chance(0.5):
            return [(a.strftime("%H:%M"), "TIME"), (" and ", None), (b.strftime("%H:%M"), "TIME")]
        fmt = lambda t: f"{(t.hour - 1) % 12 + 1}{t.strftime(':%M') if t.minute else ''}{'am' if t.hour < 12 else 'pm'}"  # noqa: E731
        return [(fmt(a), "TIME"), (" and ", None), (fmt(b), "TIME")]

    def s_qty(self, ctx):
        return (self.qty(), "QUANTITY")

    def s_tracking(self, ctx):
        return (self.tracking(), "TRACKING")

    def s_invoice(self, ctx):
        return (self.invoice(), "INVOICE")

    def s_percent(self, ctx):
        return (self.percent(), "PERCENT")

    def s_model(self, ctx):
        return (self.model(), "MODEL_NUMBER")

    def s_serial(self, ctx):
        return (self.serial(), "SERIAL")

    def s_refnum(self, ctx):
        return (self.non_luhn(), "NON_LUHN_NUMBER")

    def s_commit(self, ctx):
        return (self.commit(), "COMMIT")

    def s_commit40(self, ctx):
        return (self.commit(True), "COMMIT")

    def s_sha256(self, ctx):
        return (self.chars("0123456789abcdef", 64), "CHECKSUM")

    def s_md5(self, ctx):
        return (self.chars("0123456789abcdef", 32), "CHECKSUM")

    def s_uuid(self, ctx):
        h = self.chars("0123456789abcdef", 32)
        return (f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{self.pick('89ab')}{h[17:20]}-{h[20:]}", "UUID")

    def s_ticket(self, ctx):
        r = self.r
        return (self.pick([f"#{r.randint(10000, 999999)}", f"CS-{self.year()}-{self.digits(6)}", f"TKT-{self.digits(5)}",
                           f"INC{self.digits(7)}", f"REQ-{r.randint(1000, 99999)}"]), "TICKET")

    def s_last4(self, ctx):
        return (self.digits(4), "CARD_LAST4")

    def s_masked(self, ctx):
        return (self.masked_card(), "MASKED_CARD")

    def s_voucher(self, ctx):
        return (self.pick(["SPRING", "WELCOME", "SAVE", "VIP", "THANKS"]) + str(self.r.randint(5, 50)) +
                (self.chars(string.ascii_uppercase, 3) if self.chance(0.5) else ""), "VOUCHER")

    def s_last4ssn(self, ctx):
        return (self.digits(4), "SSN_LAST4")

    def s_bic(self, ctx):
        return (self.bic(), "BIC")

    def s_url(self, ctx):
        dom = ctx.co_domain if self.chance(0.6) else self.domain_for(self.company())
        return (self.pick([f"https://www.{dom}/help/returns", f"https://status.{dom}", f"https://{dom}/account/orders",
                           f"https://docs.{dom}/api/v2/auth", f"http://intranet.{dom}/wiki/Onboarding",
                           f"https://{dom}/track?id={self.digits(8)}"]), "URL")

    def s_pkg(self, ctx):
        r = self.r
        return (self.pick([f"lodash@4.17.{r.randint(10, 21)}", f"torch=={r.randint(1, 2)}.{r.randint(0, 5)}.{r.randint(0, 2)}",
                           f"transformers=={r.randint(4, 4)}.{r.randint(30, 46)}.{r.randint(0, 3)}",
                           f"react@{r.randint(16, 19)}.{r.randint(0, 3)}.{r.randint(0, 9)}",
                           f"numpy>={r.randint(1, 2)}.{r.randint(20, 26)}", f"@types/node@{r.randint(18, 22)}.{r.randint(0, 15)}.0"]),
                "PACKAGE")

    def s_gitremote(self, ctx):
        return (f"git@github.com:{self.pick(CODE_NAMES)}-labs/{self.pick(CODE_NAMES)}.git", "GIT_REMOTE")

    def s_placeholder(self, ctx):
        return (self.pick(PLACEHOLDERS), "PLACEHOLDER")

    def s_taxcode(self, ctx):
        return (self.pick(["1257L", "BR", "0T", "D0", "K475", "1100L", "S1257L"]), "TAX_CODE")

    def s_bp(self, ctx):
        return (f"{self.r.randint(105, 165)}/{self.r.randint(60, 98)}", "MEASUREMENT")

    def s_weight(self, ctx):
        return (f"{self.r.randint(48, 120)}.{self.r.randint(0, 9)} kg", "MEASUREMENT")

    def s_place(self, ctx):
        return (self.pick([t for t, _ in UK_TOWNS] + [c for c, _, _ in US_CITIES] + OTHER_PLACES), "PLACE")

    def s_co(self, ctx):
        return (ctx.co, "COMPANY")

    def s_company(self, ctx):
        return (self.company(), "COMPANY")

    def s_product(self, ctx):
        return (self.product(), "PRODUCT_NAME")

    def s_weekday(self, ctx):
        return (self.pick(WEEKDAYS), "WEEKDAY")

    def s_month(self, ctx):
        return (self.pick(MONTHS), "MONTH")

    # plain fillers (no span)
    def s_daypart(self, ctx):
        return self.pick(["morning", "afternoon", "evening"])

    def s_carrier(self, ctx):
        return self.pick(CARRIERS)

    def s_role(self, ctx):
        return self.pick(ROLES)

    def s_relation(self, ctx):
        return self.pick(RELATIONS)

    def s_drug(self, ctx):
        return self.pick(DRUGS)

    def s_gpu(self, ctx):
        return self.pick(GPUS)

    def s_n(self, ctx):
        return str(self.r.randint(2, 9))

    def s_ms(self, ctx):
        return str(self.r.randint(3, 2400))

    def s_pid(self, ctx):
        return str(self.r.randint(300, 65000))

    def s_port(self, ctx):
        return str(self.r.randint(1025, 65000))

    def s_pr(self, ctx):
        return str(self.r.randint(100, 9999))

    def s_code(self, ctx):
        return self.pick(CODE_NAMES)

    def s_sysuser(self, ctx):
        return self.pick(SYS_USERS)

    def s_db(self, ctx):
        return self.pick(DB_NAMES)

    def s_dom(self, ctx):
        return ctx.co_domain

    def s_q(self, ctx):
        return f"Q{self.r.randint(1, 4)}"

    def s_status(self, ctx):
        return self.pick(["200", "200", "201", "204", "302", "401", "403", "404", "500", "502"])


# --- templates -------------------------------------------------------------------------------------------------------
# {c.*} the customer / subject of the record, {a.*} the agent or writer's counterpart, {x.*} {y.*} {z.*} third people,
# {me.*} the writer; {name}, {first}, {email}, {phone}... a fresh value each time. See _Gen.person_slot and _Gen.s_*.

CUSTOMER_GREET = ["Hi {a.first},", "Hello {co} support,", "Hi there,", "Dear {co} team,", "Hello,", "Good morning,",
                  "Hey {a.first},", "To whom it may concern,", "Dear Sir or Madam,", "Hi {a.first}, thanks for getting back to me."]
TICKET_OPEN = [
    "I placed order {order} on {date} and it still hasn't arrived.",
    "On {weekday} I received a damaged {product} (SKU {sku}) as part of order {order}.",
    "I've been charged {price} twice for invoice {invoice}, once on {date} and again on {date}.",
    "My subscription renewed on {date} even though I cancelled it back in {month}.",
    "Since the update to {version} the app keeps crashing on my {model}.",
    "The {product} I ordered in {month} stopped working after {n} weeks.",
    "Tracking {tracking} has said \"out for delivery\" since {weekday}.",
    "I'm writing about the {price} deposit for booking reference {refnum}.",
    "Unfortunately the {product} arrived in the wrong colour. Order {order}, delivered {date}.",
    "Your courier left my parcel with a neighbour on {weekday} without asking.",
]
TICKET_BODY = [
    "The card I paid with was {card}.",
    "Please refund the {price} to my card {card} rather than as store credit.",
    "You can reach me on {c.phone} between {timerange}.",
    "Best number to call is {c.phone}, or email {c.email}.",
    "My email is {c.email} in case you need it.",
    "The parcel should go to {c.addr1}, not to my old address.",
    "I've moved house, so please update my address to:\n{c.addr}",
    "For the refund, my bank details are IBAN {iban}, account holder {c.full}.",
    "My {relation} {x.full} placed the order with the card ending {last4}, but the account is mine.",
    "The courier claims nobody was home at {c.addr1} on {weekday} at {time}, which is not true.",
    "Your website shows the {product} at {price} but I was charged {price}.",
    "I already spoke to {x.first} on the phone on {date} and was promised a call back.",
    "My loyalty card number is {refnum} if that helps.",
    "The order was a gift for {x.full}, who lives at {x.addr1}.",
    "Invoice {invoice} also lists {company} as the seller, which I don't recognise.",
    "I've been a customer since {year}, so this is really disappointing.",
    "Happy to send photos. The box was marked {qty} but only half was inside.",
    "When I called, a colleague of yours ({x.first}) said the refund would take {n} working days; it has been {n} weeks.",
    "For identity checks my {c.natid_label} is {c.natid}, and the account is in my name, {c.full}.",
    "I paid by bank transfer from {iban} on {date}, reference {invoice}.",
    "I can't log in to my account from {ip4}; it says the address is blocked.",
    "Your integration keeps failing when I enter {ftpurl} as the source, although the same URL works in FileZilla.",
    "I had to use my other card, {card}, because the first one was declined.",
    "Somebody logged in to my account from {ip} on {date}, which wasn't me!",
    "I'm living abroad now, so please pay the refund into my account {iban}.",
    "Our API key ({secret}) stopped working on {weekday}, did you rotate something?",
]
TICKET_CLOSE = ["Thanks,\n{c.full}", "Regards,\n{c.first}", "Best wishes,\n{c.full}\n{c.phone}", "Cheers, {c.first}",
                "Kind regards,\n{c.title_last}", "Many thanks\n{c.full}\n\nSent from my iPhone", "Thank you,\n{c.name}",
                "{c.full}\n{c.addr}", "Best,\n{c.full}", "Regards\n{c.full} ({c.email})"]

AGENT_GREET = ["Dear {c.title_last},", "Hi {c.first},", "Hello {c.full},", "Dear {c.full},", "Good afternoon {c.first},",
               "Hi {c.first}, thanks for reaching out.", "Dear {c.title_full},"]
REPLY_BODY = [
    "Thank you for contacting {co}. I'm sorry to hear that order {order} arrived late.",
    "I've refunded {price} to the card ending in {last4}; it can take {n} working days to show on your statement.",
    "I have updated the delivery address on your account to {c.addr1}.",
    "Our records show the payment was made from IBAN {iban} on {date}.",
    "A replacement {product} ({sku}) will ship on {weekday} with {carrier}; tracking: {tracking}.",
    "My colleague {x.full} from our billing team will call you on {c.phone} tomorrow at {time}.",
    "For your security please don't send full card numbers such as {card} by email; I have removed it from the ticket.",
    "Firmware {version} for your {model} fixes this issue; {percent} of affected customers confirmed it helped.",
    "I've cancelled the charge on {card} and re-run it on the card you asked for.",
    "Your case reference is {ticket}. Please quote it if you get in touch again.",
    "I can confirm the refund of {price} was issued on {date} to {masked}.",
    "We've sent a confirmation to {c.email}. If it doesn't arrive, check your spam folder.",
    "I checked with our warehouse in {place}: the parcel left on {date} and is now with {carrier}.",
    "The account is registered to {c.addr1}; if that's out of date, just reply with the new address.",
    "As a goodwill gesture I've added a {percent} discount to your next order.",
    "Our {place} team will collect the item between {timerange} on {weekday}.",
    "I've escalated this to my manager, {x.full}, who will be in touch by {weekday}.",
    "We noticed sign-ins to your account from {ip} on {date}; if that wasn't you, please reset your password.",
    "The card we have on file is {card}; please confirm whether you'd like us to charge it or use the new one.",
    "For the tax form we need your {c.natid_label}; the one on file is {c.natid}, please confirm it's correct.",
    "I've revoked the API key you pasted in your last message ({secret}); a new one is in your dashboard.",
    "Before we send the refund, please confirm that IBAN {iban} (holder {c.full}) is correct.",
]
REPLY_CLOSE = ["Kind regards,\n{a.full}\nCustomer Care | {co}\n{a.phone}", "Best,\n{a.first}\n{co} Support",
               "{a.full}\nSenior Support Specialist\n{co}\nT: {a.phone} | E: {a.work_email}",
               "Warm regards,\n{a.first} ({co})", "Thanks again for your patience.\n\n{a.full}",
               "Many thanks,\n{a.full}\n{role}, {co}"]

EMAIL_GREET = ["Hi {x.first},", "Hi {x.first} and {y.first},", "Dear {x.title_last},", "Morning {x.first},",
               "{x.first} -", "Hello {x.full},", "Hi all,", "Dear colleagues,", "Hey {x.first},", "Good morning {x.first},"]
EMAIL_BODY = [
    "Following up on our call on {weekday}: {company} agreed to a {percent} discount on the {year} renewal.",
    "I'm copying my colleague {y.full} ({y.work_email}), who will handle invoice {invoice}.",
    "Could you send the signed contract to {x.addr1} by {date}?",
    "{y.full} is out of office from {date} to {date}; please contact {z.first} on {z.phone} in the meantime.",
    "Please find the {q} figures attached: revenue was {price}, up {percent} on {year}.",
    "The meeting with {company} has moved to {weekday} at {time} in the {place} office.",
    "{x.first}, can you double-check the IBAN they gave us ({iban})? Accounts payable flagged it.",
    "Please wire the deposit of {price} to {company}, IBAN {iban}, BIC {bic}, reference {invoice}.",
    "Let's meet at their office, {addr1}, on {weekday} at {time}.",
    "Thanks for the intro to {y.full}. I've set up a call for {month} {n}.",
    "Reminder: expense claims for {month} are due by {date}.",
    "Our new starter {y.full} joins on {weekday}; could IT set up an account before then?",
    "I spoke to {y.first} at {company} and they can deliver {qty} by the end of {month}.",
    "The customer's mobile is {phone} and the best time to call is after {time}.",
    "Attached is the quote for the {product} ({sku}); list price is {price} before the {percent} discount.",
    "Unfortunately {company} declined our proposal. Their procurement lead, {y.full}, said budget is frozen until {year}.",
    "Note that {y.first}'s personal email is {y.email}, please use that while the work account is being migrated.",
    "Could you book a courier to collect the samples from {addr1} on {date}?",
    "The vendor's SFTP is {ftpurl}; the credentials expire on {date}.",
    "Our office's static IP is {pubip}, can you add it to the allow list?",
    "Corporate card for the hotel booking: {card} (it's in {y.first}'s name).",
    "For the payroll form, {y.first}'s {y.natid_label} is {y.natid}.",
    "Dashboard access: {weburl} (read-only, please don't share outside the team).",
    "The {company} sandbox key is {secret}, production keys are in the vault.",
    "The supplier portal login is baked into the link: {weburl}",
    "{company} sent new bank details ({iban}) by email; please call them before paying anything.",
]
EMAIL_CLOSE = ["Thanks,\n{me.first}", "Best regards,\n{me.full}\n{role} | {co}\nMobile: {me.phone}\n{me.work_email}",
               "Cheers,\n{me.first}\n\n--\n{me.full}\n{co}\n{me.addr}\n{me.phone}", "Best,\n{me.full}",
               "Kind regards,\n\n{me.full}\n{role}\nDirect: {me.phone}", "Speak soon,\n{me.first}",
               "Regards,\n{me.title_full}\n{co}"]

CRM_LINES = [
    "{weekday} {date}: spoke with {c.full} ({company}) about the {product} rollout. Wants a quote for {qty} by {month}.",
    "Contact: {c.full} <{c.work_email}>, mobile {c.phone}.",
    "Decision maker is {y.title_full}; {c.first} reports to {y.first}.",
    "Billing address: {c.addr1}. PO {order}, net 30.",
    "Left voicemail on {c.phone}; {c.first} prefers email ({c.email}).",
    "Renewal {year}: current ARR {price}, proposed uplift {percent}.",
    "Referred by {y.full} at {company}.",
    "Account owner changed from {a.full} to {b.full} on {date}.",
    "Credit check done, {c.natid_label} {c.natid} on file, limit {price}.",
    "Lead source: webinar on {date}. {c.first} asked about SSO and the {version} release.",
    "Shipping contact {y.full}, {y.phone}, deliveries to {c.addr1}.",
    "Competitor {company} offered {percent} off; {c.first} is undecided.",
    "Next step: demo on {weekday} at {time} with {c.first} and {y.first}.",
    "Customer since {year}. Payment by direct debit from {iban}.",
    "Notes from trade show in {place}: met {c.full} and {y.full} at the stand.",
    "Card on file: {card}. Auto-renew is on.",
    "Co-signer on the lease: {y.full}, SSN {y.ssn}.",
    "Identity verified on the call: {c.first} read back {c.ssn} and the billing ZIP.",
    "Signed up from {ip4} on {date}; trial ends {date}.",
    "SFTP drop for their invoices: {ftpurl}.",
    "API key issued to {c.first} on {date}: {token}.",
]
CRM_HEADERS = ["Account: {co}\nOwner: {a.full}\n", "CRM note ({date})\n", "[{co}] Opportunity {order}\n",
               "Call log - {c.rev}\n", ""]

CHAT_CUST = ["it's {c.full}, email {c.email}", "my card number is {card}",
             "ok my number is {c.phone}", "the address is {c.addr1}", "thanks {a.first}!", "still waiting on {tracking}",
             "Can you send it to my work address instead? {addr1}", "yes that's right", "I paid {price} on {date}",
             "Sorry, typo, the card is {card}", "can you refund to {iban} instead", "Ok. My {c.natid_label} is {c.natid} if you need it for verification",
             "it was a {product}, SKU {sku}", "I'd rather you refunded to {iban}", "great, thank you so much"]
CHAT_CUST += ["i'm on {ip4} if that matters", "the other card is {card}", "{c.natid} is my {c.natid_label}"]
CHAT_OPEN = ["hi, my order {order} never arrived", "hello, I was charged twice for {invoice}",
             "hi there, I need to change my delivery address", "my {product} stopped working after {n} days",
             "Hi, I can't log in to my account", "hey, where is my refund for order {order}?"]
CHAT_HELLO = ["Hi! How can I help you today?", "Hi, you're chatting with {a.first}. How can I help?",
              "Good {daypart}, thanks for contacting {co}. What can I do for you?", "Hello! I'm {a.first}, how can I help?"]
CHAT_AGENT = ["Thanks {c.first}, I can see the order. Can you confirm the postcode?",
              "I've sent a reset link to {c.email}.", "Done. A refund of {price} has been issued, allow {n} working days.",
              "Could you confirm the phone number on the account?", "Thanks, I've updated the address to {c.addr1}.",
              "Please don't share full card numbers here. I'll mask that message.",
              "I can see the parcel is in {place}; it should be with you by {weekday}.",
              "Let me transfer you to my colleague {x.first} in billing.", "Your reference is {ticket}."]

ORDER_TEMPLATES = [
    "Your order {order} has shipped! Carrier: {carrier}. Tracking number: {tracking}. Estimated delivery: {weekday}, {date}.",
    "Ship to:\n{c.full}\n{c.addr}\nTel: {c.phone}",
    "Items: {qty} {product} ({sku}) @ {price}\nSubtotal: {price}\nVAT ({percent}): {price}",
    "Delivery attempt failed on {date} at {time}. We'll try again on {weekday}.",
    "Paid with {masked}. Billing address: {c.addr1}.",
    "Delivery note for {c.first}: leave with neighbour at {x.addr1} if out.",
    "ATTN: {c.upper}\n{c.addr}",
    "Order confirmation for {c.full} ({c.email}), placed {date} {time}.",
    "Gift message: Happy birthday {x.first}! Love, {c.first}",
    "Return authorised for order {order}, RMA {ticket}. Drop off at any {carrier} point before {date}.",
    "Your {product} from {co} is out for delivery today between {timerange}.",
    "Payment of {price} received by card {card} on {date}.",
    "Card {card} will be charged {price} when the order ships.",
    "Refund of {price} will be sent to IBAN {iban} within {n} working days.",
]

HR_US = [
    "New starter: {c.full}\nStart date: {date}\nSSN: {c.ssn}\nHome address: {c.addr1}\nPhone: {c.phone}",
    "{c.full} (SSN {c.ssn}) completed the I-9 on {date}. W-4 on file. Payroll address:\n{c.addr}",
    "Background check for {c.full} came back clear; SSN {c.ssn} verified against {year} records.",
    "Emergency contact for {c.first}: {y.full} ({relation}), {y.phone}.",
    "Manager {a.full} approved {n} days of PTO for {c.first} from {date}.",
    "Benefits enrolment: {c.full}, dependant {y.full}, SSN {ssn}.",
    "Please correct the SSN on file for {c.full}: it should be {c.ssn}, not {ssn}.",
    "Offer letter sent to {c.email} on {date}; base salary {price}, {percent} bonus target.",
    "Company card issued to {c.full}: {card}, monthly limit {price}.",
    "Direct deposit set up for {c.full}; SSN {c.ssn}; mailing address {c.addr1}.",
    "Form W-2 for {year} reissued to {c.full} (SSN ending {last4ssn}); full SSN {c.ssn} confirmed by phone.",
    "Dependent {y.full} added to the plan, SSN {y.ssn}, {relation} of {c.first}.",
]
HR_UK = [
    "Payroll: {c.full}, NI number {c.nino}, tax code {taxcode}, salary {price} p.a., paid to IBAN {iban}.",
    "New starter {c.full} joins the {place} office on {date}. NINO: {c.nino}. Address: {c.addr1}.",
    "Please update the NI number for {c.full}: the correct one is {c.nino} (we had {nino}).",
    "Emergency contact for {c.first}: {y.full} ({relation}), {y.phone}.",
    "Right-to-work check done by {a.full} on {date}; NI no. {c.nino}, home address:\n{c.addr}",
    "Sickness absence: {c.first} off {weekday} to {weekday}, fit note received {date}.",
    "P45 for {c.full} sent to {c.addr1} on {date}.",
    "Pension opt-out received from {c.full} ({c.nino}) effective {month} {year}.",
    "Maternity pay: {c.full}, NINO {c.nino}, MATB1 received {date}, starts {weekday}.",
    "Starter checklist for {c.full} ({c.nino}): contract signed, bank details IBAN {iban}.",
    "HMRC query about {c.full}, NI number {c.nino}; {a.first} to reply by {date}.",
    "Payslip query from {c.first}: the NI number printed is {nino}, the right one is {c.nino}.",
    "Company card issued to {c.full}: {card}, monthly limit {price}.",
]
CLINIC = [
    "Pt: {c.full}, {c.natid_label} {c.natid}. Seen in clinic {date} {time} by Dr {a.last}. BP {bp}, weight {weight}.",
    "Patient {c.full} ({c.natid_label} {c.natid}) presented on {weekday} with a cough of {n} weeks. Started {drug}.",
    "Referred to {y.title_full} at the {place} clinic. Follow-up booked {date}. Contact: {c.phone}.",
    "Discharge summary: {c.full}, {c.addr1}. Medication: {drug}, review in {n} weeks.",
    "Next of kin: {y.full} ({relation}), {y.phone}.",
    "Telephone consultation with {c.first}: symptoms improving. Repeat prescription sent to pharmacy.",
    "Dr {a.last} reviewed bloods on {date}; HbA1c {percent}. Letter sent to {c.addr1}.",
    "Fit note issued to {c.full}, NI {c.nino}, for {n} weeks from {date}.",
]
FINANCE = [
    "Payment received: {price} from {c.full}, IBAN {iban}, ref {invoice}.",
    "Dear {c.title_last}, your direct debit of {price} will be collected from {iban} on {date}.",
    "Card {card} was declined on {date} at {time} for {price} (merchant: {company}).",
    "Chargeback opened for {c.full} on card {card}; disputed amount {price}, case {ticket}.",
    "Refund of {price} to {c.full} failed: IBAN {iban} closed. New details requested by email to {c.email}.",
    "Supplier {company} changed bank details to IBAN {iban}, BIC {bic}; verified by phone with {y.full} on {y.phone}.",
    "W-9 received from {c.full}, TIN (SSN) {c.ssn}, address {c.addr1}.",
    "Transaction {refnum} for {price} flagged by fraud rules; cardholder {c.full}, {c.phone}.",
    "Statement for {month} {year}: opening balance {price}, closing balance {price}.",
    "Suspicious login to the {co} banking portal from {ip4}; payment to {iban} blocked pending call-back to {c.phone}.",
    "Self-assessment for {c.full}: UTR on file, NINO {c.nino}, refund {price} due.",
    "PAYE correction: {c.full} was set up under NI number {nino}; HMRC confirmed {c.nino}.",
    "1099 issued to contractor {c.full}, SSN {c.ssn}, total paid {price} in {year}.",
    "Garnishment order received for {c.full} (SSN {c.ssn}); {percent} of net pay from {date}.",
    "SEPA transfer of {price} from {iban} to {iban} rejected: beneficiary name mismatch ({c.full}).",
    "Standing order set up: {price} monthly to {c.full}, IBAN {iban}, first payment {date}.",
    "Manual card payment taken over the phone: {card}, {price}, authorised by {a.first}.",
    "Recurring payment for {c.full} moved from card {card} to card {card} on {date}.",
    "Loan application from {c.full}: SSN {c.ssn}, annual income {price}, co-signer {y.full} (SSN {y.ssn}).",
]
IT_TICKET = [
    "VPN drops every few minutes when I connect from {ip4}. Client version {version}.",
    "The nightly export to {ftpurl} fails with 530 Login incorrect since {date}.",
    "Can someone reset MFA for {c.full} ({c.work_email})? New phone number is {c.phone}.",
    "Printer {model} (serial {serial}) on floor {n} is jammed again.",
    "Jenkins can't reach {urlcred}; did the password change on {weekday}?",
    "My laptop ({model}, SN {serial}) is stuck on Windows build {version}.",
    "Please whitelist {ip} for the {company} integration.",
    "The shared drive mapping uses {weburl}, which I think is why it broke after the rotation.",
    "Our API key for the {company} portal ({token}) expired, can you renew it?",
    "New hire {y.full} needs access to the {code} repo; laptop is asset {serial}.",
    "Outlook keeps asking for the password of {c.work_email}.",
    "The scanner on floor {n} uploads to {ftpurl} and has stopped working.",
    "Monitoring alert: {ip} failed health checks on {port}; the probe uses {weburl}.",
    "The backup job still points at {urlcred}, which was decommissioned in {month}.",
    "Could we get a static IP for the {place} office? Currently we come out as {pubip}.",
    "The webhook secret for {company} is {token}, but their side still rejects the signature.",
    "I think my GitHub token {ghp} leaked in a screenshot, please revoke it.",
    "Service account key for the {code} job: {aws_key} / {aws_secret}. Can you move it to the vault?",
    "Firewall logs show {ip4} hammering the login page; can we block it?",
]
DEV_CHAT = [
    "Fixed in commit {commit}, will ship in {version}.",
    "Heads up: I accidentally pushed a token ({ghp}) in {commit}; revoked and rotated.",
    "The staging DB is at {ip4}; please don't paste {urlcred} in Slack again.",
    "{y.at} can you review PR #{pr}? It bumps {pkg} and pins {pkg}.",
    "Benchmark on {gpu}: {percent} faster than {version}, p95 latency {ms} ms.",
    "The release checksum is sha256:{sha256}, matching the tag from {date}.",
    "Reverted {commit40} because it broke the {code} build.",
    "Remote is {gitremote}, branch release/{version}.",
    "Our Slack bot token is {slack}, it's in the vault now, delete it from this thread please.",
    "Repro: set STRIPE_KEY={stripe} and run the webhook test against {ip}.",
    "Who owns the {code} service? {y.full} left in {month}.",
    "Bisected it to {commit}; {y.first} is taking a look.",
    "md5 of the artifact is {md5}; compare it before deploying.",
    "Prod uses the AWS key {aws_key}. I've asked {y.first} to rotate it.",
    "curl -H \"Authorization: Bearer {bearer}\" https://api.{dom}/v2/orders/{order}",
    "Ping {y.at} for the new API key; the old one ({token}) was leaked in the {month} incident.",
    "psql {pgurl} -c 'select count(*) from orders' returns {n}k rows on {ip4}",
    "Mongo connection string for the analytics job is {mongourl}, rotating it after the demo.",
    "ssh {sysuser}@{ip4} -p {port} then tail the logs",
    "Found this in an old wiki page: {urlcred}. Is it still live?",
    "Grafana is at {weburl} until SSO is fixed.",
]
LOG_LINES = [
    "{ts} INFO  [auth] login succeeded user={email} ip={ip} session={uuid}",
    "{ts} WARN  [db] retrying connection to {dburl} (attempt {n}/5)",
    "{ts} DEBUG [http] GET /api/v2/orders/{order} {status} {ms}ms client={ip}",
    "{ts} ERROR [payments] charge failed card={card} amount={price} code=card_declined",
    "{ts} DEBUG [http] request headers: {'Authorization': 'Bearer {bearer}', 'User-Agent': 'Mozilla/5.0'}",
    "{ts} INFO  [deploy] build {commit} version {version} deployed to prod-eu-{n}",
    "{ip4} - - [{clf}] \"POST /login HTTP/1.1\" {status} {ms} \"-\" \"curl/{version}\"",
    "{ts} INFO  [mailer] sent password reset to {email} (request_id={uuid})",
    "{ts} WARN  [notify] slack token {slack} rejected: invalid_auth",
    "sshd[{pid}]: Accepted publickey for {sysuser} from {ip} port {port} ssh2",
    "{ts} ERROR [kyc] validation failed for payload {\"name\": \"{name}\", \"ssn\": \"{ssn}\", \"zip\": \"{n}\"}",
    "{ts} INFO  [checkout] order {order} total={price} items={n} user={email}",
    "{ts} DEBUG [s3] using credentials AWS_ACCESS_KEY_ID={aws_key}",
    "{ts} WARN  [auth] {n} failed logins for {email} from {ip6}",
    "{\"ts\": \"{ts}\", \"level\": \"info\", \"msg\": \"profile updated\", \"phone\": \"{phone}\", \"request_id\": \"{uuid}\"}",
    "{ts} ERROR [sync] upstream returned {status}; api_key={hexkey} endpoint=https://api.{dom}/v1",
    "{ts} INFO  [worker] job {uuid} finished in {ms} ms",
    "{ts} INFO  [ship] label created tracking={tracking} ref={refnum} weight={qty}",
    "{ts} DEBUG [catalog] sku={sku} model={model} stock={n} build={commit}",
    "{ts} DEBUG [payroll] export row employee=\"{name}\" nino={nino} iban={iban}",
    "{ts} INFO  [etl] connected to {dburl} in {ms} ms",
    "{ts} ERROR [billing] {\"card_number\": \"{card}\", \"error\": \"expired_card\", \"client_ip\": \"{ip}\"}",
    "{ts} WARN  [ratelimit] {ip} exceeded {n}00 req/min on /api/v2/login",
    "{ts} INFO  [replica] upstream {dburl} lag={ms}ms",
    "{ts} DEBUG [hr-sync] updated record ssn={ssn} status=active",
    "{ts} WARN  [checkout] retry {n} for card {card} (3DS timeout) order={order}",
    "{ts} ERROR [export] upload to {ftpurl} failed: 550 Permission denied",
    "{ts} INFO  [screening] background check requested for ssn={ssn} applicant={uuid}",
    "{ts} WARN  [payroll] duplicate nino={nino} for employee_id={uuid}",
    "{ts} INFO  [sepa] mandate {uuid} created debtor_iban={iban} amount={price}",
]
CONFIG_SNIPPETS = [
    "DATABASE_URL={dburl}\nREDIS_URL={redisurl}\nAPP_VERSION={version}\nPORT={port}",
    "AWS_ACCESS_KEY_ID={aws_key}\nAWS_SECRET_ACCESS_KEY={aws_secret}\nAWS_REGION=eu-west-{n}",
    "STRIPE_SECRET_KEY={stripe}\nSTRIPE_API_VERSION={date}\nWEBHOOK_TOLERANCE=300",
    "payouts:\n  iban: {iban}\n  bic: {bic}\n  currency: EUR\n  webhook_secret: {token}",
    "smtp:\n  host: smtp.{dom}\n  port: 587\n  username: {email}\n  password: {placeholder}\n  from: {email}",
    "{\"api_key\": \"{hexkey}\", \"endpoint\": \"https://api.{dom}/v1\", \"timeout\": 30, \"client_version\": \"{version}\"}",
    "[database]\nurl = {dburl}\npool_size = {n}\n\n[slack]\ntoken = {slack}\nchannel = #alerts",
    "services:\n  app:\n    image: registry.{dom}/{code}:{version}\n    environment:\n      - GITHUB_TOKEN={ghp}\n      - MONGO_URL={mongourl}",
    "export SERVICE_API_KEY={secret}\nexport HF_HOME=/data/hf\nexport CUDA_VISIBLE_DEVICES=0,1",
    "auth:\n  jwt: {jwt}\n  issuer: https://auth.{dom}/\nimage: {code}@sha256:{sha256}",
    "git remote add origin {ghremote}",
    "upstream backend {\n  server {ip4}:{port};\n  server {ip4}:{port} backup;\n}",
    "token: {token}\nrefresh_interval: 15m\nowner: {email}\nsupport_phone: {phone}",
    "pip install {pkg}\nexport KT_API_TOKEN={token}\nknowtune train --config configs/{code}.yaml",
    "[remote]\nftp = {ftpurl}\nbackup = {urlcred}\nallow_from = {ip4}, {ip4}",
    "spring.rabbitmq.addresses={brokerurl}\nspring.datasource.hikari.maximum-pool-size={n}0\nserver.address={ip4}",
    "CELERY_BROKER_URL={brokerurl}\nSENTRY_RELEASE={commit40}\nSMTP_PASSWORD={placeholder}",
    "# TODO move to vault\nADMIN_PANEL={weburl}\nALLOWED_HOSTS={ip4},{ip6}\nDOCS={url}",
]
CONFIG_INTRO = ["Here's my config, the connection still fails:", "This is what we have in prod right now:",
                "Config from the {code} box, as requested:", "Can someone tell me what's wrong with this?",
                "Snippet from the deploy repo ({commit}):", ""]

# sentences with nothing personal in them but numbers, codes and names that look like it
TRAPS = ["Booking reference {refnum}.", "The transaction ID on your statement, {refnum}, is ours.",
         "Gift card {refnum} still has {price} on it.", "Parcel {tracking} is waiting at the depot.",
         "Part {sku} is back-ordered until {month}.", "Serial number {serial}, model {model}, firmware {version}.",
         "Invoice {invoice} for {qty} is attached.", "Membership number: {refnum}.",
         "The {product} ({sku}) ships in {qty}.", "Replacement part {sku} fits the {model} from {year} onwards.",
         "Return label {tracking} is valid until {date}.", "Release {version} is live since {weekday}.",
         "Customer reference {refnum}, order {order}.", "Warranty claim {ticket} covers serial {serial}.",
         "Your voucher code {voucher} takes {percent} off.", "Please quote {order} and {invoice} in any reply."]
FILLERS = ["Sorry for the late reply, it's been a busy week.", "Hope you had a good weekend.",
           "Unfortunately the weather in {place} delayed everything.", "Happy Friday!",
           "Please let me know if anything else comes up.", "Thanks again for your patience.",
           "As discussed last {weekday}, we'll revisit this in {month}.", "Apologies for the confusion.",
           "Quick update before the holidays.", "Any questions, just shout.",
           "Looking forward to the {place} offsite in {month}.", "Our offices are closed on {weekday} for the bank holiday.",
           "Note that prices will rise by {percent} from {month}.", "Great news: the {product} is back in stock!",
           "Monday mornings are always hectic here.", "Last orders for next-day delivery close at {time}."]


# --- the genres ------------------------------------------------------------------------------------------------------

def _ticket(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    g.render(d, g.pick(CUSTOMER_GREET), ctx)
    d.add("\n\n")
    body = [g.pick(TICKET_OPEN)] + r.sample(TICKET_BODY, r.randint(2, 4))
    if g.chance(0.25):
        body.insert(r.randint(1, len(body)), g.pick(FILLERS))
    if g.chance(0.5):
        body.insert(r.randint(1, len(body)), g.pick(TRAPS))
    _paragraphs(g, d, ctx, body)
    d.add("\n\n")
    g.render(d, g.pick(TICKET_CLOSE), ctx)


def _paragraphs(g: _Gen, d: _Doc, ctx: _Ctx, sentences: list[str]) -> None:
    for i, s in enumerate(sentences):
        if i:
            d.add("\n\n" if g.chance(0.35) or "\n" in s or "\n" in sentences[i - 1] else " ")
        g.render(d, s, ctx)


def _reply(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    g.render(d, g.pick(AGENT_GREET), ctx)
    d.add("\n\n")
    body = r.sample(REPLY_BODY, r.randint(2, 4))
    if g.chance(0.5):
        body.insert(r.randint(0, len(body)), g.pick(TRAPS))
    _paragraphs(g, d, ctx, body)
    d.add("\n\n")
    g.render(d, g.pick(REPLY_CLOSE), ctx)
    if g.chance(0.4):  # quoting the ticket
        d.add("\n\n")
        g.render(d, g.pick(["On {date} at {time}, {c.full} <{c.email}> wrote:", "-----Original Message-----\nFrom: {c.full} <{c.email}>\nSent: {weekday}, {date}",
                            "{c.first} wrote on {date}:"]), ctx)
        d.add("\n")
        sub = _Doc()
        ctx.single_line = True
        g.render(sub, g.pick(CUSTOMER_GREET).split(",")[0] + ",", ctx)
        sub.add("\n")
        _paragraphs_one_line(g, sub, ctx, [g.pick(TICKET_OPEN)] + r.sample(TICKET_BODY, r.randint(1, 2)))
        sub.add("\n")
        g.render(sub, g.pick(["Thanks, {c.first}", "{c.full}", "Regards, {c.full}"]), ctx)
        ctx.single_line = False
        d.add_quoted(sub)


def _paragraphs_one_line(g: _Gen, d: _Doc, ctx: _Ctx, sentences: list[str]) -> None:
    for i, s in enumerate(sentences):
        if i:
            d.add(" ")
        g.render(d, s.replace("\n", " "), ctx)


def _email(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    if g.chance(0.35):
        g.render(d, g.pick(["Subject: {product} order for {company}\n\n", "Subject: Re: {q} planning\n\n",
                            "Subject: Invoice {invoice}\n\n", "Subject: Intro - {y.full}\n\n",
                            "From: {me.full} <{me.work_email}>\nTo: {x.full} <{x.work_email}>\nSubject: {month} update\n\n"]), ctx)
    g.render(d, g.pick(EMAIL_GREET), ctx)
    d.add("\n\n")
    body = r.sample(EMAIL_BODY, r.randint(2, 4))
    if g.chance(0.4):
        body.insert(0, g.pick(FILLERS))
    if g.chance(0.35):
        body.insert(r.randint(0, len(body)), g.pick(TRAPS))
    _paragraphs(g, d, ctx, body)
    d.add("\n\n")
    g.render(d, g.pick(EMAIL_CLOSE), ctx)


def _crm(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    g.render(d, g.pick(CRM_HEADERS), ctx)
    lines = r.sample(CRM_LINES, r.randint(3, 6))
    if g.chance(0.5):
        lines.insert(r.randint(0, len(lines)), g.pick(TRAPS))
    bullet = g.pick(["- ", "* ", "", ""])
    for i, s in enumerate(lines):
        if i:
            d.add("\n" if bullet or g.chance(0.5) else " ")
        d.add(bullet)
        g.render(d, s, ctx)
    if g.chance(0.25):
        d.add("\n\nChat transcript attached:\n")
        _chat(g, d, ctx, short=True)


def _chat(g: _Gen, d: _Doc, ctx: _Ctx, short: bool = False) -> None:
    r = g.r
    agent_label = g.pick(["{a.first}", "Agent ({a.first})", "Support", "{a.full}"])
    cust_label = g.pick(["{c.first}", "{c.full}", "Customer", "Visitor"])
    n = r.randint(3, 5) if short else r.randint(5, 9)
    cust = [g.pick(CHAT_OPEN)] + r.sample(CHAT_CUST, n)
    agent = [g.pick(CHAT_HELLO)] + r.sample(CHAT_AGENT, n)
    clock = dt.datetime(2024, 1, 1, r.randint(7, 21), r.randint(0, 59), r.randint(0, 59))
    fmt = g.pick(["%H:%M", "%H:%M:%S", "%I:%M %p"])
    for i in range(n):
        who, line = (agent_label, agent[i // 2]) if i % 2 == 0 else (cust_label, cust[i // 2])
        if i:
            d.add("\n")
        clock += dt.timedelta(seconds=r.randint(8, 150))
        d.add("[")
        d.add(clock.strftime(fmt), "TIME")
        d.add("] ")
        g.render(d, who, ctx)
        d.add(": ")
        g.render(d, line, ctx)


def _order(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    g.render(d, g.pick(["Hi {c.first},\n\n", "Dear {c.title_last},\n\n", "{co} - order update\n\n", "Hello {c.full},\n\n", ""]), ctx)
    parts = r.sample(ORDER_TEMPLATES, r.randint(3, 5)) + r.sample(TRAPS, r.randint(0, 2))
    r.shuffle(parts)
    for i, s in enumerate(parts):
        if i:
            d.add("\n\n" if "\n" in s or g.chance(0.5) else "\n")
        g.render(d, s, ctx)
    if g.chance(0.5):
        d.add("\n\n")
        g.render(d, g.pick(["Questions? Visit {url} or reply to this email.", "Thanks for shopping with {co}!",
                            "Track your parcel at {url}.", "{co}, registered in {place}."]), ctx)


def _hr(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    c = ctx.person("c")
    uk = c.region == "UK" if c.locale in ("en_US", "en_GB") else g.chance(0.5)
    c.region = "UK" if uk else "US"  # where they work: a German name may well be on a UK payroll
    pool = HR_UK if uk else HR_US
    g.render(d, g.pick(["HR note ({date}, {a.full}):\n", "To: People Team\nRe: {c.full}\n\n", "Case {ticket}\n", ""]), ctx)
    _paragraphs(g, d, ctx, r.sample(pool, r.randint(3, 5)))


def _clinic(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    g.render(d, g.pick(["Clinic note, {weekday} {date}\n", "GP letter\n", "Referral {ticket}\n", ""]), ctx)
    for i, s in enumerate(r.sample(CLINIC, r.randint(2, 4))):
        if i:
            d.add("\n")
        g.render(d, s, ctx)
    d.add("\n")
    g.render(d, g.pick(["Dr {a.full}", "Signed: Dr {a.last}, {place} Medical Practice", "{a.full}, Practice Nurse"]), ctx)


def _finance(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    for i, s in enumerate(r.sample(FINANCE, r.randint(2, 4)) + r.sample(TRAPS, r.randint(0, 1))):
        if i:
            d.add("\n" if g.chance(0.5) else " ")
        g.render(d, s, ctx)
    if g.chance(0.4):
        d.add("\n\n")
        g.render(d, g.pick(["{a.full}, Accounts Receivable, {co}", "-- {a.first}, Finance ({a.phone})",
                            "Finance Ops | {co} | {a.work_email}"]), ctx)


def _it(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    g.render(d, g.pick(["Ticket {ticket} opened by {c.full}\n\n", "Hi IT,\n\n", "Helpdesk - {weekday}\n\n", "Hi {a.first},\n\n"]), ctx)
    _paragraphs(g, d, ctx, r.sample(IT_TICKET, r.randint(2, 3)))
    d.add("\n\n")
    g.render(d, g.pick(["Thanks, {c.first}", "{c.full}\n{role}\nExt. {pr}", "Cheers\n{c.first}"]), ctx)


def _dev(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    lines = r.sample(DEV_CHAT, r.randint(3, 5))
    names = ["{me.first}", "{x.first}", "{z.first}"]
    for i, s in enumerate(lines):
        if i:
            d.add("\n")
        g.render(d, g.pick(["[{time}] ", ""]) + names[i % 3] + ": " + s, ctx)


def _logs(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    if g.chance(0.3):
        g.render(d, g.pick(["Logs from {code}-api around the incident:", "Attaching the tail of app.log ({version}):",
                            "From the {place} edge node:"]), ctx)
        d.add("\n")
    for i, s in enumerate(r.sample(LOG_LINES, r.randint(3, 6))):
        if i:
            d.add("\n")
        g.render(d, s, ctx)


def _config(g: _Gen, d: _Doc, ctx: _Ctx) -> None:
    r = g.r
    intro = g.pick(CONFIG_INTRO)
    if intro:
        g.render(d, intro, ctx)
        d.add("\n\n")
    for i, s in enumerate(r.sample(CONFIG_SNIPPETS, r.randint(1, 2))):
        if i:
            d.add("\n\n")
        g.render(d, s, ctx)


GENRES = {"support_ticket": (_ticket, 11), "support_reply": (_reply, 9), "email": (_email, 10), "crm_note": (_crm, 7),
          "chat": (_chat, 6), "order": (_order, 6), "hr_note": (_hr, 11), "clinic_note": (_clinic, 6),
          "finance": (_finance, 8), "it_ticket": (_it, 8), "dev_chat": (_dev, 8), "logs": (_logs, 10),
          "config": (_config, 8)}


def make_corpus(seed: int = 0, n_records: int = 700) -> list[dict]:
    """`n_records` synthetic records with planted personal data and distractors; the same seed, the same corpus."""
    g = _Gen(seed)
    names, weights = list(GENRES), [w for _, w in GENRES.values()]
    records = []
    for i in range(n_records):
        genre = g.r.choices(names, weights=weights)[0]
        ctx = _Ctx(g)
        d = _Doc()
        GENRES[genre][0](g, d, ctx)
        records.append({"id": f"pii-{seed}-{i:04d}", "genre": genre, "text": d.text, "spans": d.spans,
                        "distractors": d.distractors})
    return records


# --- checks ----------------------------------------------------------------------------------------------------------

def counts(records: list[dict]) -> tuple[Counter, Counter]:
    """(planted spans per kind, distractors per kind)."""
    return (Counter(s["kind"] for r in records for s in r["spans"]),
            Counter(s["kind"] for r in records for s in r["distractors"]))


def check_corpus(records: list[dict], minimums: bool | None = None) -> list[str]:
    """Problems found (empty when the corpus is sound). Minimum counts are checked from 700 records up."""
    problems = []
    for rec in records:
        text = rec["text"]
        items = [(s, True) for s in rec["spans"]] + [(s, False) for s in rec["distractors"]]
        for s, planted in items:
            where = f"{rec['id']} {s['kind']} {s['value']!r}"
            if text[s["start"]:s["end"]] != s["value"]:
                problems.append(f"{where}: text holds {text[s['start']:s['end']]!r}")
            if s["value"] != s["value"].strip():
                problems.append(f"{where}: surrounding whitespace")
            if planted and s["kind"] not in PII_KINDS:
                problems.append(f"{where}: unknown kind")
            if s["kind"] == "CARD" and not luhn_ok(s["value"]):
                problems.append(f"{where}: fails Luhn")
            if s["kind"] == "IBAN" and not iban_ok(s["value"]):
                problems.append(f"{where}: fails mod-97")
            if s["kind"] == "SSN" and not ssn_ok(s["value"]):
                problems.append(f"{where}: invalid SSN")
            if s["kind"] == "NINO" and not nino_ok(s["value"]):
                problems.append(f"{where}: invalid NINO")
            if s["kind"] == "NON_LUHN_NUMBER" and luhn_ok(s["value"]):
                problems.append(f"{where}: passes Luhn")
        ordered = sorted(items, key=lambda x: x[0]["start"])
        for (a, pa), (b, pb) in zip(ordered, ordered[1:]):
            if b["start"] < a["end"] and (pa or pb):
                problems.append(f"{rec['id']}: {a['kind']} {a['value']!r} overlaps {b['kind']} {b['value']!r}")
    if minimums if minimums is not None else len(records) >= 700:
        planted, distract = counts(records)
        for kind, low in MIN_PER_KIND.items():
            if planted[kind] < low:
                problems.append(f"only {planted[kind]} {kind} planted (at least {low} wanted)")
        if sum(planted.values()) < MIN_PLANTED:
            problems.append(f"only {sum(planted.values())} items planted (at least {MIN_PLANTED} wanted)")
        if sum(distract.values()) < MIN_DISTRACTORS:
            problems.append(f"only {sum(distract.values())} distractors (at least {MIN_DISTRACTORS} wanted)")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="JSONL file to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--records", type=int, default=700)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    records = make_corpus(args.seed, args.records)
    took = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    planted, distract = counts(records)
    print(f"{len(records)} records (seed {args.seed}) written to {args.out} in {took:.1f} s; "
          f"{sum(len(r['text']) for r in records):,} characters")
    print(f"planted: {sum(planted.values())}")
    for k in PII_KINDS:
        print(f"  {k:<16} {planted[k]:>5}")
    print(f"distractors: {sum(distract.values())}")
    for k, n in distract.most_common():
        print(f"  {k:<16} {n:>5}")
    print("genres: " + ", ".join(f"{k} {n}" for k, n in Counter(r["genre"] for r in records).most_common()))
    problems = check_corpus(records)
    for p in problems[:50]:
        print("PROBLEM:", p)
    print("checks: " + ("all passed" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
