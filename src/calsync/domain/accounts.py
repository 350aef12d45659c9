"""Which Google account a CRM user may link: the company's account policy, as pure rules.

`company` (the default): the CRM user's own e-mail, or any address in one of the company's
Google domains (an admin's list; empty means only the user's own e-mail). `own_email`: exactly
the CRM user's e-mail. `any`: every account — only when an admin chooses it.

Without a rule, whoever completed a connect link chose the calendar that receives the CRM user's
entries (issue 13 item 3: a private appointment went into a stranger's calendar).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

COMPANY = "company"
OWN_EMAIL = "own_email"
ANY = "any"
POLICIES = (COMPANY, OWN_EMAIL, ANY)
DEFAULT_POLICY = COMPANY
MAX_DOMAINS = 50

# a DNS name: labels of letters, digits and inner hyphens, at least two labels
_LABEL = r"(?!-)[a-z0-9-]{1,63}(?<!-)"
_DOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})+$")


def _email(value: str) -> str:
    return value.strip().lower()


def domain_of(email: str) -> str:
    return _email(email).rpartition("@")[2]


def clean_domains(values: Iterable[str]) -> list[str]:
    """The domain list as stored: lower case, no leading '@', sorted, once each.

    Raises ValueError naming the first value that is not a domain name."""
    out: set[str] = set()
    for raw in values:
        value = raw.strip().lower().removeprefix("@").rstrip(".")
        if len(value) > 253 or not _DOMAIN.match(value):
            raise ValueError(f"{raw!r} is not a domain name (like example.com)")
        out.add(value)
    if len(out) > MAX_DOMAINS:
        raise ValueError(f"at most {MAX_DOMAINS} domains")
    return sorted(out)


@dataclass(frozen=True)
class Verdict:
    """Whether `google_email` may be linked, and if not, what may (for the refusal page)."""

    allowed: bool
    google_email: str
    own_email: str
    domains: tuple[str, ...] = ()

    @property
    def expected(self) -> str:
        """The accounts that would be accepted, in plain words (English, no translation
        needed: e-mail addresses and domains)."""
        if not self.domains:
            return self.own_email
        return ", ".join([self.own_email, *(f"…@{d}" for d in self.domains)])


def check(policy: str, domains: Sequence[str], crm_email: str, google_email: str) -> Verdict:
    """May the CRM user with `crm_email` link the Google account `google_email`?

    An unknown policy is treated as the strictest (own e-mail): a bad stored value must never
    open the door."""
    own = _email(crm_email)
    account = _email(google_email)
    if policy == ANY:
        return Verdict(True, account, own)
    allowed_domains = tuple(domains) if policy == COMPANY else ()
    allowed = bool(account) and (account == own or domain_of(account) in allowed_domains)
    return Verdict(allowed, account, own, allowed_domains)
