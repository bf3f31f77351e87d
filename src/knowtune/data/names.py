"""Person names in text, for `data/privacy.py`: a gazetteer (the person-name lists of Faker's locales) and the
cues names come with (honorifics, greetings, sign-offs, chat speakers, mentions, name columns of CSV-like text),
with company, place, product and job-title words kept out. Our own: Presidio finds names only with a spaCy
language model, which PyPI does not carry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Found:
    """One finding of `privacy.find_pii`: text[start:end] is personal data of this kind."""
    start: int
    end: int
    kind: str
    score: float = 1.0


# --- Person names -------------------------------------------------------------------------------------------
#
# A run of capitalised words is a name when it has a listed first or last name (Faker's person lists of many
# locales) and nothing that makes it a company, a place, a product or a job title; or when it comes with a cue
# that only names take: an honorific (Mr, Dr), a greeting or sign-off (Hi X, / Kind regards,\nX), "my name is",
# a chat speaker ([10:15] X:), a mention (@X). A single listed first name also counts before a verb ("Kacper is
# taking a look"). A name found once is found again alone within the same text ("Dana" after "Dana Whitfield").

NAME_LOCALES = ("en_US", "en_GB", "en_IE", "en_NZ", "en_IN", "de_DE", "de_AT", "de_CH", "fr_FR", "fr_CA", "es_ES",
                "es_MX", "it_IT", "nl_NL", "nl_BE", "pl_PL", "pt_BR", "pt_PT", "sv_SE", "da_DK", "no_NO", "fi_FI",
                "cs_CZ", "sk_SK", "hu_HU", "ro_RO", "hr_HR", "sl_SI", "tr_TR", "lt_LT", "lv_LV", "et_EE", "id_ID",
                "vi_VN", "ga_IE", "yo_NG", "zu_ZA", "tw_GH", "en_PK", "en_TH", "el_GR", "ru_RU", "uk_UA", "ja_JP",
                "zh_CN", "ko_KR", "ar_AA", "he_IL", "fa_IR", "hi_IN", "bn_BD", "ta_IN", "th_TH", "ne_NP")
HONORIFIC = re.compile(r"(?:\b(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Madam|Mme|Mlle|Herr|Frau|Sr|Sra|Srta|Dott|Sig|Dra)\.?)\s*\Z")
# cues after which a capitalised word is a person's name even when no list knows it
STRONG_CUES = re.compile(
    r"(?i)(?:\b(?:hi|hello|hey|dear|hiya|morning|greetings|thanks|thank you|cheers|good (?:morning|afternoon|evening)"
    r"|warm wishes|best wishes|kind regards|best regards|warm regards|many thanks|all the best"
    r"|my name is|name is|i am|i'm|this is|it's|yours truly|signed|attn|attention|c/o|on behalf of"
    r"|(?:hi|hello|hey|dear|thanks) [A-Z][\w'’\-]+ (?:and|&)|husband|wife|spouse|partner|son|daughter|mother|"
    r"father|brother|sister|dependant|dependent|co-signer|cosigner|guarantor|beneficiary|next of kin|"
    r"emergency contact|new starter|employee|candidate|applicant|patient|tenant|account holder|holder|"
    r"cardholder|owner|signatory|decision maker is|(?:agent|customer|rep|advisor|visitor|caller) \()"
    r"[,:]?|@)[ \t]*\Z")
# weaker cues: enough for a listed name on its own
WEAK_CUES = re.compile(
    r"(?i)\b(?:from|to|by|with|for|cc|per|ask|asked|tell|told|called|emailed|met|ping|contact|spoke (?:with|to)|"
    r"talked (?:with|to)|assigned to|reported by|requested by|opened by|closed by|escalated to|forwarded to|"
    r"handed (?:over )?to|reports to|issued to|colleague|manager|supervisor|technician|engineer|nurse|doctor|"
    r"customer|client|contact|and|or)[,:]?[ \t]*\Z")
SPEAKER = re.compile(r"(?m)^[ \t>]*(?:\[[^\]\n]{1,20}\][ \t]*)?\Z")  # at a line start, after a [time] stamp
SIGN_OFF = re.compile(r"(?i)(?:best|kind regards|warm regards|best regards|best wishes|many thanks|thanks|thank you|"
                      r"yours faithfully|faithfully|respectfully|warmly|with thanks|with best wishes|warm wishes|"
                      r"sent by|"
                      r"cheers|regards|sincerely|yours(?: sincerely| truly)?|all the best|take care|talk soon)"
                      r"[,!.]?[ \t]*\n(?:[ \t]*\n)?[ \t]*\Z")
VERB_AFTER = re.compile(r"^ (?:is|was|has|had|will|would|can|could|should|says|said|wrote|writes|asked|asks|reports|"
                        r"reported|called|calls|confirmed|mentioned|prefers|preferred|left|joined|approved|needs|"
                        r"wants|thinks|agreed|sent|replied|replies|added|noted|signed|booked|visited|paid|ordered|"
                        r"complained|requested|explained|is taking|will follow)\b")
COMPANY = re.compile(r"(?:^|\s)(?:Inc|LLC|Ltd|GmbH|mbH|PLC|plc|Corp|Co|AG|SA|SE|SAS|SARL|BV|NV|KG|OHG|SpA|Oy|AB|AS|ApS|"
                     r"Kft|Zrt|Group|Groep|Holdings|Partners|Associates|Industries|Solutions|Systems|Labs|Studios|"
                     r"e\.V\.|e\.G\.|s\.r\.l\.|s\.r\.o\.|S\.A\.|S\.p\.A\.|B\.V\.|N\.V\.|Ltd\.|Inc\.|Sp\. z o\.o\.)\b")
AFTER_RUN_NOT_NAME = re.compile(
    r"^(?:,?\s*(?:Inc|LLC|Ltd|GmbH|mbH|PLC|plc|Corp|Co|AG|SA|SE|SAS|SARL|BV|NV|KG|OHG|SpA|e\.V\.|e\.G\.|s\.r\.l\.)(?!\w)"
    r"|\s+(?:and|&) Sons\b|\s+et Fils\b|\s+e Figli\b|\s+y Hijos\b|(?i:\s+(?:team|support|staff|folks)\b)"
    r"|,\s*[A-Z][\w'’\-]+,?\s+(?:and|&)\s+[A-Z]|\s*(?:&|and)\s+[A-Z][\w'’\-]+\s+(?:Support|Team|Group|Ltd|Inc|LLC)"
    r"|\s*&\s*[A-Z]|-[A-Z][\w'’]+\s+(?:Inc|LLC|Ltd|GmbH|Group)\b|\s+(?:Street|St|Avenue|Ave|Road|Rd|Lane|Ln|Drive|Dr|"
    r"Boulevard|Blvd|Court|Ct|Place|Pl|Way|Square|Park|Bridge|Station|Airport|Hotel|Bank|University|College|School|"
    r"Hospital|Clinic|Foundation|Institute|Museum|Centre|Center|County|City|Lake|River|Valley|Heights|Bay|Island|"
    r"office|desk|lamp|sofa|chair|table|rug|kettle|series|model|edition)\b)")
ARTICLE_BEFORE = re.compile(r"(?i)\b(?:the|a|an|our|your|their|this|that|these|those|its)\s+\Z")
PLACE_PREFIX = {"Lake", "Port", "East", "West", "North", "South", "New", "Fort", "Mount", "Saint", "St", "San", "Santa",
                "Los", "Las", "Bad", "Sankt", "Nova", "Novo", "Little", "Great", "Upper", "Lower", "Old"}
MONTHS_DAYS = {"January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
               "November", "December", "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov",
               "Dec", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "Mon", "Tue",
               "Wed", "Thu", "Fri", "Sat", "Sun", "Christmas", "Easter"}
NOT_NAMES = {  # capitalised words that are never a name: greetings, roles, job titles, field labels, couriers
    "Hi", "Hello", "Hey", "Dear", "Thanks", "Thank", "Cheers", "Regards", "Best", "Kind", "Warm", "Sincerely",
    "Prof", "Mx", "Mr", "Mrs", "Ms", "Miss", "Dr", "Sir", "Dame", "Lord", "Lady", "Rev", "Revd", "Fr", "Jr", "Sr",
    "Team", "Support", "Customer", "Client", "Madam", "Please", "Yes", "No", "Ok",
    "Okay", "Order", "Invoice", "Ticket", "Account", "Today", "Tomorrow", "Yesterday", "Morning", "Afternoon",
    "Evening", "Night", "Update", "Note", "Notes", "Subject", "Re", "Fwd", "Dept", "Department", "Admin", "User",
    "Guest", "Everyone", "All", "Folks", "There", "Again", "Soon", "Great", "Good", "Sorry", "Hope", "Happy",
    "Welcome", "Manager", "Agent", "Engineer", "Nurse", "Doctor", "Patient", "Tenant", "Staff", "Success", "Care",
    "Advisor", "Adviser", "Coordinator", "Executive", "Director", "Officer", "Specialist", "Assistant", "Analyst",
    "Consultant", "Lead", "Head", "Associate", "Representative", "Sales", "Operations", "Logistics", "Finance",
    "Accounts", "Receivable", "Payable", "Direct", "Mobile", "Office", "Desk", "Phone", "Tel", "Fax", "Email",
    "Competitor", "Supplier", "Vendor", "Partner", "Merchant", "Carrier", "Courier", "Owner", "Contact",
    "Billing", "Shipping", "Delivery", "Remote", "Status", "Priority", "Summary", "Left", "Right", "Renewal",
    "Signed", "Chat", "Visitor", "Bot", "System", "Server", "Prod", "Staging", "Release", "Version", "Build",
    "API", "IBAN", "BIC", "SSN", "VAT", "PO", "SKU", "USPS", "UPS", "DHL", "FedEx", "Evri", "Hermes", "Royal",
    "Mail", "Post", "Amazon", "Google", "Microsoft", "Apple", "Slack", "Teams", "Zoom", "GitHub", "Jira",
    "HR", "IT", "Q1", "Q2", "Q3", "Q4", "Tech", "Technical", "Service", "Services", "Help", "Helpdesk",
    "Sent", "Items", "Item", "Subtotal", "Total", "Payroll", "Pt", "Ext", "Date", "Practice", "Medical", "Surgery",
    "Pharmacy", "Dental", "Koninklijke", "Unfortunately", "Fortunately", "Hopefully", "Meanwhile",
    "Additionally", "Finally", "However", "Therefore", "Otherwise", "Currently", "Apparently", "Actually",
    "Basically", "Honestly", "Sadly", "Luckily", "Thankfully", "Regarding", "Following", "Attached", "Kindly"}
CONTRACTION = re.compile(r"^[A-Z][a-z]*['’](?:m|s|re|ll|ve|d)$")  # I'm, It's, We're: not names, often cues
NAME_TOKEN = re.compile(r"(?<![\w@/.\-])(?:[A-Z]\.|(?:[A-Z][a-z]?['’]|Mc|Mac|O['’])?[^\W\d_][\w'’\-]*)(?![\w@])")
PARTICLES = {"van", "von", "de", "der", "den", "del", "della", "di", "da", "dos", "das", "du", "le", "la", "ten", "ter",
             "bin", "al", "el", "y", "zu", "af", "av", "auch"}


@lru_cache(maxsize=1)
def _listed_names() -> tuple[frozenset, frozenset]:
    """(first names, last names): the person lists of Faker's locales, as they are (April, Hope and Will too)."""
    import importlib

    first, last = set(), set()
    for loc in NAME_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except (ImportError, AttributeError):
            continue
        for attr in ("first_names", "first_names_male", "first_names_female", "first_names_nonbinary"):
            first |= set(getattr(provider, attr, ()) or ())
        last |= set(getattr(provider, "last_names", ()) or ())
    return frozenset(first), frozenset(last)


