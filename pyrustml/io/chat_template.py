"""Chat templates: the checkpoint's own Jinja template, rendered the way transformers renders it.

Templates come from strangers, so they run in Jinja's immutable sandbox, with the environment
transformers gives them: trim_blocks, lstrip_blocks, loop controls, raise_exception(), a tojson
that keeps non-ASCII text, strftime_now(). The template is chat_template.jinja when the
checkpoint has one, else tokenizer_config.json's chat_template.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from ..errors import ModelFormatError, PyrustmlError


class ChatTemplateError(PyrustmlError):
    """The chat template is missing, malformed, or refused the conversation."""


def _raise_exception(message: str) -> None:
    raise ChatTemplateError(f"the chat template refused the conversation: {message}")


def _tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators: Any = None,
            sort_keys: bool = False) -> str:  # fmt: skip
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _token_text(v: object) -> str | None:
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return str(v["content"])
    return None


class ChatTemplate:
    source: str
    special: dict[str, str]
    _template: Any

    def __init__(self, source: str, tok_cfg: dict[str, Any]) -> None:
        import jinja2
        import jinja2.ext
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        self.source = source
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = _strftime_now
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the chat template does not compile: {exc}") from None
        self.special = {}
        for key in ("bos_token", "eos_token", "unk_token", "pad_token"):
            text = _token_text(tok_cfg.get(key))
            if text is not None:
                self.special[key] = text

    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool = True) -> str:
        import jinja2

        for m in messages:
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
            ):
                raise ValueError("each message must be a dict with string 'role' and 'content'")
        try:
            return str(
                self._template.render(
                    messages=messages, add_generation_prompt=add_generation_prompt, **self.special
                )
            )
        except jinja2.TemplateError as exc:
            raise ChatTemplateError(f"the chat template failed: {exc}") from None


def load_template(directory: str, tok_cfg: dict[str, Any]) -> ChatTemplate | None:
    """The checkpoint's template, or None if it has none."""
    path = os.path.join(directory, "chat_template.jinja")
    if os.path.isfile(path):
        try:
            with open(path, encoding="utf-8") as fh:
                return ChatTemplate(fh.read(), tok_cfg)
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"cannot read chat_template.jinja: {exc}") from None
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
