"""A second, independent held-out corpus for the personal-data detector ("corpus B").

Written from scratch, without reference to the detector or to the corpus it was tuned on
(`benchmarks/pii_corpus.py`), so that scoring on it measures how the detector generalises. The genres are
deliberately different from the usual support-ticket/CRM material: insurance claims, school and parent
messages, landlord letters, travel changes, pharmacy refills, forum posts, meeting minutes, GDPR requests,
bank disputes, recruiting mail, driver notes, incident summaries, app-review replies, SMS threads, CSV
exports in prose, .env/YAML/Terraform/INI files, stack traces, access logs, SEPA mandates, tax and payroll
mail, guest lists, vet and club notices, and more.

Planted kinds: EMAIL, PHONE, CARD, IBAN, IP, URL_CREDENTIALS, SECRET, SSN, NINO, ADDRESS, PERSON.
People's names come from Faker (en_US, en_GB, en_IN, nl_NL, sv_SE, tr_TR, pl_PL, it_IT, es_MX, fr_FR, de_DE,
pt_BR) and, for roughly a third of the people, from names constructed here that occur in no Faker name list
(hand-written names from Yoruba, Igbo, Akan, Maori, Hawaiian, Tamil, Amharic, Basque, Quechua, ... naming
traditions that survive a check against every Faker locale, and invented syllable names). Titles stay
outside PERSON spans; a possessive "'s" stays outside too.

Distractors (text that must be left alone) are recorded with their own kinds: YEAR, PRICE, DATE, TIME,
ORDER_NO, BOOKING_REF, CLAIM_NO, POLICY_NO, ..., COMMIT_HASH, CHECKSUM, UUID, NON_LUHN_16, COMPANY, PLACE,
STREET, PRODUCT_NAME, PET_NAME, WEEKDAY, MONTH, SENTENCE_START (capitalised words opening a sentence), ...

    python benchmarks/pii_corpus_b.py OUT.jsonl [--seed 0] [--records 600]

writes one JSON object per line: {"id", "text", "spans": [{start, end, kind, value}], "distractors": [...]},
checks the corpus (span texts, Luhn, mod-97, SSN/NINO ranges, overlaps, minimum counts) and prints counts.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import json
import math
import pkgutil
import random
import re
import string
import sys
import time
import unicodedata
from collections import Counter
from pathlib import Path

PII_KINDS = ("EMAIL", "PHONE", "CARD", "IBAN", "IP", "URL_CREDENTIALS", "SECRET", "SSN", "NINO", "ADDRESS",
             "PERSON")
MINIMUMS = {k: 100 for k in PII_KINDS if k != "PERSON"} | {"PERSON": 600}
MIN_TOTAL_PLANTED = 2000
MIN_DISTRACTORS = 1200

FAKER_LOCALES = ("en_US", "en_GB", "en_IN", "nl_NL", "sv_SE", "tr_TR", "pl_PL", "it_IT", "es_MX", "fr_FR",
                 "de_DE", "pt_BR")

# --- checksums -------------------------------------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    d = [int(c) for c in digits if c.isdigit()]
    total = 0
    for i, x in enumerate(reversed(d)):
        if i % 2 == 1:
            x *= 2
            if x > 9:
                x -= 9
        total += x
    return total % 10 == 0


def luhn_digit(partial: str) -> str:
    for c in "0123456789":
        if luhn_ok(partial + c):
            return c
    raise AssertionError


def _iban_num(s: str) -> int:
    return int("".join(str(int(c, 36)) for c in s))


def iban_ok(iban: str) -> bool:
    s = iban.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]+", s):
        return False
    return _iban_num(s[4:] + s[:4]) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    d = re.sub(r"\D", "", ssn)
    if len(d) != 9:
        return False
    area, group, serial = int(d[:3]), int(d[3:5]), int(d[5:])
    return 1 <= area <= 899 and area != 666 and group >= 1 and serial >= 1


NINO_FIRST = "ABCEGHJKLMNOPRSTWXYZ"     # not D F I Q U V
NINO_SECOND = "ABCEGHJKLMNPRSTWXYZ"     # not D F I O Q U V
NINO_BAD_PREFIX = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def nino_ok(nino: str) -> bool:
    s = nino.replace(" ", "").upper()
    m = re.fullmatch(r"([A-Z])([A-Z])(\d{6})([A-D])", s)
    return bool(m) and m.group(1) in NINO_FIRST and m.group(2) in NINO_SECOND and s[:2] not in NINO_BAD_PREFIX


# --- names -------------------------------------------------------------------------------------------------------------

# Hand-written names from naming traditions; whatever turns up in any Faker list is dropped at run time, so
# what is used from these lists is in no Faker list.
CULTURAL_FIRST = """
Adebayo Folake Oluwaseun Temitope Ayodele Olamide Damilola Morenike Adewale Titilayo Oyinkansola Babajide
Funmilayo Yetunde Omotola Iyabode Opeyemi Adaeze Ifeoma Chinonso Ebuka Somtochukwu Chidera Amarachi
Akosua Kwabena Efua Kwaku Adwoa Kwesi Akua Kojo Afua Aroha Wiremu Hemi Ngaio Manaia Mihi Anahera Rawiri
Huia Nikau Ariki Kalani Leilani Keoni Makana Noelani Kainoa Kanoa Iolana Kealii Pualani Mahina Kaimana
Nalani Ikaika Meenakshi Senthil Thenmozhi Arivu Kayal Ilango Valli Muthu Kathir Anbu Yazhini Elango
Poongodi Thamizh Sudar Abebe Tsion Mekdes Dawit Selam Yonas Hiwot Berhane Meseret Tewodros Itziar Aitor
Garazi Iker Nerea Unai Amaia Ander Inti Killa Sisa Amaru Cerys Rhodri Gwenllian Iolo Bleddyn Angharad
Eluned Gethin Sioned Tenzin Pema Dolkar Sonam Nyima Ulani Tahu Keahi Mose Sefo Losana Vaiana Tevita
""".split()
CULTURAL_LAST = """
Adeyemi Ogunleye Oyelaran Afolabi Balogun Olaniyan Akinwumi Adebisi Ogundipe Fashola Oyebanji Adesanya
Oladipo Akintola Ogunbiyi Nwosu Nwachukwu Onyeka Anozie Ezeani Nwankwo Agbo Asante Boateng Agyeman
Ofori Appiah Amoako Frimpong Bonsu Antwi Gyamfi Nkansah Sarpong Ngata Parata Tawhiri Herewini Tipene
Rangihau Tomoana Waititi Ruatapu Harawira Pomare Kereama Kahananui Kealoha Kamakau Nakoa Akana Kahale
Kaleikini Kanahele Mahoe Kapaona Keawe Nahinu Kaniho Subramaniam Ramasamy Thangavel Murugesan Palanisamy
Annamalai Kandasamy Ponnusamy Velusamy Arumugam Chellappan Periyasamy Duraisamy Tesfaye Gebremedhin
Woldemariam Alemu Bekele Desta Kebede Etxeberria Goikoetxea Urrutia Arrieta Zubizarreta Agirre Olaizola
Iturralde Yupanqui Mamani Quispe Huaman Condori Llewelyn Prys Dorjee Lhamo Tuilagi Fifita Taufa Vainikolo
""".split()

_ONSETS = ["b", "d", "k", "l", "m", "n", "r", "s", "t", "v", "z", "th", "sh", "dr", "kr", "br", "g", "f",
           "h", "j", "y", "p", "tr", "st", "ch", "gw", "vr", "q"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ai", "ei", "ou", "ia", "aa", "io"]
_CODAS = ["", "", "", "", "n", "r", "l", "s", "th", "m", "nd"]
_FIRST_ENDS = ["", "a", "ien", "is", "ora", "ek", "ith", "ane", "ou", "iel", "yn", "o"]
_LAST_ENDS = ["", "ari", "en", "oth", "ulu", "ami", "ovic", "stad", "ell", "ander", "quist", "ibe", "ezu",
              "amba", "orne", "ikos", "ewa"]

_FAKER_NAME_SET: set[str] | None = None


def faker_name_set() -> set[str]:
    """Every first and last name (lower-cased, also split on spaces and hyphens) in every Faker locale."""
    global _FAKER_NAME_SET
    if _FAKER_NAME_SET is None:
        import faker.providers.person as person_pkg
        names: set[str] = set()
        for mod_info in pkgutil.iter_modules(person_pkg.__path__):
            mod = importlib.import_module(f"faker.providers.person.{mod_info.name}")
            prov = getattr(mod, "Provider", None)
            if prov is None:
                continue
            for attr in dir(prov):
                if not attr.startswith(("first_name", "last_name", "first_romanized", "last_romanized")):
                    continue
                val = getattr(prov, attr)
                if callable(val) or isinstance(val, str):
                    continue
                try:
                    items = list(val)
                except TypeError:
                    continue
                for x in items:
                    if isinstance(x, str):
                        low = x.lower()
                        names.add(low)
                        names.update(p for p in re.split(r"[\s\-']+", low) if p)
        _FAKER_NAME_SET = names
    return _FAKER_NAME_SET


def in_faker(name: str) -> bool:
    s = faker_name_set()
    low = name.lower()
    return low in s or any(p in s for p in re.split(r"[\s\-']+", low) if p)


class Person:
    TITLES = {"m": ["Mr", "Mr", "Mr.", "Dr", "Dr.", "Prof."], "f": ["Ms", "Mrs", "Miss", "Ms.", "Dr", "Prof."],
              None: ["Dr", "Dr.", "Mx", "Prof."]}

    def __init__(self, first: str, last: str, source: str, rng: random.Random, gender: str | None = None):
        self.first, self.last, self.source, self.gender = first, last, source, gender
        self.middle = rng.choice(string.ascii_uppercase.replace("X", "").replace("Q", ""))
        self.title = rng.choice(self.TITLES[gender])
        self.emails: list[str] = []

    @property
    def constructed(self) -> bool:
        return self.source in ("cultural", "invented")


_CLEAN_NAME = re.compile(r"[^\W\d_]+(?:[ '\-’][^\W\d_]+)*")


class Names:
    def __init__(self, rng: random.Random, seed: int):
        from faker import Faker
        self.rng = rng
        self.fakers = []
        for i, loc in enumerate(FAKER_LOCALES):
            f = Faker(loc)
            f.seed_instance(seed * 1000 + i)
            self.fakers.append((loc, f))
        self.cult_first = [n for n in CULTURAL_FIRST if not in_faker(n)]
        self.cult_last = [n for n in CULTURAL_LAST if not in_faker(n)]
        self.used_surnames: list[str] = []

    def _syllables(self, n: int) -> str:
        rng = self.rng
        s = ""
        for i in range(n):
            s += rng.choice(_ONSETS) + rng.choice(_VOWELS) + (rng.choice(_CODAS) if i == n - 1 else "")
        return s

    def invented(self, last: bool) -> str:
        rng = self.rng
        for _ in range(200):
            core = self._syllables(rng.choice([1, 2, 2, 3] if last else [1, 2, 2]))
            word = core + rng.choice(_LAST_ENDS if last else _FIRST_ENDS)
            word = re.sub(r"(.)\1\1", r"\1\1", word)
            if not 4 <= len(word) <= 10 or in_faker(word) or re.search(r"[^aeiouy]{3}|[aeiouy]{3}", word):
                continue
            return word[0].upper() + word[1:]
        raise AssertionError("could not invent a name")

    def person(self) -> Person:
        rng = self.rng
        r = rng.random()
        if r < 0.17:
            p = Person(rng.choice(self.cult_first), rng.choice(self.cult_last), "cultural", rng)
        elif r < 0.34:
            p = Person(self.invented(False), self.invented(True), "invented", rng)
        else:
            loc, f = rng.choice(self.fakers)
            gender = rng.choice("mf")
            while True:   # a few Faker entries are abbreviated or garbled ("Hans-J.", "Emine.", "Bourgondië, van")
                first = f.first_name_male() if gender == "m" else f.first_name_female()
                last = f.last_name()
                if _CLEAN_NAME.fullmatch(first) and _CLEAN_NAME.fullmatch(last):
                    break
            p = Person(first, last, "faker:" + loc, rng, gender)
        self.used_surnames.append(p.last)
        return p

    def surname(self) -> str:
        """A surname for a company name: drawn from the same pools as people's names."""
        return self.person().last


# --- values ------------------------------------------------------------------------------------------------------------

_FOLD = str.maketrans({"ł": "l", "Ł": "L", "ı": "i", "ß": "ss", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE",
                       "đ": "d", "œ": "oe", "ð": "d", "þ": "th"})


def ascii_fold(s: str) -> str:
    s = s.translate(_FOLD)
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c))


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", ascii_fold(s).lower())


EMAIL_DOMAINS = ["gmail.com", "outlook.com", "yahoo.co.uk", "hotmail.fr", "web.de", "gmx.net", "icloud.com",
                 "proton.me", "fastmail.com", "libero.it", "wp.pl", "uol.com.br", "rediffmail.com",
                 "btinternet.com", "ziggo.nl", "telia.com", "yandex.com.tr", "prodigy.net.mx", "orange.fr",
                 "t-online.de", "hey.com", "aol.com", "comcast.net", "sky.com", "posteo.de", "mail.ee",
                 "virginmedia.com", "live.se", "me.com", "pm.me"]
ORG_DOMAINS = ["harbourline.co.uk", "quillfield.com", "uni-leipzig.de", "student.uva.nl", "nhs.net",
               "brightpath-lettings.co.uk", "mapleridge.k12.mn.us", "kestrel-insure.com", "tidewater.org",
               "oakmere.ac.uk", "sundial-travel.com", "ferncastle.io", "meadowpharm.com", "corvid.dev",
               "alderbank.eu", "lindenhall.school", "pinecrest-dental.com", "copperleaf.studio"]


def make_email(p: Person, rng: random.Random) -> str:
    f, last = _slug(p.first) or "x", _slug(p.last) or "y"
    pat = rng.randrange(11)
    local = [f"{f}.{last}", f"{f}{last}", f"{f[0]}{last}", f"{f}_{last}", f"{f}.{last}{rng.randint(1, 99)}",
             f"{last}.{f}", f"{f}{rng.randint(70, 2009)}", f"{f[0]}.{last}", f"{f}-{last}",
             f"{f}.{last}+{rng.choice(['bills', 'school', 'travel', 'news', 'rent'])}",
             f"{last}{f[0]}{rng.randint(1, 9)}"][pat]
    domain = rng.choice(ORG_DOMAINS) if rng.random() < 0.25 else rng.choice(EMAIL_DOMAINS)
    e = f"{local}@{domain}"
    if rng.random() < 0.06:
        e = e[0].upper() + e[1:]
    return e


def _d(rng, n):
    return "".join(rng.choice("0123456789") for _ in range(n))


def phone_us(rng):
    a = f"{rng.randint(2, 9)}{_d(rng, 1)}{rng.randint(0, 8)}"
    b = f"{rng.randint(2, 9)}{_d(rng, 2)}"
    c = _d(rng, 4)
    return rng.choice([f"({a}) {b}-{c}", f"{a}-{b}-{c}", f"+1 {a} {b} {c}", f"{a}.{b}.{c}", f"+1 ({a}) {b}-{c}",
                       f"1-{a}-{b}-{c}", f"+1-{a}-{b}-{c}"])


def phone_uk(rng):
    mob = f"7{rng.randint(4, 9)}{_d(rng, 2)}"
    rest = _d(rng, 6)
    land = rng.choice(["20", "113", "117", "121", "131", "141", "161", "1632", "1865", "1223", "29"])
    lrest = _d(rng, 10 - len(land))
    return rng.choice([f"0{mob} {rest}", f"+44 {mob} {rest}", f"+44 (0){mob} {rest}", f"0{mob}{rest}",
                       f"0{land} {lrest[:len(lrest) // 2]} {lrest[len(lrest) // 2:]}" if land == "20" else
                       f"0{land} {lrest}", f"+44 {land} {lrest}", f"0{mob} {rest[:3]} {rest[3:]}"])


def phone_intl(rng):
    k = rng.randrange(13)
    if k == 0:
        return f"+49 {rng.choice(['30', '40', '89', '221', '151', '176'])} {_d(rng, 7)}"
    if k == 1:
        return rng.choice([f"+31 6 {_d(rng, 8)}", f"06-{_d(rng, 8)}", f"+31 20 {_d(rng, 3)} {_d(rng, 4)}"])
    if k == 2:
        g = [_d(rng, 2) for _ in range(4)]
        return rng.choice([f"+33 {rng.choice('67')} {' '.join(g)}", f"0{rng.choice('67')} {' '.join(g)}",
                           f"+33 (0)1 {' '.join(g)}"])
    if k == 3:
        return rng.choice([f"+91 {rng.randint(7, 9)}{_d(rng, 4)} {_d(rng, 5)}", f"+91-{rng.randint(7, 9)}{_d(rng, 9)}",
                           f"0{rng.randint(7, 9)}{_d(rng, 4)} {_d(rng, 5)}"])
    if k == 4:
        return rng.choice([f"+55 11 9{_d(rng, 4)}-{_d(rng, 4)}", f"(21) 9{_d(rng, 4)}-{_d(rng, 4)}"])
    if k == 5:
        return f"+52 {rng.choice(['55', '33', '81'])} {_d(rng, 4)} {_d(rng, 4)}"
    if k == 6:
        return rng.choice([f"+46 7{rng.choice('0236')} {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}",
                           f"07{rng.choice('0236')}-{_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}"])
    if k == 7:
        return f"+48 {rng.choice('5678')}{_d(rng, 2)} {_d(rng, 3)} {_d(rng, 3)}"
    if k == 8:
        return f"+39 3{_d(rng, 2)} {_d(rng, 3)} {_d(rng, 4)}"
    if k == 9:
        return rng.choice([f"+90 5{_d(rng, 2)} {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}",
                           f"0 (5{_d(rng, 2)}) {_d(rng, 3)} {_d(rng, 2)} {_d(rng, 2)}"])
    if k == 10:
        return f"+234 80{rng.choice('36')} {_d(rng, 3)} {_d(rng, 4)}"
    if k == 11:
        return f"+64 2{rng.choice('127')} {_d(rng, 3)} {_d(rng, 4)}"
    return f"+353 8{rng.choice('3567')} {_d(rng, 3)} {_d(rng, 4)}"


