"""The company's Google account policy (domain/accounts.py)."""

from __future__ import annotations

import pytest

from calsync.domain import accounts

ANN = "Ann@Acme.no"


@pytest.mark.parametrize(
    ("policy", "domains", "google", "allowed"),
    [
        ("company", [], "ann@acme.no", True),
        ("company", [], " ANN@acme.no ", True),
        ("company", [], "ann.private@acme.no", False),  # no domains: own e-mail only
        ("company", ["acme.no"], "ann.private@acme.no", True),
        ("company", ["acme.no"], "ann@acme.no.evil.example", False),
        ("company", ["acme.no"], "ann@sub.acme.no", False),  # subdomains are listed on their own
        ("company", ["acme.no"], "mallory@gmail.com", False),
        ("own_email", ["acme.no"], "ann.private@acme.no", False),
        ("own_email", [], "ann@acme.no", True),
        ("any", [], "mallory@gmail.com", True),
        ("bogus", ["acme.no"], "ann.private@acme.no", False),  # unknown: strictest
        ("bogus", [], "ann@acme.no", True),
        ("company", ["acme.no"], "", False),
    ],
)
def test_check(policy: str, domains: list[str], google: str, allowed: bool) -> None:
    assert accounts.check(policy, domains, ANN, google).allowed is allowed


def test_the_refusal_says_what_would_be_accepted() -> None:
    verdict = accounts.check("company", ["acme.no", "acme.se"], ANN, "Mallory@Gmail.com")
    assert not verdict.allowed and verdict.google_email == "mallory@gmail.com"
    assert verdict.expected == "ann@acme.no, …@acme.no, …@acme.se"
    assert accounts.check("own_email", ["acme.no"], ANN, "x@acme.no").expected == "ann@acme.no"


def test_clean_domains() -> None:
    assert accounts.clean_domains(["@Acme.NO", "acme.no.", " acme.se "]) == ["acme.no", "acme.se"]
    assert accounts.clean_domains([]) == []
    for bad in ("acme", "not a domain", "-acme.no", "acme..no", "ann@acme.no", "a" * 64 + ".no"):
        with pytest.raises(ValueError, match="not a domain name"):
            accounts.clean_domains([bad])
    with pytest.raises(ValueError, match="at most 50"):
        accounts.clean_domains([f"d{i}.example" for i in range(51)])
