"""Each secret rule (`context/secrets_rules.py`) redacts exactly its examples and nothing in its ignores."""

from __future__ import annotations

import pytest

from deepfim.context.secrets import REDACTED, find_secrets, redact
from deepfim.context.secrets_checks import CHECKS
from deepfim.context.secrets_rules import RULES

EXAMPLES = [(rule.id, example) for rule in RULES for example in rule.examples]
IGNORES = [(rule.id, text) for rule in RULES for text in rule.ignores]


def _unmark(example: str) -> tuple[str, str, list[str]]:
    """(plain text, text with each «marked» part replaced by the placeholder, the marked parts)."""
    plain, expected, secrets = [], [], []
    rest = example
    while "«" in rest:
        before, rest = rest.split("«", 1)
        secret, rest = rest.split("»", 1)
        plain += [before, secret]
        expected += [before, REDACTED]
        secrets.append(secret)
    return "".join(plain + [rest]), "".join(expected + [rest]), secrets


def test_every_rule_has_examples_and_a_known_check():
    for rule in RULES:
        assert rule.examples, rule.id
        assert not rule.check or rule.check in CHECKS, rule.id
        assert all(k == k.lower() for k in rule.keywords), rule.id
        assert all("«" in e for e in rule.examples), rule.id


@pytest.mark.parametrize("rule_id, example", EXAMPLES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(EXAMPLES)])
def test_the_rule_redacts_exactly_its_example(rule_id, example):
    plain, expected, secrets = _unmark(example)
    assert redact(plain) == expected
    kinds = {kind for _, _, kind in find_secrets(plain)}
    assert rule_id in kinds or _found_by(rule_id, plain, secrets), (rule_id, kinds)


def _found_by(rule_id: str, plain: str, secrets: list[str]) -> bool:
    """True when `rule_id` alone finds each secret (another rule's span may have won the merge)."""
    from deepfim.context.secrets import _matches

    spans = [(s, e) for s, e, kind in _matches(plain) if kind == rule_id]
    return all(any(plain[s:e] == secret for s, e in spans) for secret in secrets)


@pytest.mark.parametrize("rule_id, text", IGNORES, ids=[f"{r}-{i}" for i, (r, _) in enumerate(IGNORES)])
def test_the_rule_leaves_ordinary_text_alone(rule_id, text):
    assert find_secrets(text) == [], text


def test_spans_line_up_where_lower_casing_changes_the_length():
    text = "İİ api_key: 'Sup3r!secret' İ"  # 'İ'.lower() is two characters
    assert redact(text) == f"İİ api_key: '{REDACTED}' İ"
    assert [kind for _, _, kind in find_secrets(text)] == ["credential-assignment"]