def any_phone(rng):
    r = rng.random()
    return phone_us(rng) if r < 0.35 else phone_uk(rng) if r < 0.6 else phone_intl(rng)


def make_card(rng):
    brand = rng.choice(["visa", "visa", "mc", "mc2", "amex", "discover"])
    if brand == "visa":
        body, n = "4" + _d(rng, 5), 16
    elif brand == "mc":
        body, n = f"5{rng.randint(1, 5)}" + _d(rng, 4), 16
    elif brand == "mc2":
        body, n = str(rng.randint(2221, 2720)) + _d(rng, 2), 16
    elif brand == "amex":
        body, n = rng.choice(["34", "37"]) + _d(rng, 4), 15
    else:
        body, n = rng.choice(["6011", "65" + _d(rng, 2), str(rng.randint(644, 649)) + _d(rng, 1)]) + _d(rng, 2), 16
    body += _d(rng, n - 1 - len(body))
    num = body + luhn_digit(body)
    sep = rng.choice([" ", " ", "-", ""])
    if n == 15:
        return sep.join([num[:4], num[4:10], num[10:]])
    return sep.join(num[i:i + 4] for i in range(0, 16, 4))


IBAN_SPECS = {  # country: (bban pattern: a=letter, n=digit, c=alnum (digits mostly), fixed prefixes)
    "DE": "n" * 18, "GB": "aaaa" + "n" * 14, "FR": "n" * 10 + "c" * 11 + "nn", "NL": "aaaa" + "n" * 10,
    "ES": "n" * 20, "IT": "a" + "n" * 10 + "c" * 12, "BE": "n" * 12, "CH": "n" * 5 + "c" * 12,
    "AT": "n" * 16, "PL": "n" * 24, "SE": "n" * 20, "IE": "aaaa" + "n" * 14, "PT": "n" * 21, "DK": "n" * 14,
    "NO": "n" * 11, "FI": "n" * 14, "TR": "n" * 5 + "0" + "n" * 16, "LU": "nnn" + "c" * 13,
}
BANK_CODES = {"GB": ["NWBK", "BARC", "LOYD", "HBUK", "MIDL", "MONZ", "SRLG"], "NL": ["ABNA", "INGB", "RABO",
              "TRIO", "KNAB", "BUNQ", "SNSB"], "IE": ["AIBK", "BOFI", "IPBS"]}


def make_iban(rng):
    cc = rng.choice(list(IBAN_SPECS))
    pat = IBAN_SPECS[cc]
    bban = ""
    if cc in BANK_CODES:
        bban = rng.choice(BANK_CODES[cc])
        pat = pat[4:]
    for ch in pat:
        if ch == "n":
            bban += rng.choice(string.digits)
        elif ch == "a":
            bban += rng.choice(string.ascii_uppercase)
        elif ch == "c":
            bban += rng.choice(string.digits) if rng.random() < 0.85 else rng.choice(string.ascii_uppercase)
        else:
            bban += ch
    check = 98 - _iban_num(bban + cc + "00") % 97
    iban = f"{cc}{check:02d}{bban}"
    assert iban_ok(iban)
    if rng.random() < 0.6:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def make_ipv4(rng):
    r = rng.random()
    if r < 0.15:
        return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.25:
        return f"192.168.{rng.randint(0, 20)}.{rng.randint(2, 254)}"
    if r < 0.32:
        return f"172.{rng.randint(16, 31)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    if r < 0.45:
        return f"{rng.choice(['203.0.113', '198.51.100', '192.0.2'])}.{rng.randint(1, 254)}"
    first = rng.choice([x for x in range(11, 224) if x not in (100, 127, 169, 172, 192)])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def make_ipv6(rng):
    prefix = rng.choice([["2001", "db8"], ["2a02", f"{rng.randint(0x100, 0xfff):x}"], ["2600", f"{rng.randint(0x1000, 0xffff):x}"],
                         ["2406", f"{rng.randint(0x100, 0xffff):x}"], ["fe80"], ["2a01", f"{rng.randint(0x100, 0xfff):x}"]])
    groups = prefix + [f"{rng.randint(0, 0xffff):x}" for _ in range(8 - len(prefix))]
    if prefix == ["fe80"]:
        return "fe80::" + ":".join(groups[4:])
    if rng.random() < 0.6:
        i = rng.randint(2, 5)
        j = rng.randint(i + 1, 7)
        return ":".join(groups[:i]) + "::" + ":".join(groups[j:])
    return ":".join(groups)


def make_ip(rng):
    return make_ipv6(rng) if rng.random() < 0.18 else make_ipv4(rng)