@lru_cache(maxsize=1)
def _name_lists() -> tuple[frozenset, frozenset, frozenset]:
    """(first names, last names, words that are never names): the listed names without English function words,
    months, days, greetings, job titles and field labels, and those words."""
    from spacy.lang.en.stop_words import STOP_WORDS

    first, last = _listed_names()
    never = {w.capitalize() for w in STOP_WORDS} | NOT_NAMES | MONTHS_DAYS
    return frozenset(first - never), frozenset(last - never), frozenset(never)


def _pair_names(word: str, following: str | None, previous: str | None) -> bool:
    """A common word that is a name here: a listed first name before a listed last name (April Norman), or a
    listed last name after a listed first name (Kevin Hope)."""
    first, last = _listed_names()
    return bool((following and word in first and following in last and following not in MONTHS_DAYS)
                or (previous and word in last and previous in first and word not in MONTHS_DAYS))


# company names made of surnames: "Shah, Kirk and Walton", "Smit & Gervais", "Barry-Scott Support"
COMPANY_NAMES = re.compile(r"[A-Z][\w'’\-]+(?:, [A-Z][\w'’\-]+)+,? (?:and|&) [A-Z][\w'’\-]+|"
                           r"(?:(?:van|de|von|der|den) )*[A-Z][\w'’\-]+ & (?:(?:van|de|von|der|den) )*[A-Z][\w'’\-]+|[A-Z][\w'’]+-[A-Z][\w'’]+(?= (?:Support|Team|Group|Ltd|"
                           r"Inc|LLC|GmbH|PLC|Partners|Associates|Holdings|Industries|Logistics|Services|Solutions)\b)")


