"""Chat templates: the checkpoint's own Jinja template, rendered the way transformers renders it.

Templates come from strangers, so they run in Jinja's immutable sandbox, with the environment
transformers gives them: trim_blocks, lstrip_blocks, loop controls, raise_exception(), a tojson
that keeps non-ASCII text, strftime_now(). The template is chat_template.jinja when the
checkpoint has one, else tokenizer_config.json's chat_template.

A template is data from a stranger that runs as code, so it is bounded:
- it compiles lazily, when chat() first needs it: Jinja folds constant expressions while it
  compiles, and a template that does not compile (or is not UTF-8) must not block plain
  generation;
- `**`, `*`, `+` and `%` go through checks (intercepted, so Jinja cannot fold them at compile
  time either): no power with a result past MAX_POWER_DIGITS digits, no string or list past
  MAX_STRING_CHARS items; `~` (concatenation) has the same bound;
- every call and filter is checked before it runs: an integer argument above MAX_STRING_CHARS
  (a width for center/ljust/indent/format, a count) is refused, replace() and join() are
  sized before they build their result, format widths are read from the format string, and a
  filter's result is sized after; lipsum() is removed (a Python loop outside the time bound);
- rendering stops after RENDER_SECONDS (a trace on the template's own frames checks the clock:
  nested range() loops, exponential macro recursion) and after MAX_RENDER_CHARS of output;
- whatever a render raises (ZeroDivisionError, RecursionError, MemoryError, a TypeError from
  raise_exception(5), ...) becomes a ChatTemplateError whose __cause__ is the original, and the
  message says which bound was hit when one was.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from types import FrameType
from typing import Any, Final

from ..errors import ChatTemplateError, PromptTypeError, UnsupportedModelError

__all__ = ["ChatTemplate", "ChatTemplateError", "load_template"]

RENDER_SECONDS: Final = 5.0
MAX_RENDER_CHARS: Final = 8_000_000  # a whole long-context conversation is far less
MAX_STRING_CHARS: Final = 8_000_000  # any one string or list a template builds
MAX_POWER_DIGITS: Final = 1000
# Calls (macros, loop(), methods) nested inside one another. Real templates nest a few deep. Each
# level passes through C (Jinja's Macro.__call__, the sandbox's call) and so costs C stack, which
# Python's recursion limit does not bound once raised: a recursive macro overflowed the stack.
MAX_CALL_DEPTH: Final = 100
_depth = threading.local()  # per thread: renders run in worker threads at once
TEMPLATE_FILE: Final = "<template>"  # the filename Jinja gives code compiled from a string


def _raise_exception(message: object) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {str(message)[:500]}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:  # fmt: skip
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    if not isinstance(fmt, str):
        raise TypeError(f"strftime_now() takes a format string, got {type(fmt).__name__}")
    return datetime.now().strftime(fmt)


def _token_text(v: object) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return str(v["content"])
    return None


class _Bound(Exception):
    """A render bound was hit; carries the message ChatTemplateError shows."""


def _size(v: object) -> int:
    return len(v) if isinstance(v, str | list | tuple) else 0


def _check_power(left: object, right: object) -> None:
    if isinstance(left, int | float) and isinstance(right, int | float):
        base = abs(float(left)) if not isinstance(left, int) or left.bit_length() < 1000 else math.inf
        if base > 1 and right > 0:
            digits = float(right) * (math.log10(base) if math.isfinite(base) else 1e9)
            if digits > MAX_POWER_DIGITS:
                raise _Bound(f"a power with about {digits:.3g} digits (the bound is {MAX_POWER_DIGITS})")


def _check_product(left: object, right: object) -> None:
    for seq, n in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(n, int) and _size(seq) * n > MAX_STRING_CHARS:
            raise _Bound(f"a string or list of {_size(seq) * n} items (the bound is {MAX_STRING_CHARS})")


def _bounded_join(seq: Iterable[Any]) -> str:
    parts = [str(x) for x in seq]
    n = sum(len(p) for p in parts)
    if n > MAX_STRING_CHARS:
        raise _Bound(f"a string of {n} characters (the bound is {MAX_STRING_CHARS})")
    return "".join(parts)


_WIDTH = re.compile(r"(\d{7,})")  # a width or precision of 7+ digits in a format string


def _check_args(what: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    for v in (*args, *kwargs.values()):
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_STRING_CHARS:
            raise _Bound(f"{what} with an argument of {str(v)[:30]} (the bound is {MAX_STRING_CHARS})")
        if isinstance(v, str) and len(v) > MAX_STRING_CHARS:
            raise _Bound(f"{what} with a string of {len(v)} characters")


def _check_format(fmt: object) -> None:
    if isinstance(fmt, str) and _WIDTH.search(fmt):
        raise _Bound("a format width of 7 or more digits")


def _check_replace(s: object, old: object, new: object) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        hits = s.count(old) if old else len(s) + 1
        if len(s) + hits * (len(new) - len(old)) > MAX_STRING_CHARS:
            raise _Bound(f"a replace() result of {len(s) + hits * (len(new) - len(old))} characters")


def _check_method(obj: Any, args: tuple[Any, ...]) -> None:
    """str methods that build a string from their arguments, sized before they run."""
    # The sandbox hands str.format out wrapped (functools.update_wrapper keeps __wrapped__).
    owner = getattr(getattr(obj, "__wrapped__", obj), "__self__", None)
    name = getattr(obj, "__name__", "")
    if isinstance(owner, str):
        if name == "replace" and len(args) >= 2:
            _check_replace(owner, args[0], args[1])
        elif name == "join" and args:
            _bounded_join(args[0]) if isinstance(args[0], list | tuple) else None
        elif name in ("format", "format_map"):
            _check_format(owner)


def _guard_filter(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _check_args(f"the filter {name}", args[1:] if name == "join" else args, kwargs)
        values = [a for a in args if not hasattr(a, "environment")]  # skip a passed context/env
        if name == "replace" and len(values) >= 3:
            _check_replace(str(values[0]), values[1], values[2])
        if name == "format" and values:
            _check_format(values[0])
        if name == "indent" and values and isinstance(values[0], str):
            width = values[1] if len(values) > 1 else kwargs.get("width", 4)
            pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
            if len(values[0]) + (values[0].count("\n") + 1) * pad > MAX_STRING_CHARS:
                raise _Bound("an indent() result beyond the string bound")
        if name == "join" and values and isinstance(values[0], list | tuple):
            _bounded_join(values[0])
        result = fn(*args, **kwargs)
        if isinstance(result, str | list | tuple) and len(result) > MAX_STRING_CHARS:
            raise _Bound(f"the filter {name} made {len(result)} items")
        return result

    guarded.__name__ = getattr(fn, "__name__", name)
    pass_arg = getattr(fn, "jinja_pass_arg", None)
    if pass_arg is not None:  # pass_context / pass_environment / pass_eval_context
        guarded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return guarded


def _environment() -> Any:
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        # Intercepted operators are also never constant-folded at compile time.
        intercepted_binops = frozenset({"**", "*", "+", "%"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**":
                _check_power(left, right)
            elif operator == "*":
                _check_product(left, right)
            elif operator == "+" and _size(left) + _size(right) > MAX_STRING_CHARS:
                raise _Bound(f"a string or list of {_size(left) + _size(right)} items")
            elif operator == "%":
                _check_format(left)
            return super().call_binop(context, operator, left, right)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            _check_args("a call", args, kwargs)
            _check_method(__obj, args)
            depth = getattr(_depth, "n", 0) + 1
            if depth > MAX_CALL_DEPTH:
                raise RecursionError(f"calls nested more than {MAX_CALL_DEPTH} deep")
            _depth.n = depth
            try:
                return super().call(__context, __obj, *args, **kwargs)
            finally:
                _depth.n = depth - 1

    env = BoundedSandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    for name, fn in list(env.filters.items()):
        env.filters[name] = _guard_filter(name, fn)
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    env.globals.pop("lipsum", None)
    return env


class _Deadline:
    """A trace on the template's frames only: every line it runs checks the clock."""

    end: float
    hit: bool

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.hit = False

    def global_trace(self, frame: FrameType, event: str, arg: object) -> Callable[..., Any] | None:
        if frame.f_code.co_filename == TEMPLATE_FILE:
            self._check()
            return self.local_trace
        return None

    def local_trace(self, frame: FrameType, event: str, arg: object) -> Callable[..., Any] | None:
        if event == "line":
            self._check()
        return self.local_trace

    def _check(self) -> None:
        if time.monotonic() > self.end:
            self.hit = True
            raise _Bound("the render time limit")