def _rand(rng, n, alphabet=string.ascii_letters + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


HEX = "0123456789abcdef"
B64URL = string.ascii_letters + string.digits + "-_"
UPPER_DIG = string.ascii_uppercase + string.digits


def make_password(rng):
    k = rng.randrange(5)
    words = ["Harbour", "violet", "Kettle", "monsoon", "Quartz", "saffron", "Tundra", "pepper", "Falcon",
             "lantern", "Cobalt", "willow", "Ember", "juniper", "Marble", "orchid"]
    if k == 0:
        return rng.choice(words) + rng.choice(["!", "#", "$", "@", "*", "&"]) + _d(rng, rng.randint(2, 4))
    if k == 1:
        return "-".join(rng.choice(words).lower() for _ in range(3)) + _d(rng, 1)
    if k == 2:
        return _rand(rng, rng.randint(14, 22), string.ascii_letters + string.digits + "!#%^*+=?_")
    if k == 3:
        return rng.choice(words) + _d(rng, 2) + rng.choice(words) + rng.choice("!?%")
    return _rand(rng, 4, string.ascii_uppercase) + _d(rng, 3) + _rand(rng, 5, string.ascii_lowercase) + rng.choice("#$%&")


def make_urlpass(rng):
    k = rng.randrange(3)
    if k == 0:
        return _rand(rng, rng.randint(12, 24))
    if k == 1:
        return rng.choice(["Harbour", "violet", "Kettle", "Quartz", "Tundra", "Cobalt"]) + _d(rng, 3) + rng.choice(["", "_", "-", "~"]) + _rand(rng, 3)
    return _rand(rng, 16, string.ascii_lowercase + string.digits)


URL_FAMILIES = {"db": [0, 1, 2, 3], "mq": [5, 4], "redis": [4], "http": [7, 6], "proxy": [9], "smtp": [8], "ftp": [6]}


def make_urlcred(rng, family: str | None = None):
    user = rng.choice(["app", "svc_billing", "admin", "deploy", "etl_reader", "postgres", "root", "grafana",
                       "ci-bot", "reporting", "guest", "backup", "mqadmin", "jenkins", "wp_user", "ftpuser"])
    pw = make_urlpass(rng)
    host = rng.choice(["db.internal", "10.20.4.17", "pg-prod-2.eu-west-1.rds.amazonaws.com", "mq.corp.local",
                       "cluster0.x7kqz.mongodb.net", "cache-01", "files.example-hosting.net", "192.168.8.40",
                       "git.quillfield.com", "warehouse.ferncastle.io", "localhost", "mysql-primary.svc"])
    k = rng.choice(URL_FAMILIES[family]) if family else rng.randrange(10)
    if k == 9:
        return f"http://{user}:{pw}@{rng.choice(['proxy.corp.local', 'squid.internal', '10.0.0.8'])}:{rng.choice([3128, 8080])}"
    if k == 0:
        return f"postgres://{user}:{pw}@{host}:5432/{rng.choice(['app', 'billing', 'analytics'])}"
    if k == 1:
        return f"postgresql://{user}:{pw}@{host}/{rng.choice(['orders', 'crm', 'main'])}?sslmode=require"
    if k == 2:
        return f"mysql://{user}:{pw}@{host}:3306/{rng.choice(['shop', 'wordpress', 'legacy'])}"
    if k == 3:
        return f"mongodb+srv://{user}:{pw}@{host}/{rng.choice(['events', 'test'])}?retryWrites=true"
    if k == 4:
        return f"redis://{user}:{pw}@{host}:6379/0"
    if k == 5:
        return f"amqp://{user}:{pw}@{host}:5672/{rng.choice(['%2F', 'jobs'])}"
    if k == 6:
        return f"ftp://{user}:{pw}@{host}/{rng.choice(['uploads', 'exports/daily'])}"
    if k == 7:
        return f"https://{user}:{pw}@{host}/{rng.choice(['repo.git', 'api/v2/status', 'dav/'])}"
    return f"smtp://{user}:{pw}@{host}:587"


def make_jwt(rng):
    def b64(obj):
        return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")
    header = {"alg": rng.choice(["HS256", "RS256", "ES256"]), "typ": "JWT"}
    payload = {"sub": str(rng.randint(10000, 99999999)), "iat": 1700000000 + rng.randint(0, 60000000)}
    payload["exp"] = payload["iat"] + rng.choice([900, 3600, 86400])
    if rng.random() < 0.5:
        payload["scope"] = rng.choice(["read:orders", "admin", "user profile", "refill:submit"])
    sig_len = 43 if header["alg"] == "HS256" else rng.choice([86, 342])
    return f"{b64(header)}.{b64(payload)}.{_rand(rng, sig_len, B64URL)}"


def make_secret(rng, kind: str | None = None):
    kinds = ["aws_key", "aws_secret", "gh", "ghpat", "glpat", "slack", "stripe", "google", "openai", "anthropic",
             "twilio", "sendgrid", "npm", "pypi", "mailgun", "digitalocean", "shopify", "telegram", "azure",
             "vault", "databricks", "hf", "linear", "postman", "generic", "generic_hex", "jwt", "discord"]
    kind = kind or rng.choice(kinds)
    if kind == "aws_key":
        return rng.choice(["AKIA", "ASIA"]) + _rand(rng, 16, UPPER_DIG)
    if kind == "aws_secret":
        return _rand(rng, 40, string.ascii_letters + string.digits + "/+")
    if kind == "gh":
        return rng.choice(["ghp_", "gho_", "ghs_"]) + _rand(rng, 36)
    if kind == "ghpat":
        return "github_pat_" + _rand(rng, 22, UPPER_DIG) + "_" + _rand(rng, 59)
    if kind == "glpat":
        return "glpat-" + _rand(rng, 20, string.ascii_letters + string.digits + "-_")
    if kind == "slack":
        return f"{rng.choice(['xoxb', 'xoxp'])}-{_d(rng, 12)}-{_d(rng, 13)}-{_rand(rng, 24)}"
    if kind == "stripe":
        return rng.choice(["sk_live_", "rk_live_", "sk_test_"]) + _rand(rng, rng.choice([24, 99]))
    if kind == "google":
        return "AIza" + _rand(rng, 35, string.ascii_letters + string.digits + "-_")
    if kind == "openai":
        return rng.choice(["sk-proj-", "sk-"]) + _rand(rng, 48, string.ascii_letters + string.digits + "-_")
    if kind == "anthropic":
        return "sk-ant-api03-" + _rand(rng, 93, string.ascii_letters + string.digits + "-_") + "AA"
    if kind == "twilio":
        return "SK" + _rand(rng, 32, HEX)
    if kind == "sendgrid":
        return "SG." + _rand(rng, 22, B64URL) + "." + _rand(rng, 43, B64URL)
    if kind == "npm":
        return "npm_" + _rand(rng, 36)
    if kind == "pypi":
        return "pypi-AgEIcHlwaS5vcmc" + _rand(rng, 60, B64URL)
    if kind == "mailgun":
        return "key-" + _rand(rng, 32, HEX)
    if kind == "digitalocean":
        return "dop_v1_" + _rand(rng, 64, HEX)
    if kind == "shopify":
        return rng.choice(["shpat_", "shpss_"]) + _rand(rng, 32, HEX)
    if kind == "telegram":
        return f"{rng.randint(100000000, 7999999999)}:AA{_rand(rng, 33, B64URL)}"
    if kind == "azure":
        return _rand(rng, 86, string.ascii_letters + string.digits + "+/") + "=="
    if kind == "vault":
        return "hvs." + _rand(rng, 24)
    if kind == "databricks":
        return "dapi" + _rand(rng, 32, HEX)
    if kind == "hf":
        return "hf_" + _rand(rng, 34)
    if kind == "linear":
        return "lin_api_" + _rand(rng, 40)
    if kind == "postman":
        return f"PMAK-{_rand(rng, 24, HEX)}-{_rand(rng, 34, HEX)}"
    if kind == "discord":
        return f"{_rand(rng, 24, string.ascii_letters + string.digits)}.{_rand(rng, 6, B64URL)}.{_rand(rng, 38, B64URL)}"
    if kind == "generic_hex":
        return _rand(rng, rng.choice([32, 40, 48]), HEX)
    if kind == "jwt":
        return make_jwt(rng)
    return _rand(rng, rng.choice([32, 40, 44, 50, 64]), string.ascii_letters + string.digits + rng.choice(["", "-_", "+/"]))


def make_ssn(rng):
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            break
    s = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    r = rng.random()
    if r < 0.12:
        return s.replace("-", " ")
    if r < 0.22:
        return s.replace("-", "")
    return s


def make_nino(rng):
    while True:
        p = rng.choice(NINO_FIRST) + rng.choice(NINO_SECOND)
        if p not in NINO_BAD_PREFIX:
            break
    d = _d(rng, 6)
    suf = rng.choice("ABCD")
    s = f"{p} {d[:2]} {d[2:4]} {d[4:]} {suf}" if rng.random() < 0.6 else f"{p}{d}{suf}"
    assert nino_ok(s)
    return s


US_STREETS = ["Maple", "Oak", "Cedar", "Elm", "Pine", "Lakeview", "Sunset", "Highland", "Juniper", "Magnolia",
              "Cherry Hill", "Willow Creek", "Washington", "Lincoln", "Jefferson", "Franklin", "Prospect", "Ridge",
              "Valley View", "Harbor", "Mission", "Piedmont", "Sycamore", "Aspen", "Bluebonnet", "Chestnut",
              "Dogwood", "Fairmount", "Grandview", "Hillcrest", "Ivy", "Kingsbury", "Larchmont", "Meridian",
              "North Shore", "Orchard", "Park", "Quail Run", "Riverside", "Stonegate", "Tamarack", "Union",
              "Vine", "Walnut", "Yellowstone"]
US_SUFFIX = ["Street", "St", "Avenue", "Ave", "Road", "Rd", "Boulevard", "Blvd", "Lane", "Ln", "Drive", "Dr",
             "Court", "Ct", "Way", "Place", "Pl", "Terrace", "Circle", "Parkway"]
US_CITIES = [("Springfield", "IL", "627"), ("Madison", "WI", "537"), ("Austin", "TX", "787"), ("Eugene", "OR", "974"),
             ("Charlotte", "NC", "282"), ("Burlington", "VT", "054"), ("Tucson", "AZ", "857"), ("Boise", "ID", "837"),
             ("Dayton", "OH", "454"), ("Savannah", "GA", "314"), ("Albany", "NY", "122"), ("Fresno", "CA", "937"),
             ("Oakland", "CA", "946"), ("Tacoma", "WA", "984"), ("Omaha", "NE", "681"), ("Duluth", "MN", "558"),
             ("Lexington", "KY", "405"), ("Providence", "RI", "029"), ("Santa Fe", "NM", "875"), ("Ann Arbor", "MI", "481"),
             ("Knoxville", "TN", "379"), ("Baton Rouge", "LA", "708"), ("Des Moines", "IA", "503"), ("Reno", "NV", "895"),
             ("Cheyenne", "WY", "820"), ("Hartford", "CT", "061"), ("Missoula", "MT", "598"), ("Norfolk", "VA", "235"),
             ("Wichita", "KS", "672"), ("Pittsburgh", "PA", "152"), ("Brooklyn", "NY", "112"), ("Honolulu", "HI", "968")]
UK_STREETS = ["Kingsley", "Orchard", "Mill", "Station", "Beech", "Hawthorn", "Church", "Victoria", "Albion",
              "Ferndale", "Granby", "Holloway", "Larkspur", "Meadowbank", "Pennington", "Quarry", "Rosewood",
              "Sandringham", "Tanner", "Underhill", "Wexford", "Yarrow", "Abbey", "Bramble", "Cromwell",
              "Duke", "Elmfield", "Foxglove", "Gladstone", "Heather", "Ivanhoe", "Juniper", "Kestrel",
              "Lavender", "Marlborough", "Nightingale", "Oxford", "Priory", "Regent", "Sycamore", "Thornbury"]
UK_TYPES = ["Road", "Street", "Lane", "Close", "Avenue", "Crescent", "Gardens", "Terrace", "Way", "Grove",
            "Drive", "Place", "Mews", "Court", "Rise", "Walk"]
UK_TOWNS = [("Leeds", "LS"), ("Bristol", "BS"), ("Manchester", "M"), ("Norwich", "NR"), ("Cardiff", "CF"),
            ("Glasgow", "G"), ("Edinburgh", "EH"), ("York", "YO"), ("Bath", "BA"), ("Exeter", "EX"),
            ("Brighton", "BN"), ("Oxford", "OX"), ("Cambridge", "CB"), ("Nottingham", "NG"), ("Sheffield", "S"),
            ("Leicester", "LE"), ("Plymouth", "PL"), ("Derby", "DE"), ("Hull", "HU"), ("Aberdeen", "AB"),
            ("Swansea", "SA"), ("Reading", "RG"), ("Coventry", "CV"), ("Bournemouth", "BH"), ("London", "SE"),
            ("London", "N"), ("London", "E"), ("London", "SW"), ("London", "NW"), ("Harrogate", "HG"),
            ("Chester", "CH"), ("Durham", "DH"), ("Canterbury", "CT"), ("Lancaster", "LA"), ("Belfast", "BT"),
            ("Milton Keynes", "MK"), ("St Albans", "AL"), ("Truro", "TR"), ("Inverness", "IV")]
UK_LOCALITIES = ["Headingley", "Clifton", "Didsbury", "Roath", "Jesmond", "Heaton", "Southville", "Chapel Allerton",
                 "Portobello", "Hyde Park", "Kemp Town", "Jericho", "Mapperley", "Ecclesall", "Eastville"]
POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"


def uk_postcode(rng, area):
    district = str(rng.randint(1, 28 if len(area) == 2 else 20))
    if area in ("SW", "SE", "E", "N", "W", "NW") and rng.random() < 0.3:
        district = str(rng.randint(1, 9)) + rng.choice("ABCDEFGHJKPSTUW") if area != "SE" else district
    return f"{area}{district} {rng.randint(1, 9)}{rng.choice(POSTCODE_LETTERS)}{rng.choice(POSTCODE_LETTERS)}"


def address_us(rng, two_line=False):
    num = rng.choice([str(rng.randint(1, 99)), str(rng.randint(100, 999)), str(rng.randint(1000, 19999))])
    pre = rng.choice(["", "", "", "", "N ", "S ", "E ", "W ", "NW ", "SE "])
    street = f"{num} {pre}{rng.choice(US_STREETS)} {rng.choice(US_SUFFIX)}"
    unit = rng.choice(["", "", "", f"Apt {rng.randint(1, 40)}{rng.choice(['', 'A', 'B', 'C'])}", f"Unit {rng.randint(1, 300)}",
                       f"#{rng.randint(100, 999)}", f"Suite {rng.randint(100, 900)}"])
    city, st, z = rng.choice(US_CITIES)
    zipc = z + _d(rng, 2) + (f"-{_d(rng, 4)}" if rng.random() < 0.15 else "")
    line1 = street + (f", {unit}" if unit and rng.random() < 0.7 else (f" {unit}" if unit else ""))
    line2 = f"{city}, {st} {zipc}"
    return f"{line1}\n{line2}" if two_line else f"{line1}, {line2}"


def address_uk(rng, two_line=False):
    flat = rng.choice(["", "", "", f"Flat {rng.randint(1, 24)}, ", f"Flat {rng.randint(1, 9)}{rng.choice('ABC')}, ",
                       f"{rng.randint(1, 12)} "])
    if flat and not flat.startswith("Flat"):  # "12 Rosewood Court, 4 Mill Lane" style: a named building
        flat = f"{rng.randint(1, 40)} {rng.choice(['Rosewood', 'Albion', 'Granary', 'Wharf', 'Priory'])} {rng.choice(['Court', 'House', 'Buildings'])}, "
    street = f"{rng.randint(1, 240)} {rng.choice(UK_STREETS)} {rng.choice(UK_TYPES)}"
    town, area = rng.choice(UK_TOWNS)
    pc = uk_postcode(rng, area)
    loc = rng.choice(UK_LOCALITIES) + ", " if rng.random() < 0.15 else ""
    if two_line:
        return f"{flat}{street}\n{loc}{town} {pc}" if rng.random() < 0.6 else f"{flat}{street}, {loc}{town}\n{pc}"
    sep = rng.choice([", ", ", "])
    return f"{flat}{street}{sep}{loc}{town}{rng.choice([' ', ', '])}{pc}"


# --- distractor values -----------------------------------------------------------------------------------------------

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
PLACES = ["Florence", "Victoria", "Charlotte", "Austin", "Madison", "Eugene", "Jackson", "Lincoln", "Sydney",
          "Adelaide", "Chester", "Regina", "Orlando", "Eindhoven", "Kraków", "İzmir", "Lyon", "Porto Alegre",
          "Guadalajara", "Pune", "Uppsala", "Bologna", "Leipzig", "Rotterdam", "Gdańsk", "Valencia", "Coimbra",
          "Nairobi", "Accra", "Lagos", "Auckland", "Hilo", "Chennai", "Madurai", "Cusco", "Bilbao", "Tromsø",
          "Galway", "Brno", "Salvador", "Monterrey", "Marseille", "Heidelberg", "Göteborg", "Antalya", "Turin",
          "Kingston", "Savannah", "Aurora", "Beverly Hills", "Santa Barbara", "St Ives", "Whitby", "Keswick"]
PRODUCT_NAMES = ["Florence", "Jasper", "Harper", "Eleanor", "Otis", "Margot", "Stanley", "Winston", "Beatrix", "Hugo",
                 "Elsa", "Milo", "Ida", "Vera", "Arlo", "Juno", "Felix", "Olive", "Theo", "Nora", "Sven", "Audrey",
                 "Rupert", "Lola", "Dexter", "Mabel", "Cosmo", "Greta", "Boris", "Clementine"]
PRODUCT_NOUNS = ["armchair", "sofa", "desk lamp", "pram", "e-bike", "kettle", "backpack", "bed frame", "wardrobe",
                 "stroller", "hiking boot", "rain jacket", "bookcase", "recliner", "floor lamp", "dining table",
                 "office chair", "cot", "mattress", "toaster"]
PET_NAMES = ["Biscuit", "Luna", "Max", "Bella", "Charlie", "Daisy", "Milo", "Oscar", "Rosie", "Teddy", "Bailey",
             "Poppy", "Archie", "Coco", "Winnie", "Frankie", "Ruby", "Murphy", "Pepper", "Hazel", "Otto", "Nala"]
COMPANY_WORDS = ["Bluefinch", "Northvale", "Harbourline", "Quillfield", "Copperleaf", "Ferncastle", "Tidewater",
                 "Oakmere", "Brightpath", "Kestrel", "Sundial", "Meadow", "Alderbank", "Pinecrest", "Corvid",
                 "Lindenhall", "Greystone", "Amberly", "Silverburn", "Westmarch", "Redcliffe", "Ironbridge"]
INDUSTRY = ["Logistics", "Insurance", "Lettings", "Dental Group", "Pharmacy", "Travel", "Removals", "Property Management",
            "Veterinary Clinic", "Accountants", "Solicitors", "Builders", "Plumbing", "Bakery", "Motors", "Analytics",
            "Credit Union", "Building Society", "Couriers", "Opticians"]
AIRLINES = ["BA", "KL", "LH", "AA", "TK", "AZ", "IB", "LO", "AF", "SK", "UA", "DL", "EI", "U2", "FR", "LA", "AM", "6E"]
VEHICLES = ["Honda Civic", "Volvo V60", "Ford Focus", "Toyota RAV4", "Kia Niro", "VW Golf", "Tesla Model 3",
            "Subaru Outback", "Nissan Leaf", "Skoda Octavia", "Mazda CX-5", "Fiat 500"]
PLACEHOLDERS = ["<your-api-key>", "YOUR_API_KEY_HERE", "xxxxxxxxxxxxxxxx", "${STRIPE_KEY}", "changeme", "<redacted>",
                "sk_live_XXXXXXXXXXXXXXXX", "{{ secrets.DEPLOY_TOKEN }}", "REPLACE_ME", "********"]


CURRENCIES = ["$", "£", "€", "EUR", "USD", "R$", "₹", "kr", "PLN", "£2"]


def _money(rng: random.Random, amount: int, cur: str) -> str:
    c = rng.randint(0, 99) if rng.random() < 0.6 else 0
    if cur == "$":
        return f"${amount:,}.{c:02d}" if c else f"${amount:,}"
    if cur == "£":
        return f"£{amount:,}"
    if cur == "£2":
        return f"£{amount:,}.{c:02d}"
    if cur == "€":
        return f"€{amount:,}".replace(",", ".") + f",{c:02d}"
    if cur == "EUR":
        return f"EUR {amount:,}.{c:02d}"
    if cur == "USD":
        return f"{amount:,}.{c:02d} USD"
    if cur == "R$":
        return f"R$ {amount:,}".replace(",", ".") + f",{c:02d}"
    if cur == "₹":
        return f"₹{amount:,}"
    if cur == "kr":
        return f"{amount:,} kr".replace(",", " ")
    return f"PLN {amount}.{c:02d}"


def dist_value(kind: str, rng: random.Random, names: Names, state: dict | None = None) -> tuple[str, str]:
    """A distractor of generator `kind`: (value, recorded kind). `state` is per document (its currency)."""
    state = {} if state is None else state
    y = rng.randint(2019, 2026)
    if kind == "year":
        return str(rng.randint(1998, 2026)), "YEAR"
    if kind in ("price", "fee", "bigprice"):
        cur = state.setdefault("currency", rng.choice(CURRENCIES))
        lo, hi = {"fee": (4, 250), "price": (20, 2400), "bigprice": (9000, 950000)}[kind]
        a = int(round(10 ** rng.uniform(math.log10(lo), math.log10(hi))))
        if kind == "bigprice":
            a = round(a, -3)
        return _money(rng, a, cur), "PRICE"
    if kind == "date":
        m, dd = rng.randrange(12), rng.randint(1, 28)
        fmt = rng.randrange(8)
        v = [f"{dd} {MONTHS[m]} {y}", f"{MONTHS[m]} {dd}, {y}", f"{y}-{m + 1:02d}-{dd:02d}", f"{dd:02d}/{m + 1:02d}/{y}",
             f"{m + 1}/{dd}/{y}", f"{dd}.{m + 1:02d}.{y}", f"{MONTHS[m][:3]} {dd}", f"{dd} {MONTHS[m][:3]} {y}"][fmt]
        return v, "DATE"
    if kind == "isodate":
        return f"{y}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}", "DATE"
    if kind == "stamp":
        return (f"{y}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"), "DATE"
    if kind == "time":
        h, mi = rng.randint(0, 23), rng.choice([0, 5, 10, 15, 20, 30, 40, 45, 50, 55])
        h = rng.randint(7, 21) if rng.random() < 0.8 else h
        fmt = rng.randrange(4)
        v = [f"{h:02d}:{mi:02d}", f"{(h % 12) or 12}:{mi:02d} {'am' if h < 12 else 'pm'}",
             f"{(h % 12) or 12}{'am' if h < 12 else 'pm'}", f"{h}.{mi:02d}"][fmt]
        return v, "TIME"
    if kind == "hms":
        return f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}", "TIME"
    if kind == "order":
        return rng.choice([f"ORD-{_d(rng, 6)}", f"#{_d(rng, 7)}", f"A-{y}-{_d(rng, 5)}", f"SO-{_d(rng, 5)}",
                           f"{_d(rng, 3)}-{_d(rng, 7)}-{_d(rng, 7)}"]), "ORDER_NO"
    if kind == "booking":
        return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(6)), "BOOKING_REF"
    if kind == "claim":
        return rng.choice([f"CLM-{y}-{_d(rng, 6)}", f"CL {_d(rng, 5)}-{rng.choice('ABCD')}", f"{_d(rng, 2)}/{_d(rng, 6)}/MTR"]), "CLAIM_NO"
    if kind == "policy":
        return rng.choice([f"POL-{_d(rng, 4)}-{_d(rng, 4)}", f"HX-{_d(rng, 6)}-{_d(rng, 2)}", f"{rng.choice('KPQ')}{_d(rng, 9)}"]), "POLICY_NO"
    if kind == "ticket":
        return rng.choice([f"INC{_d(rng, 7)}", f"#{_d(rng, 5)}", f"MNT-{_d(rng, 4)}", f"REQ-{_d(rng, 6)}"]), "TICKET_NO"
    if kind == "invoice":
        return rng.choice([f"INV-{y}-{_d(rng, 4)}", f"{y}/{_d(rng, 3)}", f"F{_d(rng, 8)}"]), "INVOICE_NO"
    if kind == "incident":
        return rng.choice([f"CAD {_d(rng, 4)}/{str(y)[2:]}", f"IR-{y}-{_d(rng, 5)}", f"{_d(rng, 2)}-{_d(rng, 6)}"]), "INCIDENT_REF"
    if kind == "version":
        r = rng.random()
        if r < 0.12:
            return f"{rng.randint(1, 12)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}.{rng.randint(0, 400)}", "VERSION"
        if r < 0.25:
            return f"v{rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 12)}", "VERSION"
        if r < 0.35:
            return f"{rng.randint(1, 4)}.{rng.randint(0, 9)}.0-rc.{rng.randint(1, 4)}", "VERSION"
        return f"{rng.randint(0, 17)}.{rng.randint(0, 40)}.{rng.randint(0, 15)}", "VERSION"
    if kind == "sku":
        return rng.choice([f"SKU {_d(rng, 2)}-{_d(rng, 4)}-{rng.choice(['BLK', 'WHT', 'OAK', 'GRN'])}",
                           f"{_rand(rng, 2, string.ascii_uppercase)}-{_d(rng, 4)}-{rng.choice('SMLX')}",
                           f"{_d(rng, 3)}.{_d(rng, 3)}.{_d(rng, 2)}"]), "SKU"
    if kind == "model":
        return rng.choice([f"KX-TG{_d(rng, 4)}", f"HL-L{_d(rng, 4)}DW", f"A{_d(rng, 4)}", f"WM{_d(rng, 2)}-{_d(rng, 3)}",
                           f"RT-AX{_d(rng, 2)}U", f"SM-G{_d(rng, 3)}B"]), "MODEL_NO"
    if kind == "flight":
        return rng.choice(AIRLINES) + rng.choice(["", " "]) + str(rng.randint(1, 2999)), "FLIGHT_NO"
    if kind == "room":
        return rng.choice([str(rng.randint(101, 940)), f"{rng.randint(1, 4)}.{rng.randint(1, 30):02d}",
                           f"{rng.choice('ABC')}-{rng.randint(100, 350)}"]), "ROOM_NO"
    if kind == "seat":
        return f"{rng.randint(1, 45)}{rng.choice('ABCDEFK')}", "SEAT"
    if kind == "pct":
        return rng.choice([f"{rng.randint(1, 99)}%", f"{rng.randint(1, 30)}.{rng.randint(0, 9)}%", f"{rng.randint(2, 15)} %"]), "PERCENT"
    if kind == "measure":
        return rng.choice([f"{rng.randint(1, 9)}.{rng.randint(0, 9)} m", f"{rng.randint(2, 60)} kg", f"{rng.randint(6, 20)} x {rng.randint(4, 14)} ft",
                           f"{rng.choice([250, 500, 600, 750])} ml", f"{rng.randint(1, 40)}.{rng.randint(0, 9)} km",
                           f"{rng.randint(12, 30)}°C", f"{rng.randint(2, 90)} cm", f"{rng.randint(1, 9)} litres"]), "MEASURE"
    if kind == "weight":
        return rng.choice([f"{rng.randint(3, 45)} kg", f"{rng.randint(3, 40)}.{rng.randint(0, 9)} kg", f"{rng.randint(6, 90)} lb"]), "MEASURE"
    if kind == "length":
        return rng.choice([f"{rng.randint(2, 90)} cm", f"{rng.randint(1, 6)}.{rng.randint(0, 9)} m", f"{rng.randint(2, 30)} ft",
                           f"{rng.randint(2, 40)} inches"]), "MEASURE"
    if kind == "temp":
        return rng.choice([f"{rng.randint(-3, 31)}°C", f"{rng.randint(28, 95)}°F"]), "MEASURE"
    if kind == "volume":
        return rng.choice([f"{rng.choice([250, 500, 750])} ml", f"{rng.randint(1, 20)} litres", f"{rng.randint(2, 5)} gallons"]), "MEASURE"
    if kind == "area":
        return rng.choice([f"{rng.randint(8, 60)} m²", f"{rng.randint(10, 40)},000 sq ft", f"{rng.randint(90, 900)} sq ft"]), "MEASURE"
    if kind == "sha":
        return _rand(rng, 40, HEX), "COMMIT_HASH"
    if kind == "shortsha":
        return _rand(rng, rng.choice([7, 8, 10, 12]), HEX), "COMMIT_HASH"
    if kind == "checksum":
        return _rand(rng, 64, HEX), "CHECKSUM"
    if kind == "md5":
        return _rand(rng, 32, HEX), "CHECKSUM"
    if kind == "uuid":
        h = f"{rng.getrandbits(128):032x}"
        h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", "UUID"
    if kind == "n16":
        while True:
            n = rng.choice("345689") + _d(rng, 15)
            if not luhn_ok(n):
                break
        sep = rng.choice(["", "", " ", "-"])
        return (sep.join(n[i:i + 4] for i in range(0, 16, 4)) if sep else n), "NON_LUHN_16"
    if kind == "company":
        s1, s2 = names.surname(), names.surname()
        w = rng.choice(COMPANY_WORDS)
        v = rng.choice([f"{s1} & {s2} LLP", f"{s1} Brothers", f"{s1} and Sons", f"{s1} {rng.choice(INDUSTRY)}",
                        f"{w} {rng.choice(INDUSTRY)}", f"{s1}-{s2} GmbH", f"{s1} & Co.", f"{s1} Associates",
                        f"{w} Ltd", f"{w} Inc.", f"{s1} {rng.choice(['Legal', 'Realty', 'Partners'])}"])
        return v, "COMPANY"
    if kind == "brand":
        return f"{rng.choice(COMPANY_WORDS)} {rng.choice(INDUSTRY)}", "COMPANY"
    if kind == "city":
        return rng.choice(PLACES + [c[0] for c in US_CITIES] + [t[0] for t in UK_TOWNS]), "PLACE"
    if kind == "street":
        if rng.random() < 0.5:
            return f"{rng.choice(UK_STREETS)} {rng.choice(UK_TYPES)}", "STREET"
        return f"{rng.choice(US_STREETS)} {rng.choice(['Street', 'Avenue', 'Road', 'Boulevard', 'Drive'])}", "STREET"
    if kind == "product":
        n = rng.choice(PRODUCT_NAMES)
        return rng.choice([f"{n} {rng.choice(PRODUCT_NOUNS)}", f"Model {n}", f"{n} {rng.choice(PRODUCT_NOUNS)}"]), "PRODUCT_NAME"
    if kind == "pet":
        return rng.choice(PET_NAMES), "PET_NAME"
    if kind == "day":
        return rng.choice(DAYS), "WEEKDAY"
    if kind == "month":
        return rng.choice(MONTHS), "MONTH"
    if kind == "last4":
        return _d(rng, 4), "LAST4_DIGITS"
    if kind == "expiry":
        return f"{rng.randint(1, 12):02d}/{rng.randint(25, 31)}", "CARD_EXPIRY"
    if kind == "tracking":
        return rng.choice([f"1Z{_rand(rng, 6, UPPER_DIG)}{_d(rng, 10)}", f"JD{_d(rng, 16)}", f"{_rand(rng, 2, string.ascii_uppercase)}{_d(rng, 9)}GB"]), "TRACKING_NO"
    if kind == "placeholder":
        return rng.choice(PLACEHOLDERS), "PLACEHOLDER"
    if kind == "vehicle":
        return rng.choice(VEHICLES), "PRODUCT_NAME"
    if kind == "port":
        return str(rng.choice([22, 443, 8080, 8443, 5432, 3000, rng.randint(1024, 65000)])), "PORT"
    if kind == "rx":
        return f"{rng.randint(1, 9)}{_d(rng, 6)}", "RX_NO"
    if kind == "vat":
        return rng.choice([f"GB{_d(rng, 9)}", f"DE{_d(rng, 9)}", f"NL{_d(rng, 9)}B{_d(rng, 2)}", f"FR{_d(rng, 11)}"]), "VAT_NO"
    if kind == "creditor":
        return rng.choice([f"DE{_d(rng, 2)}ZZZ{_d(rng, 11)}", f"NL{_d(rng, 2)}ZZZ{_d(rng, 12)}", f"GB{_d(rng, 2)}ZZZ{_d(rng, 6)}"]), "CREDITOR_ID"
    if kind == "taxcode":
        return rng.choice(["1257L", "BR", "K475", "1257L M1", "S1257L", "0T", "D0"]), "TAX_CODE"
    if kind == "pid":
        return str(rng.randint(300, 65000)), "PROCESS_ID"
    if kind == "lineno":
        return str(rng.randint(12, 900)), "LINE_NO"
    if kind == "pkg":
        return rng.choice(["requests", "psycopg2", "urllib3", "django", "boto3", "stripe", "sqlalchemy", "celery", "pydantic", "numpy"]), "PACKAGE"
    if kind == "course":
        return rng.choice(["MATH 2210", "CS 101", "BIO-340", "ECON 1B", "HIST 205"]), "COURSE_CODE"
    if kind == "member":
        return f"M{_d(rng, 6)}", "MEMBER_NO"
    if kind == "case":
        return rng.choice([f"{y}-SC-{_d(rng, 5)}", f"CV-{str(y)[2:]}-{_d(rng, 4)}"]), "CASE_NO"
    if kind == "amount":
        return f"{rng.randint(300, 4999)}.{rng.randint(0, 99):02d}", "AMOUNT"
    if kind == "school":
        return rng.choice([f"{rng.choice(['Hillside', 'Moorland', 'Riverbank', 'Elmwood', 'Castlefield'])} Primary School",
                           f"{names.surname()} Academy", f"{names.surname()} Middle School",
                           f"{rng.choice(['Northvale', 'Oakmere', 'Lindenhall'])} High"]), "ORGANISATION"
    if kind == "foundation":
        return rng.choice([f"{names.surname()} Foundation", f"{names.surname()} Memorial Trust",
                           f"{names.surname()} Family Fund"]), "ORGANISATION"
    if kind == "hall":
        return f"{names.surname()} {rng.choice(['Hall', 'Building', 'House', 'Library'])}", "BUILDING"
    if kind == "org_hmrc":
        return rng.choice(["HM Revenue & Customs", "HMRC"]), "ORGANISATION"
    if kind == "org_jcp":
        return rng.choice(["Jobcentre Plus", "Department for Work and Pensions", "DWP"]), "ORGANISATION"
    if kind == "org_sfe":
        return rng.choice(["HMRC", "Student Finance England", "Student Awards Agency Scotland"]), "ORGANISATION"
    if kind == "org_us":
        return rng.choice(["the Social Security Administration", "the SSA", "the IRS"]), "ORGANISATION"
    if kind.startswith("biz_"):
        w, sn = rng.choice(COMPANY_WORDS), names.surname()
        t = kind[4:]
        opts = {"hotel": [f"{w} Hotel", f"Hotel {w}", f"The {sn} Arms", f"{sn} House Hotel"],
                "hoa": [f"{rng.choice(US_STREETS)} Homeowners Association", f"{w} HOA"],
                "travel": [f"{w} Travel", f"{sn} Holidays"],
                "pharmacy": [f"{w} Pharmacy", f"{sn}'s Pharmacy", f"{sn} Chemists"],
                "bank": [f"{w} Bank", f"{w} Credit Union", f"{sn} & {names.surname()} Bank"],
                "energy": [f"{w} Energy", f"{w} Power"],
                "vet": [f"{w} Vets", f"{sn} Veterinary Clinic", f"{w} Animal Hospital"],
                "cafe": [f"{w} Café", f"{sn}'s Bakery", f"the {w} Tavern"],
                "library": [f"{rng.choice(PLACES)} Central Library", f"{w} Library", f"{sn} Memorial Library"],
                "leisure": [f"{w} Leisure Centre", f"{sn} Sports Centre"],
                "lettings": [f"{sn} Property Management", f"{w} Lettings", f"{sn} Realty"],
                "surgery": [f"{w} Surgery", f"{sn} Medical Practice", f"{w} Health Centre"],
                "daycare": [f"{w} Day Nursery", f"Little {w} Childcare", f"{sn} Kids Club"],
                "dental": [f"{w} Dental", f"{sn} Dental Care", f"{sn} & {names.surname()} Dentistry"],
                "removals": [f"{sn} Removals", f"{w} Movers", f"{sn} Brothers Removals"]}[t]
        return rng.choice(opts), "COMPANY"
    if kind == "org":
        return rng.choice(["HM Revenue & Customs", "Student Finance England", "the Social Security Administration",
                           "the Internal Revenue Service", "Jobcentre Plus", "the Department for Work and Pensions",
                           "Citizens Advice", "the DVLA", "Companies House"]), "ORGANISATION"
    if kind == "book":
        return rng.choice(["Jane Eyre", "Anna Karenina", "Emma", "Oliver Twist", "Matilda", "Rebecca", "Middlemarch",
                           "The Secret Garden", "Heidi", "Little Women", "Silas Marner", "David Copperfield",
                           "Madame Bovary", "Moby-Dick"]), "TITLE"
    if kind == "bic":
        return rng.choice(["INGBNL2A", "DEUTDEFF", "BNPAFRPP", "RABONL2U", "COBADEFFXXX", "NWBKGB2L", "BARCGB22"]), "BIC"
    if kind == "emp":
        return f"E{_d(rng, rng.choice([4, 5]))}", "EMPLOYEE_ID"
    if kind == "fingerprint":
        return _rand(rng, 43, string.ascii_letters + string.digits + "+/"), "KEY_FINGERPRINT"
    if kind == "masked_url":
        return rng.choice([f"amqp://guest:**@rabbit-{rng.randint(1, 3)}:5672//", f"redis://:********@cache-0{rng.randint(1, 4)}:6379/0",
                           "postgres://app:[REDACTED]@db.internal:5432/app", "https://ci-bot:***@git.quillfield.com/repo.git"]), "MASKED_URL"
    raise KeyError(kind)