def persons(text: str, taken: list[Found], names: frozenset = frozenset()) -> list[Found]:
    first, last, never = _name_lists()
    taken = taken + [Found(m.start(), m.end(), "COMPANY") for m in COMPANY_NAMES.finditer(text)]
    tokens = list(NAME_TOKEN.finditer(text))
    found: list[Found] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i].group(0)
        if not tok[0].isupper():
            i += 1
            continue
        # a run of capitalised words on one line (particles and initials inside), separated by single spaces
        j = i + 1
        while j < len(tokens):
            gap = text[tokens[j - 1].end():tokens[j].start()]
            nxt = tokens[j].group(0)
            initial = re.fullmatch(r"[A-Z]\.?", tokens[j - 1].group(0)) is not None
            if not (gap == " " or (gap == ". " and initial) or (gap == "" and initial)) \
                    or not (nxt[0].isupper() or nxt in PARTICLES):
                break
            j += 1
        while j - 1 > i and tokens[j - 1].group(0) in PARTICLES:
            j -= 1
        span = _name_in_run(text, tokens, i, j, first, last, never)
        if span is not None:
            end = tokens[span[1] - 1].end()
            end -= 2 if text[end - 2:end] in ("'s", "’s") else 0  # Amara's: the name without the possessive
            found.append(Found(tokens[span[0]].start(), end, "PERSON", 0.8))
        i = j
    # a name found once, found again on its own
    known = {t for f in found for t in re.split(r"[\s.]+", text[f.start:f.end]) if len(t) > 1 and t not in never}
    known |= {n for n in names if n not in NOT_NAMES}
    for m in tokens:
        if m.group(0) in known and not any(f.start <= m.start() < f.end for f in found):
            found.append(Found(m.start(), m.end(), "PERSON", 0.7))
    return [f for f in found if not any(t.start < f.end and f.start < t.end for t in taken)]


