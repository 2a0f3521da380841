"""How pasted text becomes addresses."""

from __future__ import annotations

import pytest

from clients.invitations.parsing import parse_addresses


def emails(text: str) -> list[str | None]:
    return [p.email for p in parse_addresses(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@x.com,b@x.com", ["a@x.com", "b@x.com"]),
        ("a@x.com, b@x.com", ["a@x.com", "b@x.com"]),
        ("a@x.com;b@x.com ; c@x.com", ["a@x.com", "b@x.com", "c@x.com"]),
        ("a@x.com b@x.com\tc@x.com", ["a@x.com", "b@x.com", "c@x.com"]),
        ("a@x.com\nb@x.com\r\nc@x.com\n\n", ["a@x.com", "b@x.com", "c@x.com"]),
        ("a@x.com,,;;  \n ,b@x.com", ["a@x.com", "b@x.com"]),
        ("Jane Doe <jane@x.com>, Bob <bob@x.com>", ["jane@x.com", "bob@x.com"]),
        ("A@X.COM, a@x.com,  a@X.com ", ["a@x.com"]),
        ("a@x.com, b@x.com, A@x.com", ["a@x.com", "b@x.com"]),
    ],
    ids=[
        "commas",
        "comma-space",
        "semicolons",
        "spaces-tabs",
        "newlines",
        "empty-parts",
        "named",
        "case-duplicates",
        "later-duplicate",
    ],
)
def test_separators_duplicates_and_case(text: str, expected: list[str]) -> None:
    assert emails(text) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "plainaddress",
        "@no-local.com",
        "no-domain@",
        "a@b",
        "a@@b.com",
        "a@b..com",
        "a@-b.com",
        "a@b.com<",
    ],
)
def test_invalid_forms_are_reported_with_a_reason_and_do_not_stop_the_others(bad: str) -> None:
    parsed = parse_addresses(f"good@x.com, {bad}, other@x.com")
    assert [p.email for p in parsed if p.email] == ["good@x.com", "other@x.com"]
    [invalid] = [p for p in parsed if p.email is None]
    assert invalid.input == bad and invalid.reason


def test_a_very_long_list() -> None:
    text = ",".join(f"person{i}@example.com" for i in range(10_000)) + ",PERSON7@example.com"
    parsed = parse_addresses(text)
    assert len(parsed) == 10_000
    assert parsed[7].email == "person7@example.com"


def test_nothing_but_separators() -> None:
    assert parse_addresses(" ,;\n ") == []