# --- template engine -------------------------------------------------------------------------------------------------

PERSON_SLOTS = {"name", "first", "last", "tlast", "tname", "mname", "inv", "lfirst", "ufirst", "ulast", "ufull",
                "initlast", "tfirst"}
PII_SLOTS = PERSON_SLOTS | {"email", "email2", "phone", "phone_us", "phone_uk", "phone_intl", "card", "iban", "ip",
                            "ip4", "ip6", "urlcred", "urlcred_db", "urlcred_mq", "urlcred_redis",
                            "urlcred_http", "urlcred_proxy", "urlcred_smtp", "urlcred_ftp", "secret", "aws_key", "aws_secret", "gh_token", "slack_token",
                            "stripe_key", "google_key", "ai_key", "jwt", "gensecret", "hexsecret", "password",
                            "ssn", "nino", "addr", "addr_us", "addr_uk", "addr2", "addr_us2", "addr_uk2"}
DIST_SLOTS = {"year", "price", "date", "isodate", "stamp", "time", "order", "booking", "claim", "policy", "ticket",
              "invoice", "incident", "version", "sku", "model", "flight", "room", "seat", "pct", "measure", "sha",
              "shortsha", "checksum", "md5", "uuid", "n16", "company", "brand", "city", "street", "product", "pet",
              "day", "month", "last4", "expiry", "tracking", "placeholder", "vehicle", "port", "rx", "vat",
              "creditor", "taxcode", "fee", "bigprice", "org_hmrc", "org_jcp", "org_sfe", "org_us", "hms", "weight", "length", "temp", "volume", "area", "pid", "lineno", "pkg", "course", "member", "case", "amount", "school",
              "foundation", "hall", "org", "book", "bic", "emp", "fingerprint", "masked_url"}
LITERALS = {"lb": "{", "rb": "}", "bar": "|"}


def _parse(tpl: str, i: int = 0, stop: str = "") -> tuple[list, int]:
    """Nodes of a template: str | ("slot", gen, var) | ("choice", [nodes, ...])."""
    nodes: list = []
    buf = ""
    while i < len(tpl):
        c = tpl[i]
        if c in stop:
            break
        if c == "{":
            if buf:
                nodes.append(buf)
                buf = ""
            if tpl[i + 1] == "?":
                alts = []
                i += 2
                while True:
                    alt, i = _parse(tpl, i, "|}")
                    alts.append(alt)
                    if tpl[i] == "}":
                        i += 1
                        break
                    i += 1
                nodes.append(("choice", alts))
            else:
                j = tpl.index("}", i)
                body = tpl[i + 1:j]
                gen, _, var = body.partition(":")
                if gen in LITERALS:
                    nodes.append(LITERALS[gen])
                else:
                    gen = gen.lstrip("~")
                    if gen not in PII_SLOTS and gen not in DIST_SLOTS and not gen.startswith("biz_"):
                        raise ValueError(f"unknown slot {body!r}")
                    nodes.append(("slot", gen, var))
                i = j + 1
        else:
            buf += c
            i += 1
    if buf:
        nodes.append(buf)
    return nodes, i


class Doc:
    def __init__(self, rng: random.Random, names: Names):
        self.rng, self.names = rng, names
        self.parts: list[str] = []
        self.pos = 0
        self.spans: list[dict] = []
        self.distractors: list[dict] = []
        self.plain: list[tuple[int, int]] = []
        self.persons: dict[str, Person] = {}
        self.cache: dict[tuple[str, str], list] = {}
        self.people_used: list[Person] = []
        self.state: dict = {}

    def add(self, text: str, kind: str | None = None, pii: bool = False):
        if kind is None and text.startswith(".") and self.parts and self.parts[-1].endswith("."):
            text = text[1:]
        if not text:
            return
        start = self.pos
        self.parts.append(text)
        self.pos += len(text)
        if kind is None:
            self.plain.append((start, self.pos))
        else:
            (self.spans if pii else self.distractors).append({"start": start, "end": self.pos, "kind": kind, "value": text})

    def person(self, var: str) -> Person:
        if var and var in self.persons:
            return self.persons[var]
        p = self.names.person()
        self.people_used.append(p)
        if var:
            self.persons[var] = p
        return p

    def render(self, nodes: list):
        for n in nodes:
            if isinstance(n, str):
                self.add(n)
            elif n[0] == "choice":
                self.render(self.rng.choice(n[1]))
            else:
                self.slot(n[1], n[2])

    def slot(self, gen: str, var: str):
        if gen in PERSON_SLOTS:
            return self.person_slot(gen, self.person(var))
        if gen in ("email", "email2"):
            p = self.person(var)
            idx = 0 if gen == "email" else 1
            while len(p.emails) <= idx:
                e = make_email(p, self.rng)
                if e not in p.emails:
                    p.emails.append(e)
            return self.add(p.emails[idx], "EMAIL", True)
        key = (gen, var)
        if var and key in self.cache:
            for piece in self.cache[key]:
                self.add(*piece)
            return
        pieces = self.make_pieces(gen)
        if var:
            self.cache[key] = pieces
        for piece in pieces:
            self.add(*piece)

    def person_slot(self, gen: str, p: Person):
        first, last = p.first, p.last
        if gen == "name":
            self.add(f"{first} {last}", "PERSON", True)
        elif gen == "first":
            self.add(first, "PERSON", True)
        elif gen == "last":
            self.add(last, "PERSON", True)
        elif gen == "tlast":
            self.add(p.title + " ")
            self.add(last, "PERSON", True)
        elif gen == "tfirst":   # "Dr" + first name, as children address teachers in some schools
            self.add(p.title + " ")
            self.add(first, "PERSON", True)
        elif gen == "tname":
            self.add(p.title + " ")
            self.add(f"{first} {last}", "PERSON", True)
        elif gen == "mname":
            self.add(f"{first} {p.middle}. {last}", "PERSON", True)
        elif gen == "inv":
            self.add(f"{last}, {first}", "PERSON", True)
        elif gen == "lfirst":
            self.add(first.lower(), "PERSON", True)
        elif gen == "ufirst":
            self.add(ascii_fold(first).upper().replace(" ", ""), "PERSON", True)
        elif gen == "ulast":
            self.add(ascii_fold(last).upper().replace(" ", ""), "PERSON", True)
        elif gen == "ufull":
            self.add(f"{first} {last}".upper(), "PERSON", True)
        elif gen == "initlast":
            self.add(f"{first[0]}. {last}", "PERSON", True)

    def make_pieces(self, gen: str) -> list:
        rng = self.rng
        if gen in DIST_SLOTS or gen.startswith("biz_"):
            v, k = dist_value(gen, rng, self.names, self.state)
            return [(v, k, False)]
        f = {
            "phone": any_phone, "phone_us": phone_us, "phone_uk": phone_uk, "phone_intl": phone_intl,
        }.get(gen)
        if f:
            return [(f(rng), "PHONE", True)]
        if gen == "card":
            return [(make_card(rng), "CARD", True)]
        if gen == "iban":
            return [(make_iban(rng), "IBAN", True)]
        if gen in ("ip", "ip4", "ip6"):
            v = make_ip(rng) if gen == "ip" else make_ipv4(rng) if gen == "ip4" else make_ipv6(rng)
            return [(v, "IP", True)]
        if gen.startswith("urlcred"):
            return [(make_urlcred(rng, gen[8:] or None), "URL_CREDENTIALS", True)]
        if gen in ("secret", "aws_key", "aws_secret", "gh_token", "slack_token", "stripe_key", "google_key", "ai_key",
                   "jwt", "gensecret", "hexsecret", "password"):
            sub = {"secret": None, "aws_key": "aws_key", "aws_secret": "aws_secret", "gh_token": rng.choice(["gh", "ghpat", "glpat"]),
                   "slack_token": "slack", "stripe_key": "stripe", "google_key": "google",
                   "ai_key": rng.choice(["openai", "anthropic", "hf"]), "jwt": "jwt", "gensecret": "generic",
                   "hexsecret": "generic_hex"}
            v = make_password(rng) if gen == "password" else make_secret(rng, sub[gen])
            return [(v, "SECRET", True)]
        if gen == "ssn":
            return [(make_ssn(rng), "SSN", True)]
        if gen == "nino":
            return [(make_nino(rng), "NINO", True)]
        if gen.startswith("addr"):
            two = gen.endswith("2")
            region = "us" if "_us" in gen else "uk" if "_uk" in gen else rng.choice(["us", "uk"])
            v = address_us(rng, two) if region == "us" else address_uk(rng, two)
            return [(v, "ADDRESS", True)]
        raise KeyError(gen)


_CAP_START = re.compile(r"(?:^|(?<=\n)|(?<=[.!?] )|(?<=[.!?]  )|(?<=[.!?]\" ))[\"'(]?([A-Z][a-z]{2,})\b")
_NOT_SENTENCE_START = {"Mrs", "Miss", "Prof"}


def sentence_starts(text: str, plain: list[tuple[int, int]]) -> list[dict]:
    """Capitalised words opening a sentence or a line, where they are plain template text."""
    merged: list[list[int]] = []
    for a, b in plain:
        if merged and merged[-1][1] == a:
            merged[-1][1] = b
        else:
            merged.append([a, b])
    out = []
    for m in _CAP_START.finditer(text):
        s, e = m.span(1)
        if m.group(1) in _NOT_SENTENCE_START:
            continue
        if any(a <= s and e <= b for a, b in merged):
            out.append({"start": s, "end": e, "kind": "SENTENCE_START", "value": text[s:e]})
    return out


# --- templates -------------------------------------------------------------------------------------------------------
# {gen} / {gen:var}: a value (PII slots) or a distractor ({~gen}); the same var repeats the same person or value.
# {?a|b|c}: one alternative, chosen at random (alternatives may hold slots). {lb} {rb} {bar}: literal { } |.

TEMPLATES: list[tuple[str, str, float]] = []


def T(name: str, text: str, weight: float = 1.0):
    TEMPLATES.append((name, text.strip("\n"), weight))


T("claim_motor", r"""
Claim {~claim} | Motor | reported {~date}
Policy: {~policy}
Policyholder: {tname:a}
Correspondence address: {addr:h}
Best contact: {phone:p}{?, or by email at {email:a}|}

Circumstances as described by the insured: on {~day} {?evening|morning|afternoon} {?{first:a}|the insured|{tlast:a}} had parked the {~vehicle} on {~street} when a van reversed into the nearside door. The van driver, who gave his name as {name:b}, admitted fault at the scene and wrote down the number {phone}. A passer-by, {name:c}, took photos and has agreed to be contacted.

Adjuster's note ({first:d} {last:d}): repair estimate from {~company} is {~price}; no injuries. Settlement by transfer to {iban}.
""")