def _parts_text(content: list[dict[str, Any]]) -> str:
    return "".join(str(p["text"]) for p in content)


def check_messages(messages: object) -> list[dict[str, Any]]:
    """Messages as OpenAI's API takes them, copied into plain dicts: a list of objects with a
    string role and content that is a string or a list of {"type": "text", "text": ...} parts.
    Image and audio parts are refused: these models read text only."""
    if not isinstance(messages, list | tuple):
        raise PromptTypeError(
            f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}"
        )
    if not messages:
        raise PromptTypeError("messages is empty: give at least one {'role', 'content'} message")
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise PromptTypeError(f"messages[{i}] must be a dict with a string 'role', got {str(m)[:60]}")
        content = m.get("content")
        copy = dict(m)
        if isinstance(content, list | tuple):
            parts: list[dict[str, Any]] = []
            for j, p in enumerate(content):
                kind = p.get("type") if isinstance(p, dict) else None
                if kind == "text" and isinstance(p.get("text"), str):
                    parts.append({"type": "text", "text": p["text"]})
                elif kind in ("image", "image_url", "input_image", "input_audio", "audio", "video"):
                    raise UnsupportedModelError(
                        f"messages[{i}]['content'][{j}] is a {kind} part: this model reads text only"
                    )
                else:
                    raise PromptTypeError(
                        f"messages[{i}]['content'][{j}] must be {{'type': 'text', 'text': str}}, "
                        f"got {str(p)[:60]}"
                    )
            copy["content"] = parts
        elif not isinstance(content, str):
            raise PromptTypeError(
                f"messages[{i}]['content'] must be a string or a list of text parts, "
                f"got {type(content).__name__}"
            )
        out.append(copy)
    return out