NAME_COLUMN = re.compile(r"(?i)^(?:(?:full|first|last|given|family|customer|client|employee|patient|contact|account|"
                         r"card|guest|passenger|student|tenant|member|holder|owner|payee|beneficiary)[_ ]?)?"
                         r"(?:name|surname|forename|holder|owner|payee|beneficiary)s?$")


SSN_COLUMN = re.compile(r"(?i)^(?:ssn|social[ _]?security(?:[ _]?(?:number|no))?|ss[ _]?no)$")


def table_names(text: str) -> list[Found]:
    """Cells under a name column of CSV-like lines (`name,email,...` then rows): people's names whatever they are;
    and under an SSN column, 9-digit numbers in the SSN's issued ranges."""
    import csv

    found: list[Found] = []
    lines = text.split("\n")
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    columns: list[int] = []
    ssn_columns: list[int] = []
    width = 0
    for n, line in enumerate(lines):
        if line.count(",") < 2 and line.count("\t") < 2 and line.count(";") < 2:
            columns, ssn_columns, width = [], [], 0
            continue
        sep = max(",\t;", key=line.count)
        cells = next(csv.reader([line], delimiter=sep))
        header = [i for i, c in enumerate(cells) if NAME_COLUMN.match(c.strip())]
        ssn = [i for i, c in enumerate(cells) if SSN_COLUMN.match(c.strip())]
        if header or ssn:
            columns, ssn_columns, width = header, ssn, len(cells)
            continue
        if not (columns or ssn_columns) or len(cells) != width:
            continue
        at = 0
        for i, cell in enumerate(cells):
            pos = line.find(cell, at)
            if pos < 0:
                break
            at = pos + len(cell)
            value = cell.strip()
            start = offsets[n] + pos + (len(cell) - len(cell.lstrip()))
            if i in columns and value and value[0].isalpha() and value[0].isupper() and not any(ch.isdigit() for ch in value):
                found.append(Found(start, start + len(value), "PERSON", 0.7))
            elif i in ssn_columns and re.fullmatch(r"(?!000|666|9)\d{3}[- ]?(?!00)\d{2}[- ]?(?!0000)\d{4}", value):
                found.append(Found(start, start + len(value), "SSN", 0.7))
    return found