T("claim_home_water", r"""
{?Home insurance|Contents insurance|Buildings cover} – escape of water
Claim ref: {~claim}    Date of loss: {~date}

{?Mrs|Ms|Mr} {last:a}'s {?upstairs|downstairs} neighbour ({name:b}, flat {?2|4|7|9}) left a bath running and water came through the ceiling into the {?kitchen|bedroom|hallway}. Damaged: the {~product} ({~price}), laminate flooring of about {~area}, and a {?laptop|television|rug}.

Loss adjuster {name:c} visited on {~date} and photographed everything. {first:a} {last:a} asked for payment to account {iban}; the insured address is {addr_uk:h}. {first:b}'s own insurer is {~company}, their reference {~claim}.
""")

T("school_trip_letter", r"""
Dear parents and carers of {?Class 4B|Year 5 Kestrel|Class 3 Oak|Year 6 Willow},

Our trip to the {~city} {?Museum|Zoo|Science Centre} is on {~day} {~date}. Please have your child at the gate by {~time}. The cost is {~fee} per child; {tname:o} in the school office can take payment over the phone on {phone_uk:o}, or you can pay through the parent app.

A huge thank you to {name:a}'s {?mum|dad|grandma} and to {first:b} and {first:c} {last:c} for volunteering to help on the day. If your child has a new allergy, please email {email:o} before {~day}.

{?With thanks|Many thanks},
{tlast:h}
Headteacher, {~school}
""")

T("parent_absence_note", r"""
{?Good morning|Hello} {tlast:t},

{first:k} won't be in {?school|class} {?tomorrow|on {~day}} – {?she|he|they} has an orthodontist appointment at {~time}. My {?partner|husband|wife|sister}, {name:p}, will collect {?her|him|them} from reception at about {~time} and can be reached on {phone:pp} if there is any problem.

Also, {first:k} says {first:f}'s {?mum|dad} has {?her|his} {?reading folder|PE kit|library book} by mistake – no rush at all.

Thanks,
{name:m}
{phone}
""")

T("teacher_concern_email", r"""
Subject: {first:k} – {?maths homework|lunchtime|attendance this term}

Dear {tname:m},

I wanted to let you know about something that happened on {~day}. {first:k} and two other pupils ({first:x} and {first:y}) were {?arguing in the corridor|late back from break three times|unusually quiet all morning}. I have spoken to all three and {?it seems resolved|I will keep an eye on it}.

Could we meet on {~date} at {~time}? If that doesn't suit, my direct line is {phone} and {?our SENCo, |our pastoral lead, |}{tname:s} is also happy to join.

{first:t} {last:t}
{?Year 4|Year 7|Form 9C} teacher, {~school}
""")

T("landlord_rent_increase", r"""
{tname:tn}
{addr_uk2:prop}

{~date}

Dear {tlast:tn},

Notice of rent increase

As your landlord I am writing to give notice that from {~date} the monthly rent for the above property will rise from {~price} to {~price}. Please update your standing order; payments go to {iban} (account name: {name:lord}).

{?Should you wish to discuss this, my agent|If you have any questions, my letting agent} {name:ag} at {~company} can be reached on {phone_uk} or {email:ag}.

Yours sincerely

{name:lord}
""")

T("maintenance_request", r"""
Maintenance request {~ticket}
Unit: {addr_us:u}
Submitted by: {name:r} ({phone_us})
Permission to enter: {?Yes|No – call first|Yes, after {~time}}

The {?kitchen faucet|dishwasher|bathroom fan|AC unit|garbage disposal} has been {?leaking|making a grinding noise|completely dead} since {~day}. My roommate {first:m} says there was about {~volume} of water under the sink this morning. {?The super|Our building manager} ({name:s}) looked at it in {~month} but it came back. Please text me, not {first:m} – {?his|her} number changed.
""")

T("hoa_notice", r"""
{~biz_hoa}
{?Courtesy notice|Second notice}

{ufull:o}
{addr_us2:h}

Dear {?Homeowner|{tlast:o}},

During the inspection on {~date} the committee noted that {?the trash bins were visible from the street|the lawn exceeds the permitted height|a boat trailer is parked in the driveway}. Please correct this within {?10|14|30} days. Questions may be directed to the community manager, {name:cm}, at {phone_us} or {email:cm}.

Board of Directors: {name:d1} (President), {name:d2}, {name:d3}
""")

T("pnr_schedule_change", r"""
{?Schedule change|Booking amended} – ref {~booking}

PASSENGERS
  1. {ulast:a}/{ufirst:a} {?MR|MS|MRS|DR}
  2. {ulast:b}/{ufirst:b} {?MR|MS|MISS|MSTR}

Your flight {~flight} on {~date} now departs at {~time} (previously {~time}). Seats {~seat} and {~seat} have been kept. The fare difference of {~price} was charged to the card ending {~last4}.

Booking contact: {email:a}, {phone}.
{?Manage your booking online or call us.|Questions? Just reply to this message.}
""")

T("travel_agent_update", r"""
{first:c},

Quick update on the {~city} trip. {first:x}, {first:y} and {first:z} are all confirmed on {~flight} ({~date}); {name:w} still needs to send me {?her|his} passport details – can you nudge {?her|him}? Hotel is the {~biz_hotel}, rooms {~room} and {~room}, {~price} a night with breakfast.

For the deposit I've used the company card {card} – please don't forward this email. The balance of {~price} is due by {~date}.

{first:ag}
{~biz_travel} | {phone}
""")

T("hotel_guest_profile", r"""
GUEST PROFILE NOTES – {~biz_hotel}
Guest: {inv:g}  |  Room {~room}  |  Arr {~date}  Dep {~date}
Card on file: {card} exp {~expiry}
Phone: {phone}   Email: {email:g}
Loyalty no.: {~n16}

- {?Prefers a high floor|Allergic to feathers, hypoallergenic pillows|Late arrival, approx {~time}}.
- Travelling with {name:c}{?; two adults| and a child, {first:k}}.
- Complained about noise from room {~room} on last stay; comped {~fee}.
- Night manager {first:n} authorised late checkout until {~time}.
""")

T("pharmacy_refill", r"""
Refill request – {~biz_pharmacy}
Patient: {inv:p}
Callback: {phone_us:cb}
Rx {~rx}: {?Lisinopril 10 mg|Metformin 500 mg|Atorvastatin 20 mg|Levothyroxine 50 mcg|Sertraline 50 mg}, qty {?30|60|90}
Prescriber: Dr. {name:d}

Note from tech ({first:t}): patient's {?daughter|son|husband|wife} {name:c} will pick up {~day} after {~time}. New insurance card; SSN on the intake form is {ssn}. Please confirm with {first:p} before billing – last time the copay was {~fee}.
""")

T("pharmacy_voicemail", r"""
Voicemail transcript ({~time}, {~date}):
"Hi, this is {name:p}, I'm calling about my {?mom|dad|husband|partner}'s prescription – that's {name:q}. The refill number is {~rx}. Could you call me back at {phone}? If I don't pick up, try my work line, {phone}. I'll be at {addr_us} all afternoon if it's easier to deliver. Thanks so much."
""")

T("forum_db_help", r"""
Title: {?Can't connect to Postgres after upgrading|"password authentication failed" after upgrading|Connection refused since bumping} {~pkg} to {~version}

Hey all, I'm pulling my hair out. My app reads this from the environment:

    DATABASE_URL={urlcred_db}

It worked fine on {~version}. Now I get `connection to server at "{ip4}", port {~port} failed`. The server itself is fine – I can ssh in from {ip4}. I also tried the replica ({urlcred_db}) with the same result. Last working commit was {~shortsha}.

(Yes I know I just posted the password, it's a throwaway box, will rotate.)
""")

T("forum_reply_key", r"""
> Re: {?Stripe webhook returns 401|Slack bot not posting|Maps API quota error|Upload script gets 403}

Your config is reading the wrong variable. You have

```
api_key = "{secret}"
api_key_test = "{~placeholder}"
```

but the client is built from `api_key_test`. Swap them and it works (tested with {~pkg} {~version}). Also, you should probably revoke that first key now that it's public. {?Cheers,|HTH,|–} {first:u}
""")

T("minutes_residents", r"""
MINUTES – {?Residents' Association|Allotment Society|Parent-Teacher Association|Tenants' Committee}, {~date}

Present: {name:a} (chair), {name:b} (treasurer), {name:c}, {name:d}
Apologies: {name:e}{?|, {name:f}}

1. Chair opened the meeting at {~time}. Minutes of the {~month} meeting were approved.
2. Treasurer's report: balance {~price}. {first:b} proposed moving the reserve into the new account ({iban}); seconded by {last:c}, carried.
3. {first:e}'s proposal about parking on {~street} was deferred to {~month}.
4. AOB: {first:d} will contact {~company} about the broken gate (quote: {~price}).

Actions: {first:a} to circulate these minutes via {email:a2}; {last:d} to chase the council.
""")

T("minutes_board", r"""
Board meeting – {~company} – {~date}
Attendees: {mname:ceo} (CEO), {tname:cfo} (CFO), {name:x}, {name:y}; {?{name:sec} (minutes)|minutes taken by {name:sec}}

Q{?1|2|3|4} revenue came in at {~bigprice}, {~pct} above plan. {last:cfo} flagged that the {~sku} line is behind. {first:x} asked whether the {~product} recall had been closed; {last:ceo} confirmed it was, on {~date}.

Next meeting: {~day} {~date}, {~time}, room {~room}.
""")

T("gdpr_access_request", r"""
Subject: Subject access request (Article 15 GDPR)

To the Data Protection Officer, {~company}

I, {name:a}, am writing to request a copy of all personal data you hold about me. To help you find my records: I have used the email addresses {email:a} and {email2:a}, the phone number {phone}, and my customer number is {~order}. My address is {addr}.

Please also tell me whether any of this data has been shared with {~company} or other third parties. I expect your response within one month, by {~date}.

{?Regards|Yours faithfully},
{name:a}
""")

T("gdpr_erasure_triage", r"""
Erasure request {~ticket} – received {~date} from {email:r}
Requester says she is "{name:r}"; our records show the account under {inv:r}, phone {phone}, last login from {ip}.
Also found: a linked account opened by {?her ex-partner|a family member}, {name:x}, at the same address ({addr}). Do NOT erase that one – different data subject.
Assigned to {first:dpo} ({~company} privacy team). Deadline {~date}.
""")

T("bank_dispute_letter", r"""
{name:a}
{addr2:h}

{~date}

{~biz_bank} – Card Disputes

Dear Sir or Madam,

I am writing to dispute {?a transaction|two transactions} on my {?credit|debit} card {card}:

  {~isodate}   {~brand}   {~price}

I did not authorise this payment. On that date I was in {~city}, which my employer, {~company}, can confirm. Please refund the amount to the card or to my current account {iban}.

I can be reached on {phone}.

Yours faithfully,
{name:a}
""")

T("bank_call_note", r"""
Call note {~stamp} – agent {first:ag} ({?Disputes|Fraud ops})
Caller verified as {tname:c}; address {addr} matched.
Disputed: {~price} at "{~brand}" on {~date}, card {card}. Caller's {?son|daughter|flatmate}, {first:s}, may have used it – caller unsure.
Raised chargeback {~case}. Replacement card to be posted to the address on file. Callback number {phone}. Next: {first:ag} to review on {~day}.
""")

T("recruiter_outreach", r"""
Subject: {?Senior|Staff|Lead} {?Data Engineer|Backend Developer|Product Designer|Site Reliability Engineer} – {~company}

{first:c} – {?hope you don't mind the cold email.|I enjoyed your talk in {~city}.}

I recruit for {~company}. {name:hm}, who leads the {?payments|platform|growth|ML} team, saw your {?{~pkg} contributions|article on caching} and asked me to get in touch. The role pays {~bigprice}–{~bigprice} plus a {~pct} bonus and is hybrid ({~city}).

If you're open to a chat, my direct line is {phone}, or reply to {email:r}. {first:hm} has time on {~day} at {~time}.

{name:r}
""")

T("interview_feedback", r"""
Candidate: {name:c}   Role: {?Backend Engineer|Account Manager|Nurse Practitioner}   Req {~ticket}
Interviewers: {name:i1}, {name:i2}{?, {name:i3}|}

{first:i1}: strong on system design; hesitated on the {~product} question. {?Hire|Lean hire}.
{first:i2}: {?Good|Great} communicator. Mentioned {?she|he} worked with {name:ref} at {~company} – worth a reference call ({phone}).
Decision: move to offer. Band {~bigprice}; start in {~month}. Send the offer to {email:c}.
""")

T("driver_route_notes", r"""
ROUTE {?R14|R7|N22|S3} – {~date} – driver {first:dr}
Stop {?3|5|8}: {addr}. Parcel {~tracking}. {?Leave with neighbour at no. {?14|22|5} ({first:nb})|Safe place: behind the green bin}. Customer {name:a} – call {phone} if no answer.
Stop {?9|11|12}: {addr}. {tlast:b} – BIG dog ({~pet}), ring first!! {phone}
Stop {?13|15|17}: {~brand} reception, {~street}. Ask for {first:c}.
Van {~model}, {~weight} load.
""")

T("delivery_sms", r"""
We tried to deliver {?your parcel|parcel} {~tracking} {?today|on {~day}}. {first:a}, your driver, left a card. Reply with a safe place or call {phone} before {~time}. Delivering to: {addr_uk}. Sender: {~company}.
""")

T("incident_theft", r"""
INCIDENT SUMMARY   Ref {~incident}
Reported: {~date} {~time}
Location: outside {~company}, {~street}, {~city}

At approximately {~time} the reporting person, {name:a} (of {addr}), stated that {?her|his} bicycle, a {~product}, had been taken from the rack. Witness {name:b} (tel. {phone}) saw a {?man|person} in a grey hoodie leave towards {~street}. CCTV requested from {~company}; {?PC|Sgt} {last:o} to follow up. {first:a} was given crime reference {~incident}.
""")

T("incident_collision", r"""
Road traffic collision – {~date}, approx {~time}, junction of {~street} and {~street}.

Vehicle 1: {~vehicle}, driver {ufull:d1}, {addr_us:d1}, phone {phone_us}.
Vehicle 2: {~vehicle}, driver {ufull:d2}; passenger {name:pa} complained of neck pain and was taken to {~city} General.
Statement (D1): "I was doing about {?20|25|30} mph. The other car came out of {~street} without stopping."
Statement (D2): "{first:d1}'s car had no lights on."
Officer: {tlast:off}, badge {~member}.
""")

T("app_review_reply", r"""
★★☆☆☆  "{?Charged twice|Crashes on upload|Can't log in after update}" – {name:a}, {~date}
"{?Paid for annual and got charged again a week later.|Every time I upload a photo it closes.|Reset my password three times, still nothing.} Version {~version} on {?Pixel|iPhone|Galaxy}."

Developer response:
Sorry about this, {first:a}. I found your account ({email:a}) and can see two charges of {~price} on {~date}; {?my colleague|our billing lead} {first:s} has refunded the second one, so expect it within {?3|5} working days. If anything's still off, email me directly at {email:dev} – {name:dev}
""")

T("app_review_short", r"""
{?1|2|3} stars – "{first:a}{? from {~city}|}"
{?The support agent|Someone called} {first:ag} was {?lovely|rude} but the app still won't sync. I even sent them my login and they said never to do that lol. My email's {email:a} if the dev wants to reach out.

Reply from {~company}: Thanks {first:a}. {first:ag} has passed this to engineering (ticket {~ticket}). Please do change your password; we'd never ask for it.
""")

T("sms_keys", r"""
[{~time}] {lfirst:a}: u still at {?the station|work|{~city}}?
[{~time}] me: yeah leaving in 10
[{~time}] {lfirst:a}: can u grab the keys off {first:b}? {?her|his} number is {phone}
[{~time}] me: kk whats the address again
[{~time}] {lfirst:a}: {addr}. oh and {first:c} says hi
[{~time}] me: 👍 see u at {~time}
""")

T("sms_landlord", r"""
{?Hi|Hey} {first:l}, it's {first:t} from {?flat|apartment} {?2|3B|7}. The boiler's gone again ({~temp} inside!). Can {?your plumber|{first:p}} come on {~day}? Also I paid {~month}'s rent to {iban} yesterday, ref {~order}.
""")

T("csv_crm_export", r"""
Here's the export you asked for – first few rows of the {~brand} CRM, pulled {~date}:

customer_id,full_name,email,phone,city,last_order
{~order},{name:a},{email:a},{phone},{~city},{~isodate}
{~order},{name:b},{email:b},{phone},{~city},{~isodate}
{~order},"{inv:c}",{email:c},{phone},{~city},{~isodate}
{~order},{name:d},{email:d},{phone},{~city},{~isodate}

The SSN column is still in the raw table – I left it out of this one on purpose.
""")

T("csv_payroll_us", r"""
payroll_export_{~isodate}.csv (first rows)

emp_id,last_name,first_name,ssn,pay_method,net_pay
{~emp},{last:a},{first:a},{ssn},direct deposit,{~amount}
{~emp},{last:b},{first:b},{ssn},paper check,{~amount}
{~emp},{last:c},{first:c},{ssn},direct deposit,{~amount}

{first:hr} – can you check row 2? {first:b} says {?her|his} SSN was keyed wrong last period.
""", weight=2)

T("csv_starters_uk", r"""
Starter checklist batch – {~company} – {~date}

employee,ni_number,tax_code,start_date
"{inv:a}",{nino},{~taxcode},{~isodate}
"{inv:b}",{nino},{~taxcode},{~isodate}
"{inv:c}",{nino},{~taxcode},{~isodate}

Note: {first:b}'s NI number came from {?her|his} P45; {first:c} hasn't sent one yet, so that number is from the HMRC letter.
""", weight=2)

