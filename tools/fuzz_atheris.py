"""Coverage-guided fuzzing (atheris, libFuzzer) of the two parsers that read strangers' bytes
before anything else: the safetensors header parser and the config reader (config.json through
each architecture's Config, generation_config.json through generation_defaults).

    pip install atheris
    python tools/fuzz_atheris.py header -runs=20000          # or -max_total_time=60
    python tools/fuzz_atheris.py config -runs=20000 [CORPUS_DIR]

Contract: any input either parses or raises a PyrustmlError subclass; anything else (a foreign
exception) is a finding, and libFuzzer stops with the input saved as crash-*. Needs the pure
Python package (PYRUSTML_NO_MYPYC=1 install) for coverage of pyrustml's own code.
"""

from __future__ import annotations

import json
import sys

import atheris

with atheris.instrument_imports():
    from pyrustml.errors import PyrustmlError
    from pyrustml.io import config as config_io
    from pyrustml.io import safetensors as st_io
    from pyrustml.models import gemma3, gpt2

SEED_CONFIGS = [
    {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "n_positions": 128, "vocab_size": 300},
    {"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
     "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 300,
     "rope_parameters": {"full_attention": {"rope_type": "default", "rope_theta": 1e6}}},
]  # fmt: skip


def fuzz_header(data: bytes) -> None:
    """The header bytes as a whole file: 8-byte length, then JSON, then (no) data."""
    try:
        st_io.parse_header("fuzz.safetensors", len(data), data)
    except PyrustmlError:
        pass


KEYS = sorted(
    set(gpt2.CONFIG_KEYS_READ)
    | set(gpt2.CONFIG_KEYS_REFUSED)
    | set(gemma3.CONFIG_KEYS_READ)
    | set(gemma3.CONFIG_KEYS_REFUSED)
    | set(config_io.GENERATION_KEYS)
    | {"do_sample", "n_ctx"}
)
ROPE_TYPES = ["default", "linear", "yarn", "dynamic", ""]


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0) -> object:
    kind = fdp.ConsumeIntInRange(0, 8 if depth < 2 else 5)
    if kind == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 9))
    if kind == 1:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloat()
    if kind == 2:
        return fdp.ConsumeBool()
    if kind == 3:
        return None
    if kind == 4:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 12))
    if kind == 5:
        return fdp.PickValueInList([*ROPE_TYPES, "sliding_attention", "full_attention"])
    if kind == 6:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    keys = ["rope_type", "rope_theta", "factor", "sliding_attention", "full_attention", "type"]
    return {fdp.PickValueInList(keys): _value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}


def fuzz_config(data: bytes) -> None:
    """A seed config with keys the readers know set to fuzzed values, through each reader."""
    fdp = atheris.FuzzedDataProvider(data)
    which = fdp.ConsumeIntInRange(0, 2)
    obj: dict[str, object] = dict(SEED_CONFIGS[which % 2])
    for _ in range(fdp.ConsumeIntInRange(1, 4)):
        obj[fdp.PickValueInList(KEYS)] = _value(fdp)
    try:
        if which == 0:
            gpt2.GPT2Config(config_io.Fields(obj, "config.json"))
        elif which == 1:
            gemma3.Gemma3Config(config_io.Fields(obj, "config.json"))
        else:
            config_io.generation_defaults(config_io.Fields(obj, "generation_config.json"))
    except PyrustmlError:
        pass


def main() -> None:
    target = sys.argv.pop(1) if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else "header"
    fn = {"header": fuzz_header, "config": fuzz_config}[target]
    atheris.Setup(sys.argv, fn)
    atheris.Fuzz()


if __name__ == "__main__":
    json.dumps(SEED_CONFIGS)  # the seeds must stay plain JSON
    main()