class ChatTemplate:
    source: str
    special: dict[str, str]
    _template: Any  # the compiled template, once compiled
    _error: ChatTemplateError | None  # why it cannot be used (read or compile error), once known
    _typed_parts: bool  # the template handles list content itself (Gemma's does)

    def __init__(self, source: str, tok_cfg: dict[str, Any], error: str | None = None) -> None:
        self.source = source
        self._template = None
        self._error = ChatTemplateError(error) if error else None
        # A template that looks at parts' 'text' handles list content; others get the joined text,
        # so that a plain {{ message['content'] }} never prints a Python list.
        self._typed_parts = "'text'" in source or '"text"' in source
        self.special = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            text = _token_text(tok_cfg.get(key))
            if text is not None:
                self.special[key] = text

    def compiled(self) -> Any:
        """The compiled template; compiles it on first use. ChatTemplateError if it cannot be."""
        if self._error is not None:
            raise self._error
        if self._template is None:
            try:
                env = _environment()
                tmpl = env.from_string(self.source)
            except _Bound as exc:
                self._error = ChatTemplateError(f"the chat template does not compile: it hit {exc}")
                raise self._error from exc
            except Exception as exc:  # TemplateSyntaxError, RecursionError, MemoryError, ...
                self._error = ChatTemplateError(
                    f"the chat template does not compile: {type(exc).__name__}: {str(exc)[:300]}"
                )
                raise self._error from exc
            # `~` joins through these names in the compiled module's namespace: bound them.
            ns = tmpl.root_render_func.__globals__
            ns["str_join"] = _bounded_join
            markup_join = ns.get("markup_join")
            if markup_join is not None:
                ns["markup_join"] = lambda seq: markup_join([_bounded_join([x]) for x in seq])
            self._template = tmpl
        return self._template

    def render(self, messages: object, *, add_generation_prompt: bool = True) -> str:
        msgs = check_messages(messages)
        if not isinstance(add_generation_prompt, bool):
            raise PromptTypeError(
                f"add_generation_prompt must be True or False, got {add_generation_prompt!r}"
            )
        if not self._typed_parts:
            for m in msgs:
                if isinstance(m["content"], list):
                    m["content"] = _parts_text(m["content"])
        tmpl = self.compiled()
        deadline = _Deadline(RENDER_SECONDS)
        previous = sys.gettrace()
        out: list[str] = []
        n = 0
        try:
            sys.settrace(deadline.global_trace)
            for piece in tmpl.generate(
                messages=msgs, add_generation_prompt=add_generation_prompt, **self.special
            ):
                n += len(piece)
                if n > MAX_RENDER_CHARS:
                    raise _Bound(f"the output limit of {MAX_RENDER_CHARS} characters")
                out.append(piece)
        except ChatTemplateError:
            raise
        except _Bound as exc:
            raise ChatTemplateError(f"the chat template was stopped: it hit {exc}") from exc
        except Exception as exc:
            raise ChatTemplateError(
                f"the chat template failed: {type(exc).__name__}: {str(exc)[:300]}"
            ) from exc
        finally:
            sys.settrace(previous)
        return "".join(out)


def load_template(directory: str, tok_cfg: dict[str, Any]) -> ChatTemplate | None:
    """The checkpoint's template, or None if it has none. Nothing is compiled here, and a
    template file that cannot be read is an error only when chat() needs it."""
    path = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as fh:
                return ChatTemplate(fh.read(), tok_cfg)
        except (OSError, UnicodeDecodeError, MemoryError) as exc:
            return ChatTemplate("", tok_cfg, error=f"cannot read chat_template.jinja: {str(exc)[:200]}")
    src = tok_cfg.get("chat_template")
    if isinstance(src, str):
        return ChatTemplate(src, tok_cfg)
    if isinstance(src, list):  # named templates: [{"name": "default", "template": ...}, ...]
        for entry in src:
            if (
                isinstance(entry, dict)
                and entry.get("name") == "default"
                and isinstance(entry.get("template"), str)
            ):
                return ChatTemplate(str(entry["template"]), tok_cfg)
    return None