T("dotenv_file", r"""
# .env.{?production|staging} – do NOT commit (it got committed in {~shortsha}, rotate everything)
APP_ENV={?production|staging}
APP_VERSION={~version}
DATABASE_URL={urlcred_db}
REDIS_URL={urlcred_redis}
STRIPE_SECRET_KEY={stripe_key}
SENDGRID_API_KEY={secret}
SENTRY_RELEASE={~sha}
ADMIN_EMAIL={email:a}
SMTP_PASSWORD={password}
FEATURE_FLAGS=checkout_v2,new_nav
""", weight=2)

T("helm_values", r"""
# helm/values-{?prod|eu|us}.yaml
image:
  repository: registry.internal/{?billing|notify|search}-api
  tag: "{~version}"
  digest: sha256:{~checksum}
database:
  host: {ip4}
  port: {~port}
  user: svc_app
  password: "{password}"
oncall:
  - name: {name:a}
    phone: "{phone}"
  - name: {name:b}
    email: {email:b}
""")

T("terraform_tfvars", r"""
# terraform.tfvars – {~company} sandbox
region             = "eu-west-2"
admin_ip           = "{ip4}"
db_master_user     = "dbadmin"
db_master_password = "{password}"
datadog_api_key    = "{hexsecret}"
cloudflare_token   = "{gensecret}"
owner_email        = "{email:o}"
tags = {lb}
  CostCentre = "{~order}"
  Owner      = "{name:o}"
{rb}
""")

T("aws_credentials_file", r"""
{?Found this in the shared drive under /home/{lfirst:u}/.aws/credentials:|Pasted from {first:u}'s old laptop – this is the credentials file:}

[default]
aws_access_key_id = {aws_key}
aws_secret_access_key = {aws_secret}
region = {?eu-west-1|us-east-2|ap-south-1}

[reporting]
aws_access_key_id = {aws_key}
aws_secret_access_key = {aws_secret}

{first:m}, please deactivate both keys today.
""")

T("trace_python_checkout", r"""
Traceback (most recent call last):
  File "/srv/app/checkout/views.py", line {~lineno}, in submit_order
    charge = gateway.charge(card=form.cleaned_data["card_number"], amount=cart.total)
  File "/srv/app/.venv/lib/python3.11/site-packages/{~pkg}/client.py", line {~lineno}, in charge
    raise DeclinedError(resp)
gateway.errors.DeclinedError: card {card} declined (code 05)

Request context:
  user_id={~uuid}
  user_email={email:a}
  remote_addr={ip}
  release={~version} ({~shortsha})
""")

T("trace_java_mailer", r"""
{~stamp} ERROR [{?http-nio-8080-exec-7|worker-3|scheduler-1}] c.ferncastle.billing.InvoiceService - Failed to send invoice {~invoice}
java.lang.IllegalStateException: SMTP auth failed for {email:s} via {urlcred_smtp}
	at com.ferncastle.billing.Mailer.send(Mailer.java:{~lineno})
	at com.ferncastle.billing.InvoiceService.dispatch(InvoiceService.java:{~lineno})
	at java.base/java.lang.Thread.run(Thread.java:{~lineno})
Context: customer={name:c} ({email:c}) account={~uuid} ip={ip}
""")

T("json_log_line", r"""
{lb}"level":"error","time":"{~stamp}","msg":"payment intent failed","pid":{~pid},"req":{lb}"id":"{~uuid}","ip":"{ip}","ua":"Mozilla/5.0 ({?Macintosh; Intel Mac OS X 14_4|Windows NT 10.0; Win64; x64})"{rb},"user":{lb}"name":"{name:u}","email":"{email:u}","phone":"{phone}"{rb},"key":"{stripe_key}","build":"{~shortsha}"{rb}
""")

T("access_log", r"""
{ip} - - [{~date}:{~hms} +0000] "GET /account/settings HTTP/1.1" 200 {?5120|4411|981} "-" "Mozilla/5.0"
{ip} - {lfirst:u} [{~date}:{~hms} +0000] "POST /login HTTP/1.1" 302 0 "-" "curl/{~version}"
{ip} - - [{~date}:{~hms} +0000] "GET /api/v1/invoices/{~invoice}?token={secret} HTTP/1.1" 401 73 "-" "python-requests/{~version}"
{ip6} - - [{~date}:{~hms} +0000] "GET /static/app.{~shortsha}.js HTTP/2.0" 200 {?18831|90214} "-" "Mozilla/5.0"
""")

T("auth_log", r"""
{?Jun|Jul|Aug} {?3|14|22} {~hms} bastion-{?01|02} sshd[{~pid}]: Failed password for invalid user admin from {ip4} port {~port} ssh2
{?Jun|Jul|Aug} {?3|14|22} {~hms} bastion-{?01|02} sshd[{~pid}]: Accepted publickey for {lfirst:u} from {ip4} port {~port} ssh2: ED25519 SHA256:{~fingerprint}
{?Jun|Jul|Aug} {?3|14|22} {~hms} bastion-{?01|02} sudo: {lfirst:u} : TTY=pts/0 ; PWD=/home/{lfirst:u} ; USER=root ; COMMAND=/usr/bin/systemctl restart {?nginx|postgresql}
# note from {first:u}: the hits from {ip4} are the pentest by {~company}, ignore
""")

T("firewall_change", r"""
Change request {~ticket}: allow {?vendor|contractor} access
Requested by: {name:r} ({email:r})
Source addresses: {ip4}, {ip4}, {ip6}
Destination: {ip4}:{~port} ({?SFTP|Postgres replica|RDP jump box})
Window: {~date} {~time}–{~time}
Approved by {tname:a} on {~date}. {first:r} to remove the rule after {~month}.
""")

T("sepa_mandate", r"""
SEPA Direct Debit Mandate
Creditor: {~company}, Creditor ID {~creditor}
Mandate reference: {~order}

By signing this form you authorise the creditor to send instructions to your bank to debit your account.

Debtor name: {name:d}
Address: {addr}
IBAN: {iban}
BIC: {~bic}
Type of payment: {?Recurrent|One-off}
Place and date: {~city}, {~date}
Signature: {name:d}
""")

T("energy_switch", r"""
Your switch to {~biz_energy} completes on {~date}.
Account holder: {tname:h}   Supply address: {addr_uk:s}
Meter serial: {~n16}   Opening reading: {?34821|1209|77410} kWh
Direct Debit of {~price} a month will be taken from {?the account ending {~last4}|IBAN {iban}} on the {?1st|15th|28th}.
Second account holder: {name:h2}.
Questions: call {phone_uk} ({~time}–{~time}, {~day} to {~day}).
""")

T("tax_preparer_email", r"""
Subject: {?Documents for|Re: your} {~year} return

{tname:c},

Thanks for sending the W-2s. Before I can file I need a few corrections:

• Your SSN on the engagement letter reads {ssn}, but the W-2 from {~company} shows {ssn}. Which is right?
• {first:sp}'s SSN ({ssn:sp}) is fine.
• For the dependent, {first:k} {last:c}, I still need the SSN – the card you sent was {?blurry|cut off}.

Your refund estimate is {~price}. I'll deposit it to the account you gave unless you tell me otherwise.

{name:prep}, EA
{phone_us}
""", weight=2)

T("hr_chat_w4", r"""
{first:hr} ({?HR|People Ops}) {~time}: hey {first:n}, payroll bounced your W-4 – the SSN field says {ssn}, is that right?
{first:n} {~time}: ugh no, it's {ssn}. sorry!
{first:hr} {~time}: np. also need your home address for the state form
{first:n} {~time}: {addr_us}
{first:hr} {~time}: perfect, {first:pm} will add you to payroll by {~day}
""")

T("mortgage_file", r"""
Loan file {~case} – {?pre-approval|underwriting} notes ({~date})
Borrower: {mname:b1}, SSN {ssn}
Co-borrower: {mname:b2}, SSN {ssn}
Subject property: {addr_us:prop}   Purchase price {~bigprice}   LTV {~pct}
Current residence: {addr_us}
Employer ({first:b1}): {~company}, verified by phone with {name:v} ({phone_us}).
Gift letter from {first:b2}'s {?mother|father}, {name:g}, for {~bigprice}.
""", weight=2)

T("benefits_enrollment", r"""
Open enrollment confirmation – plan year {~year}
Employee: {inv:e} ({~emp})
Coverage: {?Employee + Spouse|Family|Employee + Child(ren)}, {?PPO 500|HDHP with HSA|HMO Select}
Dependents:
  {name:s} – spouse – SSN {ssn}
  {name:k1} – child – SSN {ssn}
  {?{name:k2} – child – SSN {ssn}|}
Payroll deduction {~price} per pay period starting {~date}. Questions: {email:ben}
""", weight=2)

T("hmrc_tax_code_letter", r"""
{~org_hmrc}
PAYE and Self Assessment

{tname:t}
{addr_uk2:t}

National Insurance number: {nino}
Date: {~date}

Dear {tlast:t},

Your tax code for {~year} to {~year} is {~taxcode}. We have used information from your employer, {~company}, to work this out. If you think this is wrong, call us on {phone_uk} and quote your National Insurance number.
""")

T("student_finance_nudge", r"""
{first:s} – quick one before your {~course} lecture: Student Finance rejected your form because the National Insurance number didn't match. You wrote {nino}; the letter from {~org_sfe} says {nino:s}. Can you log in and fix it before {~date}? Also your term-time address is still showing as {addr_uk}. – {first:adv} (student adviser, room {~room})
""")

T("uk_first_payslip", r"""
From: {name:pm} <{email:pm}>
To: {name:e} <{email:e}>
Cc: {email:hr}
Subject: Your first payslip ({~month})

{first:e},

Welcome aboard. Your first pay date is {~date}. I've set you up with NI number {nino} and tax code {~taxcode} – that's the emergency code, it'll correct once HMRC sends your P45 details. Salary goes to the account you gave us ({?sort code and account ending {~last4}|IBAN {iban}}).

{first:pm}
Payroll, {~company}
""")

T("pension_transfer", r"""
Pension transfer request – {~company} Workplace Pension
Member: {tname:m}   Member no. {~member}
NI number: {nino}
Current address: {addr_uk}
Transferring to: {~company}, scheme ref {~policy}
Transfer value (estimate): {~bigprice}
Adviser: {name:adv}, {~company} ({phone_uk})
I confirm I have received guidance. Signed: {name:m}   Date: {~date}
""")

T("right_to_work", r"""
Right to work check – completed by {first:c} {last:c} on {~date}
Candidate: {name:x}
Share code checked online; status: {?settled|pre-settled|Skilled Worker visa}.
NINO (for payroll only): {nino}
Start date: {~date}   Site: {~company}, {~city}
Note: {first:x}'s previous employer was {~company}; reference from {tlast:ref}.
""")

T("guest_list_table", r"""
{?Wedding|Engagement party|Retirement do} – guest list v{?3|4|7} ({~date})

| Guest | Plus one | Dietary | Invite sent to |
|---|---|---|---|
| {name:g1} | {first:p1} | veg | {addr:g1} |
| {name:g2} | – | none | {email:g2} |
| {tname:g3} | {name:p3} | nut allergy | {addr:g3} |
| {name:g4} | – | GF | {phone} |

Table plan: {first:g1} next to {first:g4}, NOT next to {last:g2}. Venue: {~brand}, {~city}. Cake tasting on {~date} at {~time}.
""")

T("vet_reminder", r"""
{~biz_vet} – vaccination reminder
{?Dear|For the attention of} {tname:o},
{~pet:p} is due for {?his|her} booster on or after {~date}. {?Dr|Nurse} {last:v} has availability on {~day} at {~time}. We have your number as {phone} – if that's changed, reply to this email ({email:o}).
At the last visit {~pet:p} weighed {~weight}.
""")

T("club_renewal", r"""
{?Harriers|Rowing Club|Cricket Club|Swim Squad} membership renewal {~year}

Member: {name:m}
Emergency contact: {name:ec} – {phone}
Junior members on this account: {first:j1}{?, {first:j2}|}
Subscription: {~price} by Direct Debit from {iban}
Kit size: {?M|L|XL}, {~sku}
Membership no.: {~n16}

Committee: {name:c1} (secretary), {name:c2} (treasurer). Training moves to {~street} on {~day}s from {~month}.
""")

T("found_wallet_post", r"""
FOUND: wallet on {~street} near {~biz_cafe}, {~day} night. Inside is a driving licence for {name:o} and a bank card ending {~last4}. If it's yours (or you know {first:o}), message me or call {phone}. I've also left a note with {~company}.{? Not posting the address on the licence for obvious reasons.|}
""")

T("git_log", r"""
commit {~sha}
Author: {name:a} <{email:a}>
Date:   {?Mon|Tue|Wed|Thu|Fri} {?Mar|Jun|Oct} {?3|17|29} {~hms} {~year} +0100

    {?Fix|Hotfix:} {?retry logic in|timeout for} {~pkg} client ({~ticket})

    Co-authored-by: {name:b} <{email:b}>

commit {~sha}
Author: {name:c} <{email:c}>

    Remove hard-coded key ({?oops|sorry}), it was {secret}
""")

T("code_review_comment", r"""
**{first:r}** commented on `config/settings.py` line {~lineno}:

> SECRET_KEY = "{gensecret}"
> DEBUG = True
> ALLOWED_HOSTS = ["{ip4}", "localhost"]

This can't ship. Move it to the vault and rotate – {first:a} already saw it in the {~shortsha} diff. Also the fixture in `tests/data/users.json` has a real-looking address ({addr}) and {first:x}'s {?mobile|number} ({phone}); please swap for fake ones.
""")

T("curl_forum_thread", r"""
{first:u} wrote:
> Still getting 403. Here's exactly what I run:
>
> curl -s -H "Authorization: Bearer {jwt}" \
>   https://api.{?ferncastle.io|quillfield.com}/v{?1|2}/accounts/{~uuid}
>
> Response: {lb}"error":"forbidden","request_id":"{~uuid}"{rb}

{name:s} replied:
Your token's `scope` doesn't include what that endpoint needs. Generate a new one from the dashboard. Please don't paste tokens here – I've asked {first:mod} to edit your post.
""")

T("notebook_cell", r"""
In [{?3|7|12}]:
client = Client(api_key="{ai_key}")
df = load_customers("s3://{?exports|crm-dumps}/{~isodate}/customers.parquet")
df[df.email == "{email:a}"][["name", "phone"]]

Out[{?3|7|12}]:
        name                 phone
{?0|17|204}   {name:a}   {phone}
""")

T("docker_compose", r"""
services:
  db:
    image: postgres:{~version}
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: {password}
  worker:
    image: ghcr.io/{?ferncastle|quillfield}/worker@sha256:{~checksum}
    environment:
      BROKER_URL: {urlcred_mq}
      SLACK_BOT_TOKEN: {slack_token}
      GITHUB_TOKEN: {gh_token}
      MAINTAINER: "{name:m} <{email:m}>"
""")

T("gha_workflow", r"""
# .github/workflows/deploy.yml  (from {first:a}'s fork – flagged by secret scanning)
jobs:
  deploy:
    runs-on: ubuntu-latest
    env:
      NPM_TOKEN: {secret}
      DEPLOY_TOKEN: {~placeholder}
      AWS_ACCESS_KEY_ID: {aws_key}
    steps:
      - uses: actions/checkout@{~sha}
      - run: curl -X POST -d "text=deployed {~version}" https://hooks.example-chat.com/services/{gensecret}
""")

T("postmortem_timeline", r"""
Postmortem: {?checkout outage|login failures|delayed payouts} on {~date}

Timeline (UTC)
{~time}  Alerts fire for a {~pct} error rate on {?api-gw|payments}.
{~time}  {name:ic} takes incident command; {first:a} and {first:b} join the bridge.
{~time}  {first:a} finds that the new config put the prod token ({secret}) under the wrong key.
{~time}  Rolled back to {~version} ({~shortsha}). {last:b} rotates the token.
{~time}  Customer {name:c} ({email:c}) reports duplicate charges; {first:ic} escalates to finance.

Owner for follow-ups: {name:own}.
""")

T("k8s_secret", r"""
apiVersion: v1
kind: Secret
metadata:
  name: {?payments|crm|mailer}-credentials
  annotations:
    owner: "{email:o}"
    checksum/config: {~checksum}
type: Opaque
stringData:
  DB_PASSWORD: "{password}"
  API_TOKEN: "{secret}"
  BROKER_URL: "{urlcred_mq}"
  ADMIN_CONTACT: "{name:o}, {phone}"
""")

T("legacy_ini", r"""
; legacy.ini – copied from {name:a}'s workstation ({ip4})
[smtp]
host = mail.{?quillfield.com|harbourline.co.uk}
user = {email:svc}
password = {password}

[ftp]
url = {urlcred_ftp}

[install]
install_id = {~uuid}
owner = {name:a}
""")

T("conference_schedule", r"""
{?DevDays|HealthTech Forum|Logistics Summit} {~year} – {~day} schedule

{~time}  Room {~room}   "{?Scaling|Debugging|Securing} {~pkg} in production" – {name:s1} ({~company})
{~time}  Room {~room}   Panel: {first:s2} {last:s2}, {name:s3}, {name:s4}; moderated by {tname:mod}
{~time}  Room {~room}   Lunch, sponsored by {~company}

Speaker liaison: {first:l} – {phone} (call only if urgent). Speaker-room Wi-Fi password: {password}
""")

T("volunteer_rota", r"""
{?Food bank|Parkrun|Community café|Library} volunteer rota – {~month}

{~day}s: {first:a}, {first:b} and {first:c}
{~day}s: {name:d} (lead) + {first:e}
First {~day} of the month: {name:f}'s team

If you can't make your shift, swap with someone and tell {first:co} ({phone}). New volunteers {name:n1} and {name:n2} start on {~date}; {first:n1}, please bring your DBS certificate.
""")

T("neighbourhood_watch", r"""
{?Neighbourhood Watch|Street group summary} – {~street}

Two cars were broken into overnight (outside no. {?4|17|31} and outside {?{first:a}'s|{first:a} and {first:b}'s}). {tname:c} at {addr_uk} has a doorbell camera and is checking the footage. If you saw anything, call {first:c} on {phone_uk} or ring the police quoting {~incident}.

Reminder: the residents' meeting is on {~day} at {~time} at {~hall}.
""")

