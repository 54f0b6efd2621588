"""The child side of the adversarial suite: runs a batch of cases (JSON, from a file) in this
process and prints one JSON line per case: {"i", "outcome": "ok" | "family" | "foreign", ...}.

Run as `python runner.py CASES.json WORKDIR` under a deadline and an RLIMIT_AS cap set by the
parent (harness.py). A signal, a hang or anything printed after a foreign exception is the
parent's to judge. RuntimeWarnings are errors here: numpy's overflow warnings were how some
hostile values used to leak out (four warning lines before the error)."""

from __future__ import annotations

import base64
import json
import shutil
import sys
import traceback
import warnings
from pathlib import Path
from typing import Any

FIX = Path(__file__).resolve().parents[1] / "fixtures"


def _copy(base: str, work: Path, i: int) -> Path:
    d = work / f"case{i}"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(FIX / base, d)
    return d


def _edit_json(path: Path, changes: dict[str, Any], deletes: list[str]) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(changes)
    for k in deletes:
        data.pop(k, None)
    path.write_text(json.dumps(data))  # NaN/Infinity are written as such: json.load reads them


def _safetensors_parts(path: Path) -> tuple[bytes, bytes]:
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    return raw[8 : 8 + n], raw[8 + n :]


def _check_generation(m: Any, g: Any, max_tokens: int | None) -> str | None:
    """What a correct result looks like, whatever the options: None if it holds."""
    if not isinstance(g.text, str) or not isinstance(g.tokens, list):
        return "Generation fields have wrong types"
    if any(not isinstance(t, int) or not 0 <= t < m.net.vocab_size for t in g.tokens):
        return f"token outside the vocabulary: {g.tokens[:8]}"
    if max_tokens is not None and len(g.tokens) > max_tokens:
        return f"{len(g.tokens)} tokens for max_tokens={max_tokens}"
    if g.finish_reason not in ("stop", "length"):
        return f"finish_reason {g.finish_reason!r}"
    return None


def run_case(case: dict[str, Any], work: Path, i: int) -> dict[str, Any]:
    import pyrustml

    kind = case["kind"]
    base = case.get("base", "gpt2-tiny-hf")
    if kind == "api":
        m = _model(base)
        kwargs = case["kwargs"]
        g = m.generate(case.get("prompt", "Hello"), **kwargs)
        mt = kwargs.get("max_tokens")
        bad = _check_generation(m, g, mt if isinstance(mt, int) and not isinstance(mt, bool) else None)
        return {"outcome": "wrong", "detail": bad} if bad else {"outcome": "ok"}
    if kind == "chat":
        m = _model("gemma3-tiny")
        if case.get("template") is not None:
            from pyrustml.io.chat_template import ChatTemplate

            tmpl = ChatTemplate(case["template"], {"bos_token": "<bos>"})
            tmpl.render(case["messages"])
            return {"outcome": "ok"}
        g = m.chat(case["messages"], max_tokens=2, temperature=0)
        bad = _check_generation(m, g, 2)
        return {"outcome": "wrong", "detail": bad} if bad else {"outcome": "ok"}
    d = _copy(base, work, i)
    if kind == "json":
        _edit_json(d / case["file"], case.get("changes", {}), case.get("deletes", []))
    elif kind == "st_header":
        _, data = _safetensors_parts(d / "model.safetensors")
        text = case["header"].encode("utf-8", "surrogatepass")
        (d / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + data)
    elif kind == "st_bytes":
        raw = bytearray((d / "model.safetensors").read_bytes())
        for pos, val in case["pokes"]:
            if raw:
                raw[pos % len(raw)] = val
        cut = case.get("truncate")
        if cut is not None:
            raw = raw[: cut % (len(raw) + 1)]
        raw += base64.b64decode(case.get("append", ""))
        (d / "model.safetensors").write_bytes(bytes(raw))
    elif kind == "template_file":
        (d / "chat_template.jinja").write_bytes(base64.b64decode(case["data"]))
    else:
        raise ValueError(f"unknown case kind {kind}")
    m = pyrustml.load(str(d))
    g = m.generate("Hello", max_tokens=3, temperature=0)
    bad = _check_generation(m, g, 3)
    if bad:
        return {"outcome": "wrong", "detail": bad}
    if kind == "template_file" and m.chat_template is not None:
        try:
            m.chat([{"role": "user", "content": "hi"}], max_tokens=1)
        except pyrustml.PyrustmlError as exc:
            return {"outcome": "family", "error": type(exc).__name__, "message": str(exc)[:200]}
    return {"outcome": "ok"}


_MODELS: dict[str, Any] = {}


def _model(name: str) -> Any:
    import pyrustml

    if name not in _MODELS:
        _MODELS[name] = pyrustml.load(str(FIX / name))
    return _MODELS[name]


def _decode(case: Any) -> Any:
    """JSON cannot carry every value the API may be given: tagged values are rebuilt here."""
    if isinstance(case, dict):
        if set(case) == {"__float__"}:
            return float(case["__float__"])
        if set(case) == {"__numpy__"}:
            import numpy as np

            kind, value = case["__numpy__"]
            return getattr(np, kind)(_decode(value))
        if set(case) == {"__tuple__"}:
            return tuple(_decode(v) for v in case["__tuple__"])
        if set(case) == {"__bytes__"}:
            return base64.b64decode(case["__bytes__"])
        return {k: _decode(v) for k, v in case.items()}
    if isinstance(case, list):
        return [_decode(v) for v in case]
    return case


def main() -> None:
    import pyrustml

    cases = json.loads(Path(sys.argv[1]).read_text())
    work = Path(sys.argv[2])
    warnings.simplefilter("error", RuntimeWarning)
    for i, raw_case in enumerate(cases):
        case = _decode(raw_case)
        try:
            res = run_case(case, work, i)
        except pyrustml.PyrustmlError as exc:
            res = {"outcome": "family", "error": type(exc).__name__, "message": str(exc)[:200]}
        except BaseException as exc:  # the finding: anything outside the family
            res = {
                "outcome": "foreign",
                "error": f"{type(exc).__module__}.{type(exc).__name__}",
                "message": str(exc)[:300],
                "traceback": traceback.format_exc()[-1500:],
            }
        res["i"] = i
        print(json.dumps(res), flush=True)
        shutil.rmtree(work / f"case{i}", ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
