"""The adversarial contract, generated: hostile config files, safetensors headers, chat templates,
messages and generate() arguments, each batch in a child process with a deadline and an
RLIMIT_AS cap. Every case must work (with a well-formed result) or raise a PyrustmlError
subclass: never a signal, a hang, a traceback or a foreign exception.

The default run is bounded (a few batches per class, seconds each); `pytest -m soak` runs the
long profile (SOAK_BATCHES per class). Run with -s to see the outcome counts."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import strategies as S
from harness import STATS, report, run_batch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# (batches, cases per batch): the default profile keeps this folder to a few tens of seconds.
SHORT = (2, 6)
SOAK = (int(os.environ.get("PYRUSTML_SOAK_BATCHES", "60")), 12)

CLASSES: dict[str, Callable[[], st.SearchStrategy[dict[str, Any]]]] = {
    "json": S.json_file_cases,
    "safetensors": S.safetensors_cases,
    "chat": S.chat_cases,
    "template_file": S.template_file_cases,
    "api": S.api_cases,
}


def _check(kind: str, profile: tuple[int, int]) -> None:
    batches, size = profile

    @settings(
        max_examples=batches,
        deadline=None,
        database=None,
        derandomize=os.environ.get("HYPOTHESIS_PROFILE", "ci") != "dev",
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(CLASSES[kind](), min_size=1, max_size=size))
    def prop(cases: list[dict[str, Any]]) -> None:
        run_batch(cases)

    prop()
    print(f"[adversarial {kind}] {report()}")


@pytest.mark.parametrize("kind", list(CLASSES))
def test_contract_short(kind: str) -> None:
    STATS.clear()
    _check(kind, SHORT)


@pytest.mark.soak
@pytest.mark.parametrize("kind", list(CLASSES))
def test_contract_soak(kind: str) -> None:
    STATS.clear()
    _check(kind, SOAK)


def test_the_harness_catches_a_foreign_exception() -> None:
    """The harness must be able to fail: a case that escapes the family (a prompt of type
    `object` reaches the tokenizer check as PromptTypeError, so use an unknown case kind, which
    the runner raises as ValueError) is reported as broken."""
    with pytest.raises(AssertionError, match="contract broken"):
        run_batch([{"kind": "no-such-kind"}])