T("small_claims", r"""
Small claims – case {~case}
Claimant: {name:c}, {addr:c}
Defendant: {name:d} trading as {~company}, {addr:d}
Claim: {~price} for {?an unfinished kitchen fitting|a deposit not returned|damage to a {~vehicle}}.
Hearing: {~date}, {~time}, {~city} County Court, room {~room}.
The claimant's witness, {name:w}, will attend. The defendant's representative ({tname:r}) gave {email:r} as the address for service.
""")

T("removal_quote", r"""
Removal quote {~invoice} – {~biz_removals}
Customer: {tname:c}   Mobile: {phone}
Collect from: {addr:from}
Deliver to: {addr:to}
Volume: approx {?850|1,200|400} cu ft. Heavy items: {~product}, piano ({~weight}).
Date: {~date} (flexible by {?1|2} days). Crew lead: {first:crew}.
Deposit {~price}; {first:c} paid it by phone with {card}.
""")

T("scholarship_award", r"""
Dear {first:s},

On behalf of the {~foundation}, I'm delighted to confirm your award of {~bigprice} for {~year}. Payment will be made in two instalments to IBAN {iban}; please check it, as it is the one you gave on your form.

Your mentor will be {name:m}, who studied in {~city} and now works at {~company}. {first:m} will contact you at {email:s}.

With warm regards,
{tname:chair}
Chair of Trustees
""")

T("holiday_let_welcome", r"""
Welcome, {first:g}! {?Check-in|Self check-in} is from {~time}.
Address: {addr}
The key safe is to the left of the door. Wi-Fi: {?Cottage_5G|Loft-Guest|FlatNet} / password {password}
If anything goes wrong call me ({first:h}) on {phone} or my {?brother|sister} {first:h2} on {phone}. {~pet:p} the cat may try to come in – please don't feed {~pet:p}!
Checkout is {~time} on {~day}.
""")

T("delayed_baggage", r"""
Delayed baggage report {~booking}
Passenger: {ulast:p}/{ufirst:p} {?MR|MS}   Flight {~flight}, {~date}
Bag: {?black|navy|red} suitcase, {~length}
Delivery address (temporary): {addr}
Contact: {phone} / {email:p}
Agent {first:ag} at the {~city} desk. Essentials may be claimed up to {~price}.
""")

T("password_export_csv", r"""
name,url,username,password,note
{?Gmail|Mail},https://mail.google.com,{email:a},{password},
{?Bank|Online banking},https://online.{?alderbank.eu|harbourline.co.uk},{~member},{password},"memorable word is in the safe"
Router,http://{ip4},admin,{password},
{?Work VPN|VPN},https://vpn.{?ferncastle.io|corvid.dev},{lfirst:a}.{?ops|it},{password},ask {first:b}
""")

T("club_signup_form", r"""
After-school {?robotics|chess|drama|football} club – sign-up
Child: {name:k}   Class: {?3B|4R|5W|6K}
Parent/carer: {name:p}   Mobile: {phone}
Second contact: {name:p2} ({?grandparent|neighbour|aunt}) – {phone}
Collected by: {?{first:p}|{first:p2}|walks home alone (Y6 only)}
Medical: {?none|inhaler in bag|nut allergy}
Payment: {~fee} for the term, paid {?in cash|online, ref {~order}}
""")

T("village_newsletter", r"""
{?Community|Parish|Village} newsletter – {~month} {~year}

Congratulations to {first:a} and {name:b} on the birth of their daughter, {first:c}, on {~date}! Thank you to everyone who helped at the summer fete, especially {tname:d}, whose {~product} raffle raised {~price}. {name:e} is stepping down as treasurer after {?six|nine|twelve} years; {first:f} {last:f} has kindly agreed to take over. Hall bookings now go to {email:f} or {phone}.
""")

T("office_condolence", r"""
All – as many of you know, {first:a}'s {?father|mother}, {name:b}, passed away last {~day}. We're putting together a card and a donation to the {~foundation}. Please sign the card at {first:c}'s desk (room {~room}) by {~day}, or send a few words to {email:c} and {?she|he}'ll add them. {first:a} will be back on {~date}.
""")

T("travel_insurance_claim", r"""
Travel insurance claim {~claim} – cancellation
Policy {~policy}; travellers: {name:t1}, {name:t2}{?, {name:t3}|}
Trip: {~city} to {~city}, flights {~flight}/{~flight}, {~date} to {~date}
Reason: {first:t2} {?broke an ankle|was admitted to hospital} on {~date}; letter from Dr {last:doc} attached.
Amount claimed: {~price} (non-refundable hotel) + {~price} (flights)
Pay to: {name:t1}, {iban}
""")

T("pet_insurance_claim", r"""
Pet claim form
Pet: {~pet:p} ({?Labrador|Cocker spaniel|domestic shorthair}, {~weight})
Owner: {name:o}, {addr:o}, {phone}
Vet: {~biz_vet}, treating vet {tname:v}
Condition: {?ear infection|swallowed a sock|cruciate ligament}; invoice {~invoice}, {~price}.
Please pay the vet directly. Owner signature: {name:o}
""")

T("car_rental_return", r"""
Vehicle return inspection – agreement {~order}
Renter: {inv:r}   Licence checked by {first:ag}
Additional driver: {name:d2}
Vehicle: {~vehicle}, {?white|grey|blue}, fuel {~pct}
New damage: {?scratch on rear bumper ({~length})|cracked wing mirror|scuffed alloy, front left}
Pre-authorisation of {~price} held on {card}. Renter disputes it and says {first:d2} reported the damage at pickup to {first:ag2}.
""")

T("fafsa_counselor", r"""
{first:s},

Financial aid flagged your FAFSA: the SSN you entered ({ssn}) doesn't match the record at {~org_us}, and your parent {name:par}'s SSN is missing. Please bring the card to {~hall}, room {~room}, on {~day} or upload it through the secure portal – don't email it. Your award ({~bigprice}) is on hold until then.

{name:adv}
Financial Aid Counselor, {phone_us}
""")

T("background_check_form", r"""
AUTHORIZATION FOR BACKGROUND CHECK
Applicant full legal name: {ufull:a}
Other names used: {?none|{ufull:a2}}
SSN: {ssn}
Current address: {addr_us:a}
Previous address (if under 3 yrs): {addr_us}
Email: {email:a}    Phone: {phone_us}
Position: {?Warehouse Associate|Registered Nurse|School Bus Driver}, {~company}
I authorize {~company} to obtain a consumer report. Signed: {name:a}  Date: {~date}
""")

T("irs_letter_chat", r"""
{name:a} [{~time}]: got a letter from the IRS, says the SSN ending {~last4} was used on another return?? the full one on the letter is {ssn}
{name:b} [{~time}]: oh no. call the number printed on the letter, not one from google. did {first:c} file for you this year?
{name:a} [{~time}]: yeah {first:c} did it at {~company}. i'll call {last:c}'s office first
""")

T("dental_recall", r"""
{~company}
{addr:clinic}

{name:p}
{addr2:p}

{~date}

Dear {tlast:p},

Our records show you are due for your six-month check-up and hygiene appointment with {?Dr |}{name:dds}. We have reserved {~day} {~date} at {~time}. Please call {phone} to confirm, or we'll release the slot on {~date}.

We also have {name:ch} listed as a dependant on your plan; their appointment can be booked straight after yours.
""")

T("tutor_invoice", r"""
INVOICE {~invoice}
From: {name:f}, {addr:f}
VAT no. {~vat}
To: {name:c} (for {first:k}'s {?maths|piano|French} lessons)

{~date}   {?4|6|8} × 1h lessons @ {~price}
Total due: {~price}

Please pay by bank transfer to {iban} within 14 days, quoting {~invoice}. Questions: {email:f} / {phone}.
""")

T("site_diary", r"""
Site diary – {addr:site} – {~date}
Weather: {~temp}, dry.
On site: {name:a} (foreman), {first:b} {last:b}, {name:c} (electrician), {first:d} from {~company}
- Delivered: {~sku}; {~length} of copper pipe.
- {first:c} reported that the neighbour at no. {?9|11|15} ({tlast:n}) complained about noise before {~time}.
- Client {tname:cl} visited and asked about the {~product} for the lounge.
""")

T("survey_free_text", r"""
Survey free-text answers (export {~isodate})
#{?112|45|301}: "The installer, {first:i}, was brilliant. Please thank {?him|her}." (respondent {email})
#{?113|46|302}: "Nobody called me back. My number is {phone}, ask for {first:x}."
#{?114|47|303}: "Fine. Card {card} was charged before delivery, which I didn't like."
#{?115|48|304}: "{name:y} at the {~city} branch sorted it in {?5|10} minutes."
""")

T("library_overdue", r"""
{~biz_library} – overdue items
Borrower: {name:b}, library card {~n16}
Items overdue: "{~book}" (due {~date}), "{~book}" (due {~date})
Fine to date: {~fee}
We tried {phone} on {~day}. {?Your child {first:k}'s junior card is linked to this account.|}
Questions? Ask {first:lib} at the desk or reply to this email ({email:b}).
""")

T("oncall_json", r"""
[
  {lb}"user": "{name:a}", "email": "{email:a}", "phone": "{phone}", "tz": "Europe/{?London|Amsterdam|Berlin}"{rb},
  {lb}"user": "{name:b}", "email": "{email:b}", "phone": "{phone}", "tz": "America/{?New_York|Chicago}"{rb},
  {lb}"user": "{inv:c}", "email": "{email:c}", "phone": null, "tz": "Asia/{?Kolkata|Istanbul}"{rb}
]
""")

T("mail_headers", r"""
From: "{name:a}" <{email:a}>
To: {name:b} <{email:b}>, {email:c}
Cc: "{inv:d}" <{email:d}>
Date: {?Tue|Wed|Thu}, {?4|12|27} {?Mar|Sep|Nov} {~year} {~hms} +0000
Message-ID: <{~uuid}@mail.{?quillfield.com|corvid.dev}>
X-Originating-IP: [{ip4}]
Subject: Re: {?the {~city} offsite|budget sign-off|keys for the flat}

{?Sounds good|Agreed|Fine by me}. {first:b}, can you book it? {last:d} is away until {~date}.
""")

T("git_remote", r"""
$ git remote -v
origin	{urlcred_http:o} (fetch)
origin	{urlcred_http:o} (push)
upstream	https://github.com/{?ferncastle|quillfield}/{?billing|website}.git (fetch)

{first:a}: that origin URL has {?my|{first:b}'s} credentials baked in, can someone fix the CI runner config? also the mirror uses {urlcred_http}
""", weight=2)

T("package_manager_config", r"""
# ~/.npmrc
//registry.npmjs.org/:_authToken={secret}
@{?ferncastle|corvid}:registry=https://npm.pkg.github.com

# ~/.config/pip/pip.conf
[global]
index-url = {urlcred_http}
extra-index-url = https://pypi.org/simple

# ~/.netrc  ({first:a}'s laptop)
machine {?git.quillfield.com|artifacts.corvid.dev} login {lfirst:a} password {password}
""")

T("proxy_env", r"""
{first:a}, these are the proxy settings IT sent (build agent {ip4}):

export HTTP_PROXY={urlcred_proxy:p}
export HTTPS_PROXY={urlcred_proxy:p}
export NO_PROXY=localhost,.internal
export PIP_INDEX_URL={urlcred_http}

The log shows it connecting as {~masked_url}, so the credentials are being picked up.
""", weight=2)

T("airflow_connections", r"""
# airflow connections export – {~isodate}
AIRFLOW_CONN_WAREHOUSE='{urlcred_db}'
AIRFLOW_CONN_CRM_REPLICA='{urlcred_db}'
AIRFLOW_CONN_SFTP_PARTNER='{urlcred_http}'
AIRFLOW__WEBSERVER__SECRET_KEY={gensecret}
# owner: {name:o} <{email:o}>, dag version {~version}
""", weight=2)

T("celery_worker_log", r"""
[{~stamp}: INFO/MainProcess] Connected to {~masked_url}
[{~stamp}: WARNING/MainProcess] Result backend fallback to {urlcred_redis}
[{~stamp}: INFO/MainProcess] celery@worker-{?1|2|3} ready. pid={~pid}
[{~stamp}: ERROR/ForkPoolWorker-{?1|2}] Task send_receipt[{~uuid}] raised: SMTPRecipientsRefused({lb}'{email:c}': (550, b'mailbox unavailable'){rb})
""")

T("backup_script", r"""
#!/bin/sh
# nightly backup – maintained by {name:m} ({email:m}); last changed {~date}
mysqldump -u backup -p'{password}' -h {ip4} shop > /var/backups/shop-$(date +%F).sql
sha256sum /var/backups/shop-*.sql   # expected {~checksum}
rclone copy /var/backups {urlcred_http}
curl -fsS -m 10 --retry 3 https://hc-ping.com/{~uuid}
""")

T("phone_order_florist", r"""
PHONE ORDER {~order} – taken by {first:st} at {~time}
Customer: {name:c} ({phone})
Card: {card}, exp {~expiry}
Deliver to: {name:r}, {addr}
Item: {?large hand-tied, seasonal|12 red roses|the {?Sunrise|Meadow|Classic} bouquet} – {~price}
Card message: "{?Happy birthday|Get well soon|Congratulations}, {first:r}! Love from {first:c}{? and {first:c2}|} x"
Delivery slot: {~day} {~time}–{~time}
""")

T("chargeback_sheet", r"""
Chargebacks received this week ({~brand}) – please review before {~day}

case      | card                 | amount     | reason
{~case} | {card}  | {~price} | not recognised
{~case} | {card}  | {~price} | goods not received
{~case} | {card}  | {~price} | duplicate

{first:a}: the second one is {name:b}, who emailed from {email:b} to say the parcel arrived after all.
""", weight=2)

T("subscription_chat", r"""
Chat transcript {~ticket}
Customer: hi, I want to cancel, my name is {name:c}
Agent ({first:ag}): Sorry to see you go! Can you confirm the email on the account?
Customer: {email:c}
Agent ({first:ag}): Thanks, and your rewards number is {~n16}. I can see the {?annual|monthly} plan on the card ending {~last4}.
Customer: that's the old card. the new one is {card}, please refund to that
Agent ({first:ag}): I can only refund to the original card, but I've cancelled renewal from {~date}.
""")

T("fraud_call_transcript", r"""
[Automated fraud check – call recording summary, {~date}]
Spoke to: {tname:c} (number called: {phone})
Flagged transaction: {~price} at {~brand}, {~city}, {~time}
Card: {card}
Customer says {?{?her|his} {?son|partner}, {first:o}, made the purchase|it wasn't them}. {?Card blocked; new card ordered.|Marked as genuine.}
Replacement will be sent to {addr}.
""")

T("expense_group_chat", r"""
{first:a}: ok who paid for the {~city} cabin?
{first:b}: me, {~price} on my card {card} 😬
{first:c}: i'll send my share to your IBAN, is it still {iban}?
{first:b}: yep. {first:d} still owes for the {~product} too
{first:d}: ugh fine, doing it {~day}
""")

T("concert_refund_request", r"""
Subject: Refund – order {~order} ({?cancelled show|wrong date})

I bought {?two|four} tickets for the {~city} show on {~date} (seats {~seat} and {~seat}) using {card}. The event was {?cancelled|moved to {~date}} and I can't make it. Please refund to the same card. The tickets are in the name of {name:b}, who is my {?partner|brother|daughter}; the booking email is {email:a}.

{name:a}
{phone}
""")

T("tenant_screening_us", r"""
RENTAL APPLICATION – {~biz_lettings}
Property: {addr_us:prop}   Monthly rent: {~price}   Move-in: {~date}

Applicant 1: {name:a1}   SSN: {ssn}   Phone: {phone_us}
Employer: {~company}, {?since {~year}|for 3 years}, income {~price}/mo
Applicant 2: {name:a2}   SSN: {ssn}   Email: {email:a2}
Current landlord: {name:ll} ({phone_us})
Pets: {?none|one cat, {~pet}|dog ({~pet}, {~weight})}
Emergency contact: {name:ec}
""", weight=2)

T("medical_billing_call", r"""
Billing call {~ticket} – {~date}, {~time}
Caller: {name:c}, calling for {?her|his} {?father|mother|husband}, {name:pt}
Verified with: address ({addr_us}) and SSN {ssn}
Issue: balance of {~fee} from the {~date} visit should have gone to secondary insurance.
Rep {first:rep} resubmitted; claim {~claim}. Call back on {phone_us} in {?10|14|30} days if not resolved.
""")

T("i9_hr_thread", r"""
{name:hr} – {~date}
{first:n}, your I-9 section 1 is missing your SSN. Please reply with it or add it in the portal.

{name:n} – {~date}
It's {ssn}. My address is {addr_us}, and {first:hr}, can you also update my emergency contact to {name:ec} ({phone_us})?
""")

T("uk_tenancy_application", r"""
Tenancy application – {addr_uk:prop}
Applicant: {tname:a}
Current address: {addr_uk}
Date moved in: {~month} {~year}
Employer: {~company}   Salary: {~bigprice}
NI number: {nino}
Guarantor: {name:g}, NI number {nino}, of {addr_uk}
Previous landlord reference: {name:pl} ({phone_uk})
Holding deposit {~price} paid to {iban} on {~date}
""", weight=2)

T("jobcentre_letter", r"""
{~org_jcp}

{tname:c}
{addr_uk2:c}

Your National Insurance number: {nino}
Appointment: {~day} {~date} at {~time}

Dear {tlast:c},

You need to attend an appointment with your work coach, {name:wc}, at the {~city} office. If you cannot attend, call us on {phone_uk} as soon as possible. Please bring photo ID and details of any work you have done since {~date}.
""")

