"""Chat templates from strangers: compiled lazily (a template that hangs or fails to compile never
blocks plain generation), bounded in arithmetic, string size, time and output, and every error a
render raises is a ChatTemplateError keeping its cause. Messages take OpenAI's shapes."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest
from support import FIX

import pyrustml
from pyrustml.errors import ChatTemplateError, PromptTypeError, PyrustmlError, UnsupportedModelError
from pyrustml.io import chat_template
from pyrustml.io.chat_template import ChatTemplate

HI = [{"role": "user", "content": "hi"}]


def gemma_with_template(tmp: Path, template: str | None, raw: bytes | None = None) -> Path:
    d = tmp / "gemma"
    shutil.copytree(FIX / "gemma3-tiny", d)
    if raw is not None:
        (d / "chat_template.jinja").write_bytes(raw)
    elif template is not None:
        cfg = json.loads((d / "tokenizer_config.json").read_text())
        cfg["chat_template"] = template
        (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return d


@pytest.mark.parametrize(
    "template",
    ["{{ 9**(9**9) }}", "{% for x in %}", "{{ (9**9)**(9**9) * 'a' }}"],
)
def test_a_bad_template_does_not_block_loading_or_generation(tmp_path: Path, template: str) -> None:
    d = gemma_with_template(tmp_path, template)
    t0 = time.monotonic()
    m = pyrustml.load(str(d))
    assert time.monotonic() - t0 < 10
    assert m.generate("Hello", max_tokens=2, temperature=0).tokens
    with pytest.raises(ChatTemplateError):
        m.chat(HI, max_tokens=1)


def test_an_undecodable_template_file_only_fails_chat(tmp_path: Path) -> None:
    d = gemma_with_template(tmp_path, None, raw=b"{{ '\xff\xfe' }}")
    m = pyrustml.load(str(d))
    assert m.generate("Hello", max_tokens=1, temperature=0).tokens
    with pytest.raises(ChatTemplateError, match=r"chat_template\.jinja"):
        m.chat(HI, max_tokens=1)


@pytest.mark.parametrize(
    ("template", "cause", "says"),
    [
        ("{{ 9**(9**9) }}", None, "power"),
        ("{{ 10**5000 }}", None, "power"),
        ("{{ 'a' * 10**9 }}", None, "string or list"),
        ("{{ [0] * 10**9 }}", None, "string or list"),
        ("{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}",
         None, "string"),
        ("{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}{% endfor %}",
         None, "string"),
        ("{{ 1 / 0 }}", ZeroDivisionError, "ZeroDivisionError"),
        ("{{ 2.0 ** 5000 }}", None, "power"),
        ("{{ raise_exception() }}", TypeError, "TypeError"),
        ("{{ strftime_now(5) }}", TypeError, "TypeError"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", RecursionError, "RecursionError"),
        ("{{ messages[5]['content'] }}", None, "failed"),
        ("{{ (1).__class__.__subclasses__() }}", None, "failed"),
    ],
)  # fmt: skip
def test_render_errors_are_chat_template_errors(template: str, cause: type | None, says: str) -> None:
    with pytest.raises(ChatTemplateError, match=says) as info:
        ChatTemplate(template, {}).render(HI)
    if cause is not None:
        assert isinstance(info.value.__cause__, cause)


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''|center(10**10) }}",
        "{{ 'a'.ljust(10**10) }}",
        "{{ '{:>10000000000}'.format(1) }}",
        "{{ '%10000000000s' % 1 }}",
        "{{ '%10000000000s'|format(1) }}",
        "{{ ('a' * 1000000)|replace('a', 'a' * 1000000) }}",
        "{{ ('a' * 1000000).replace('a', 'a' * 1000000) }}",
        "{{ ('a\n' * 1000000)|indent(100) }}",
        "{{ ['x' * 1000000] * 9|join }}",
        "{{ lipsum(10**6) }}",
    ],
)
def test_expanding_calls_and_filters_are_refused_before_they_run(template: str) -> None:
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError):
        ChatTemplate(template, {}).render(HI)
    assert time.monotonic() - t0 < 2


def test_ordinary_calls_and_filters_still_work() -> None:
    t = "{{ range(3)|join(',') }}|{{ 'ab'|replace('a', 'c') }}|{{ '{}-{}'.format(1, 2) }}|{{ '%s!' % 'x' }}"
    assert ChatTemplate(t, {}).render(HI) == "0,1,2|cb|1-2|x!"


def test_raise_exception_message_is_kept() -> None:
    with pytest.raises(ChatTemplateError, match="only user roles"):
        ChatTemplate("{{ raise_exception('only user roles') }}", {}).render(HI)


@pytest.mark.parametrize(
    "template",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    ],
)
def test_rendering_is_bounded_in_time(monkeypatch: pytest.MonkeyPatch, template: str) -> None:
    monkeypatch.setattr(chat_template, "RENDER_SECONDS", 0.5)
    t0 = time.monotonic()
    with pytest.raises(ChatTemplateError, match="time limit"):
        ChatTemplate(template, {}).render(HI)
    assert time.monotonic() - t0 < 5


def test_rendering_is_bounded_in_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chat_template, "MAX_RENDER_CHARS", 10_000)
    with pytest.raises(ChatTemplateError, match="output limit"):
        ChatTemplate("{% for i in range(100000) %}{{ 'xy' }}{% endfor %}", {}).render(HI)


def test_the_trace_is_restored_after_a_render() -> None:
    import sys

    before = sys.gettrace()
    with pytest.raises(ChatTemplateError):
        ChatTemplate("{{ 1/0 }}", {}).render(HI)
    assert sys.gettrace() is before


@pytest.mark.parametrize(
    ("messages", "err"),
    [
        ("hello", PromptTypeError),
        (None, PromptTypeError),
        ([], PromptTypeError),
        ([{"content": "x"}], PromptTypeError),
        ([{"role": "user", "content": 5}], PromptTypeError),
        ([{"role": "user", "content": [{"type": "text"}]}], PromptTypeError),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            UnsupportedModelError,
        ),
        ([{"role": "user", "content": [{"type": "image"}]}], UnsupportedModelError),
    ],
)
def test_bad_messages_are_family_errors(messages: object, err: type[PyrustmlError]) -> None:
    m = pyrustml.load(str(FIX / "gemma3-tiny"))
    with pytest.raises(err):
        m.chat(messages, max_tokens=1)


def test_openai_list_content_renders_as_transformers_does() -> None:
    m = pyrustml.load(str(FIX / "gemma3-tiny"))
    assert m.chat_template is not None
    plain = m.chat_template.render([{"role": "user", "content": "Hello there"}])
    parts = m.chat_template.render([{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}])
    assert parts == plain
    a = m.chat([{"role": "user", "content": "Hello there"}], max_tokens=3, temperature=0)
    b = m.chat(
        [{"role": "user", "content": [{"type": "text", "text": "Hello there"}]}], max_tokens=3, temperature=0
    )
    assert a.tokens == b.tokens


def test_a_template_without_typed_parts_gets_the_joined_text() -> None:
    t = ChatTemplate("{% for m in messages %}[{{ m['content'] }}]{% endfor %}", {})
    assert (
        t.render(
            [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
        )
        == "[ab]"
    )


def test_recursion_is_bounded_whatever_the_interpreters_limit() -> None:
    """A recursive macro stops at MAX_CALL_DEPTH, not at sys.getrecursionlimit(): each level goes
    through C calls and costs C stack, so a raised limit (hypothesis raises it while its tests
    run) let a full-suite run overflow the stack before any RecursionError."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        with pytest.raises(ChatTemplateError, match="nested more than") as info:
            ChatTemplate("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", {}).render(HI)
        assert isinstance(info.value.__cause__, RecursionError)
        loop = "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}"
        with pytest.raises(ChatTemplateError, match="nested more than"):
            ChatTemplate(loop, {}).render(HI)
    finally:
        sys.setrecursionlimit(limit)