def _name_in_run(text, tokens, i, j, first, last, never) -> tuple[int, int] | None:
    """The (start, end) token indices of the person name in the run tokens[i:j], or None."""
    words = [t.group(0) for t in tokens[i:j]]
    if any(COMPANY.search(" " + w) for w in words) or AFTER_RUN_NOT_NAME.match(text[tokens[j - 1].end():]):
        return None
    a = i  # leading words that are not names: a sentence-initial "Please", a greeting, "I'm"
    while a < j and (words[a - i].rstrip(".") in never or CONTRACTION.match(words[a - i])) \
            and not _pair_names(words[a - i], words[a - i + 1] if a + 1 < j else None, None):
        a += 1
    b = a  # the name stops at the first word that cannot be in one ("Grace Period Policy")
    while b < j and (words[b - i].rstrip(".") not in never or b == a
                     or _pair_names(words[b - i], None, words[b - i - 1])):
        b += 1
    if a >= b:
        return None
    names = words[a - i:b - i]
    real = [re.sub(r"['’]s$", "", w) for w in names if w not in PARTICLES and not re.fullmatch(r"[A-Z]\.?", w)]
    if not real or names[0] in PLACE_PREFIX or len(real) > 4:
        return None
    before = text[max(0, tokens[a].start() - 60):tokens[a].start()]
    if ARTICLE_BEFORE.search(before):
        return None  # "the Nordic Oak sofa", "the Little Rock office": a thing's name
    after = text[tokens[b - 1].end():]
    strong = bool(HONORIFIC.search(before) or STRONG_CUES.search(before) or SIGN_OFF.search(before)
                  or (SPEAKER.search(before) and after.startswith(":") and "]" in before[-25:]))
    weak = strong or bool(WEAK_CUES.search(before))
    listed_first, listed_last = real[0] in first, any(w in last for w in real[1:])
    if len(real) >= 2:
        if listed_first or listed_last or strong or (weak and any(w in first or w in last for w in real)):
            return a, b
        return None
    word = real[0]
    if strong and _looks_like_name(word):
        return a, b
    listed = word in first or word in last
    speaker = SPEAKER.search(before) and after.startswith(":") and (word in first or "]" in before[-25:])
    if listed and (weak or VERB_AFTER.match(after) or speaker):
        return a, b
    return None


def _looks_like_name(word: str) -> bool:
    """An unlisted single capitalised word after a strong cue ("Hi Zorblat,"): a name unless it is all capitals."""
    return len(word) >= 2 and not word.isupper() and (word[1:].islower() or "-" in word or "'" in word)