T("uk_payroll_csv", r"""
Attached is the corrected leavers file. {first:a} spotted that two NI numbers were swapped.

name,ni_no,leaving_date,final_pay,p45_sent_to
{name:l1},{nino},{~isodate},{~amount},{email:l1}
{name:l2},{nino},{~isodate},{~amount},{email:l2}
{name:l3},{nino},{~isodate},{~amount},post
{name:l4},{nino},{~isodate},{~amount},{email:l4}

{first:a} {last:a}, Payroll
""", weight=2)

T("placement_form", r"""
Placement agreement – {~course}
Student: {name:s}   Student ID {~member}
National Insurance no.: {nino}
Term-time address: {addr_uk}
Host organisation: {~company}, supervisor {tname:sup} ({email:sup})
Start: {~date}   Hours: {?35|37.5} per week   Stipend: {~price}
University contact: {name:uc}, placements office, room {~room}
""")

T("council_tax_reduction", r"""
Council Tax Reduction – change of circumstances
Reference: {~order}
Claimant: {name:a}, NI number {nino}
Partner: {name:b}, NI number {nino}
Address: {addr_uk}
Change: {first:b} started work at {~company} on {~date}, {?16|22|30} hours a week at {~fee} an hour.
Signed {name:a}, {~date}. Contact number {phone_uk}.
""", weight=2)

T("uk_hr_chat_nino", r"""
{first:hr} {~time}: morning {first:n}! payroll says your NI number is one character short – you put {nino}?
{first:n} {~time}: oh god sorry. it's {nino}
{first:hr} {~time}: ta. and {first:m} said you moved? what's the new address
{first:n} {~time}: {addr_uk}
{first:hr} {~time}: lovely, updated. welcome to {~company} 🎉
""", weight=2)

T("marketplace_payouts", r"""
Payout batch {~invoice} – {~date}

seller,iban,amount,status
{name:s1},{iban},{~price},sent
{name:s2},{iban},{~price},held (IBAN check)
{~company},{iban},{~price},sent
{name:s4},{iban},{~price},sent

{first:ops}: {first:s2}'s IBAN failed the bank's name check; I've emailed {email:s2}.
""", weight=2)

T("crowdfunding_refund", r"""
Hi everyone, {first:a} here. Sadly the {~product} project won't ship. Refunds are going out this week: if you paid by bank transfer, reply with your IBAN. Already received from {name:b} ({iban}) and {name:c} ({iban}). If you paid by card, you'll see it back on the card within {?5|10} days. Questions to {email:a}.
""")

T("salary_account_change", r"""
To: {~company} Payroll
From: {name:e} ({~emp})

Please change the account my salary is paid into from {~month}.
Old IBAN: {iban}
New IBAN: {iban}
Account holder: {name:e}{? (joint with {name:j})|}
My manager, {tname:mgr}, is aware. Thank you.
""")

T("lost_found_sports", r"""
Lost property at {~biz_leisure} this week: a {?navy|green} {~product}, a water bottle with "{first:a}" written on it, and a phone ({~model}). If the water bottle is {first:a} {last:a}'s, {?her|his} {?mum|dad} called – number {phone}. Everything else goes to the charity shop on {~street} after {~date}.
""")

T("press_release_quote", r"""
FOR IMMEDIATE RELEASE – {~date}

{~company} opens new warehouse in {~city}

The {~area} site on {~street} will create {?120|85|300} jobs. "{?We are thrilled|This is a big step for us}," said {name:ceo}, chief executive. Site manager {name:sm} added that local hiring starts in {~month}.

Media contact: {name:pr}, {email:pr}, {phone}
""")

T("forum_wifi_help", r"""
Posted by {first:u} in Home Networking:

My {~model} router keeps dropping. Settings screenshot transcribed:
WAN IP: {ip4}
LAN gateway: {ip4}
IPv6: {ip6}
Admin password: {password}
Firmware {~version}

(changed the admin password after posting, thanks {first:helper} for the warning)
""")

T("card_dump_csv", r"""
{first:a} – this is what the old booking plugin was writing to `wp_bookings_backup.csv`. Plain text, no encryption:

guest,card_number,exp,loyalty_no
{name:g1},{card},{~expiry},{~n16}
{name:g2},{card},{~expiry},{~n16}
{name:g3},{card},{~expiry},
{name:g4},{card},{~expiry},{~n16}

I've deleted the file from the server ({ip4}) but it is in the {~isodate} backup too. {first:b} says we need to tell the card processor.
""", weight=2)

T("charity_donation_form", r"""
Donation form – {~foundation}
Name: {tname:d}
Home address: {addr_uk}
Email: {email:d}
I would like to give {~price} {?monthly|once} by card: {card} (expires {~expiry})
[x] Gift Aid: I am a UK taxpayer.
In memory of: {?{name:m}|–}
Supporter number: {~n16}
""")

T("school_lunch_topup", r"""
Hi {tfirst:o},

I tried to top up {first:k}'s lunch account on the app but it keeps failing. The card is {card}. Could you put {~price} on it manually and I'll pay at the office on {~day}? {first:k}'s dinner number is {~n16}, if that helps. My mobile is {phone}.

{name:p}
""")

T("parking_penalty_payment", r"""
Penalty Charge Notice {~case}
Vehicle: {~vehicle}
Contravention: parked in a residents' bay, {~street}, {~date} at {~time}
Registered keeper: {tname:k}, {addr_uk}

Payment received: {~price} by card {card} on {~date}. Processed by {first:op}. Thank you.
""")

T("staging_data_leak_chat", r"""
#eng-security
{lfirst:a}: found real-looking card numbers in the staging DB, e.g. {card} and {card} in `payments_legacy`
{lfirst:b}: 😬 are they Luhn-valid? the test ones all start with 4242
{lfirst:a}: valid. also a customer name next to them: {name:c}, {email:c}
{lfirst:b}: ok, page {first:sec}. snapshot id {~uuid}, migration {~shortsha}
""")

T("card_update_email", r"""
Subject: Your payment method could not be updated

{?Dear|Hello} {first:c},

We tried to charge the new card you added ({card}) for your {~product} subscription but it was declined. Your loyalty number {~n16} and your {~pct} member discount are unaffected. Please update your details by {~date}.

{~company} Billing
""")

T("airline_payment_failure", r"""
Passenger {ulast:p}/{ufirst:p} – payment exception on booking {~booking}
Flight {~flight}, {~date}, seat {~seat}. Payment attempted with {card}; issuer declined (insufficient funds). Alternative card supplied by travel companion {name:tc}: {card}. Ticketed {~time}.
Frequent flyer no. {~n16} credited to {first:tc}.
""")

T("uk_mortgage_adviser", r"""
Fact-find summary – {tname:a1} and {tname:a2}
Property: {addr_uk:prop}   Price {~bigprice}   Deposit {~pct}
{first:a1}: employed at {~company}, NI {nino}
{first:a2}: self-employed ({?photographer|plumber|translator}), NI {nino}
Existing lender: {~biz_bank}, account {~n16}
Adviser: {name:adv} – {email:adv}
Next step: decision in principle by {~day}.
""", weight=2)

T("volunteer_dbs_form", r"""
DBS application – volunteer at {~school}
Full name: {ufull:v}
Previous surname: {?none|{ulast:prev}}
National Insurance number: {nino}
Address (5-year history): {addr_uk}; before that {addr_uk}
ID checked by {name:chk} on {~date}
""")

T("uk_gp_registration", r"""
GMS1 registration – {~biz_surgery}
Patient: {inv:p}   Sex: {?F|M|X}
Address: {addr_uk2:p}
Mobile: {phone_uk}
NI number (optional): {nino}
Previous GP: Dr {last:gp}, {~city}
Next of kin: {name:nok} ({?partner|mother|son}), {phone}
""")

T("car_loan_application", r"""
Auto loan application {~case}
Applicant: {name:a}, SSN {ssn}, {addr_us}
Co-signer: {name:cs}, SSN {ssn}
Vehicle: {~year} {~vehicle}, price {~bigprice}, down payment {~price}
Dealer: {~company} (sales rep {first:rep}, {phone_us})
Applicant's employer: {~company}, contact {name:hr}
""", weight=2)

T("w9_contractor_email", r"""
{first:c},

Thanks for the invoice. Accounts can't pay it until we have a W-9. You can just reply with your legal name, address and SSN (or EIN) – I know some people prefer that to the PDF. Last time you sent {ssn}, but {first:ap} in accounts payable says the IRS matching failed.

{name:pm}
{~company}, {phone_us}
""")

T("us_daycare_tax_receipt", r"""
{~biz_daycare:dc} – annual childcare statement {~year}
Parent: {name:p}   SSN (for dependent care credit): {ssn}
Child: {name:k}   Room: {?Caterpillars|Little Owls|Room 3}
Total paid: {~price}
Provider: {~biz_daycare:dc}, {addr_us}
Questions: {first:dir}, director, {phone_us}
""")

T("eu_freelance_invoice", r"""
Rechnung / Invoice {~invoice}
{name:f} – {?Übersetzungen|Fotografie|Webdesign}
{~city}, {~date}

An: {~company}, z. Hd. {tname:c}

{?3|5|8} Tage à {~price}         {~price}
MwSt. {~pct}                     {~price}
Gesamt                           {~price}

Bitte überweisen an: {name:f}, IBAN {iban}, BIC {~bic}
Steuernummer / VAT: {~vat}
""")

T("deposit_return_nl", r"""
Beste {first:t},

Je borg van {~price} voor het appartement aan de {~street} is vandaag teruggestort naar {iban}. Ik heb {~price} ingehouden voor de kapotte {~product} (zie foto's van {~date}). Vragen? Bel me op {phone_intl}.

Groet,
{name:l}
""")

T("sepa_rejects_csv", r"""
SEPA returns – batch {~invoice} ({~date})

end_to_end_id,debtor,iban,amount,reason
{~uuid},{name:d1},{iban},{~amount},AC04 account closed
{~uuid},{name:d2},{iban},{~amount},MD01 no mandate
{~uuid},{name:d3},{iban},{~amount},AM04 insufficient funds

{first:ops}: {first:d1} phoned to say the new account is {iban}.
""", weight=2)

T("spring_properties", r"""
# application-prod.properties (leaked in a support bundle from {name:a})
spring.datasource.url=jdbc:postgresql://{ip4}:5432/orders
spring.datasource.username=orders_rw
spring.datasource.password={password}
spring.rabbitmq.addresses={urlcred_mq}
spring.data.redis.url={urlcred_redis}
management.server.port={~port}
app.build.commit={~sha}
""", weight=2)

T("readme_quickstart", r"""
## Local setup

1. Copy `.env.example` to `.env`.
2. Point the app at the shared dev database:

       export DATABASE_URL={urlcred_db}

   (ask {first:a} if the password has rotated; it was changed on {~date})
3. Run `make seed` – this loads fixtures for {~version}.
4. The mock payment server listens on port {~port}; use the key `{~placeholder}`.

Maintainers: {name:a}, {name:b}
""")

T("bug_report_browser", r"""
**Bug:** {?refill form spins forever|profile page blank|can't upload insurance card} ({~biz_pharmacy} web app {~version})

Reported by {name:r} ({email:r}) from {ip}. Steps: log in, open the form, press Submit.

Console: `TypeError: Cannot read properties of undefined (reading 'dose')` at main.{~shortsha}.js:1:{~pid}
localStorage dump the user pasted:
  access_token: {jwt}
  refresh_token: {gensecret}
  last_patient: "{name:p}"

{first:dev}: confirmed on staging; token above is still valid until it expires, revoking now.
""")

T("http_request_dump", r"""
POST /api/v2/appointments HTTP/1.1
Host: api.{?pinecrest-dental.com|meadowpharm.com|lindenhall.school}
Authorization: Bearer {jwt}
X-Forwarded-For: {ip4}, {ip4}
Cookie: session={gensecret}; theme=dark
Content-Type: application/json

{lb}"patient": "{name:p}", "phone": "{phone}", "slot": "{~stamp}", "clinician": "{tname:c}"{rb}

HTTP/1.1 409 Conflict
X-Request-Id: {~uuid}
""")


# --- corpus ----------------------------------------------------------------------------------------------------------

_PARSED: dict[str, list] = {}


def _parsed(name: str, text: str) -> list:
    if name not in _PARSED:
        _PARSED[name] = _parse(text)[0]
    return _PARSED[name]


def make_corpus(seed: int = 0, n_records: int = 600) -> list[dict]:
    """`n_records` records, deterministic for `seed`; templates are used in turn, reshuffled every round."""
    rng = random.Random(f"pii-corpus-b/{seed}")
    names = Names(rng, seed)
    pool: list[tuple[str, str]] = []
    for name, text, weight in TEMPLATES:
        pool += [(name, text)] * max(1, round(weight))
    order: list[tuple[str, str]] = []
    while len(order) < n_records:
        batch = pool[:]
        rng.shuffle(batch)
        order += batch
    records = []
    for i, (name, text) in enumerate(order[:n_records]):
        doc = Doc(rng, names)
        doc.render(_parsed(name, text))
        body = "".join(doc.parts)
        taken = doc.spans + doc.distractors
        starts = [d for d in sentence_starts(body, doc.plain)
                  if not any(d["start"] < t["end"] and t["start"] < d["end"] for t in taken)]
        records.append({"id": f"b{seed}-{i:04d}-{name}", "text": body, "spans": doc.spans,
                        "distractors": sorted(doc.distractors + starts, key=lambda d: d["start"])})
    return records


# --- checks ----------------------------------------------------------------------------------------------------------

def _constructed_name(value: str) -> bool:
    toks = [t for t in re.split(r"[\s,./'\-]+", value.lower()) if len(t) > 1]
    return bool(toks) and not any(t in faker_name_set() for t in toks)


def check_corpus(records: list[dict], minimums: bool = True) -> tuple[list[str], dict]:
    """Problems found (empty when sound) and counts."""
    problems: list[str] = []
    planted, distract = Counter(), Counter()
    constructed = 0
    ids = set()
    for r in records:
        if r["id"] in ids:
            problems.append(f"duplicate id {r['id']}")
        ids.add(r["id"])
        text = r["text"]
        allspans = []
        for group, is_pii in ((r["spans"], True), (r["distractors"], False)):
            for s in group:
                if text[s["start"]:s["end"]] != s["value"] or s["end"] <= s["start"]:
                    problems.append(f"{r['id']}: span text mismatch {s}")
                if s["value"] != s["value"].strip():
                    problems.append(f"{r['id']}: span has outer whitespace {s}")
                allspans.append((s["start"], s["end"], s["kind"], is_pii))
                if not is_pii:
                    distract[s["kind"]] += 1
                    continue
                if s["kind"] not in PII_KINDS:
                    problems.append(f"{r['id']}: unknown kind {s['kind']}")
                planted[s["kind"]] += 1
                v = s["value"]
                if s["kind"] == "CARD" and not (luhn_ok(v) and len(re.sub(r"\D", "", v)) in (15, 16)):
                    problems.append(f"{r['id']}: bad card {v}")
                if s["kind"] == "IBAN" and not iban_ok(v):
                    problems.append(f"{r['id']}: bad IBAN {v}")
                if s["kind"] == "SSN" and not ssn_ok(v):
                    problems.append(f"{r['id']}: bad SSN {v}")
                if s["kind"] == "NINO" and not nino_ok(v):
                    problems.append(f"{r['id']}: bad NINO {v}")
                if s["kind"] == "URL_CREDENTIALS" and not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^\s:@/]+:[^\s@/]+@\S+", v):
                    problems.append(f"{r['id']}: bad credentialed URL {v}")
                if s["kind"] == "PERSON" and _constructed_name(v):
                    constructed += 1
            for s in group:
                if s["kind"] == "NON_LUHN_16" and luhn_ok(s["value"]):
                    problems.append(f"{r['id']}: NON_LUHN_16 passes Luhn {s['value']}")
        allspans.sort()
        for (a0, a1, k0, _), (b0, b1, k1, _) in zip(allspans, allspans[1:]):
            if b0 < a1:
                problems.append(f"{r['id']}: overlap {k0}@{a0}-{a1} / {k1}@{b0}-{b1}")
    counts = {"planted": dict(planted), "distractors": dict(distract), "planted_total": sum(planted.values()),
              "distractor_total": sum(distract.values()), "person_constructed": constructed,
              "person_constructed_share": constructed / max(1, planted["PERSON"])}
    if minimums:
        for k, m in MINIMUMS.items():
            if planted[k] < m:
                problems.append(f"{k}: {planted[k]} planted, minimum {m}")
        if counts["planted_total"] < MIN_TOTAL_PLANTED:
            problems.append(f"{counts['planted_total']} planted in all, minimum {MIN_TOTAL_PLANTED}")
        if counts["distractor_total"] < MIN_DISTRACTORS:
            problems.append(f"{counts['distractor_total']} distractors, minimum {MIN_DISTRACTORS}")
        if counts["person_constructed_share"] < 0.25:
            problems.append(f"constructed PERSON share {counts['person_constructed_share']:.1%} < 25%")
        if len({n for n, _, _ in TEMPLATES}) < 60:
            problems.append("fewer than 60 templates")
    return problems, counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="JSONL file to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--records", type=int, default=600)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    records = make_corpus(args.seed, args.records)
    seconds = time.perf_counter() - t0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    problems, counts = check_corpus(records, minimums=args.records >= 600)
    print(f"corpus B: seed {args.seed}, {len(records)} records, {len(TEMPLATES)} templates, "
          f"generated in {seconds:.2f} s -> {args.out}")
    print(f"planted {counts['planted_total']}:")
    for k in PII_KINDS:
        print(f"  {k:<16} {counts['planted'].get(k, 0):>5}")
    print(f"  PERSON spans whose name is in no Faker list: {counts['person_constructed']} "
          f"({counts['person_constructed_share']:.1%})")
    print(f"distractors {counts['distractor_total']}:")
    for k, n in sorted(counts["distractors"].items(), key=lambda kv: -kv[1]):
        print(f"  {k:<16} {n:>5}")
    if problems:
        print("PROBLEMS:\n  " + "\n  ".join(problems[:40]), file=sys.stderr)
        return 1
    print("checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
