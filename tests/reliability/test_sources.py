"""Where a checkpoint comes from: `~` and os.PathLike sources, a file where a directory belongs,
a hub cache that cannot be used, and wrong-typed load() arguments: all family errors or loads."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from child import child_env
from support import FIX

import pyrustml
from pyrustml.errors import ModelNotFoundError, OptionError


def test_home_relative_and_pathlike_sources_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(FIX / "gpt2-tiny-hf", tmp_path / "m")
    want = pyrustml.load(str(tmp_path / "m")).generate("Hi", max_tokens=3, temperature=0).tokens
    assert pyrustml.load("~/m").generate("Hi", max_tokens=3, temperature=0).tokens == want
    assert (
        pyrustml.load(pathlib.Path(tmp_path / "m")).generate("Hi", max_tokens=3, temperature=0).tokens == want
    )
    assert pyrustml.load(pathlib.Path("~/m")).generate("Hi", max_tokens=3, temperature=0).tokens == want


@pytest.mark.parametrize(("file", "says"), [("model.safetensors", "pass the directory"), ("x.gguf", "GGUF")])
def test_a_file_source_says_what_to_pass(tmp_path: Path, file: str, says: str) -> None:
    (tmp_path / file).write_bytes(b"\0" * 16)
    with pytest.raises(ModelNotFoundError, match=says):
        pyrustml.load(str(tmp_path / file))


@pytest.mark.parametrize(
    "kwargs",
    [{"source": None}, {"source": 5}, {"quant": None}, {"threads": "2"}, {"revision": 5}, {"threads": 2.5}],
)
def test_wrong_typed_load_arguments_are_option_errors(kwargs: dict[str, object]) -> None:
    args = {"source": str(FIX / "gpt2-tiny-hf"), **kwargs}
    source = args.pop("source")
    with pytest.raises(OptionError, match=next(iter(kwargs))):
        pyrustml.load(source, **args)  # type: ignore[arg-type]


PROBE = r"""
import pyrustml
try:
    pyrustml.load("some-org/some-model")
except pyrustml.PyrustmlError as e:
    print(type(e).__name__)
"""


@pytest.mark.parametrize("var", ["HF_HOME", "HF_HUB_CACHE"])
@pytest.mark.parametrize("offline", ["0", "1"])
def test_a_hub_cache_under_a_regular_file_is_a_family_error(tmp_path: Path, var: str, offline: str) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(
            **{
                var: str(blocker / "sub"),
                "HF_HUB_OFFLINE": offline,
                "HF_HUB_ETAG_TIMEOUT": "2",
                "HF_HUB_DOWNLOAD_TIMEOUT": "2",
            }
        ),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "ModelNotFoundError", (r.stdout, r.stderr[-1000:])
