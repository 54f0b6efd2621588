"""NaN or Inf logits at run time: a NumericalError naming the step, never a garbage token, and
the model stays usable."""

from __future__ import annotations

import numpy as np
import pytest
from support import FIX

import pyrustml
from pyrustml.errors import NumericalError, PyrustmlError


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": 0.0},  # the fused lm_head argmax
        {"temperature": 0.0, "repetition_penalty": 1.3},  # greedy over the logits in Python
        {"temperature": 0.8, "seed": 1},  # whole distribution
        {"temperature": 0.8, "top_k": 5, "seed": 1},  # candidates from libq8
        {"temperature": 0.8, "top_p": 0.9, "seed": 1},
    ],
)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_logits_raise_and_name_the_step(options: dict[str, float], bad: float) -> None:
    model = pyrustml.load(str(FIX / "gpt2-tiny-hf"))
    clean = model.generate("Hello", max_tokens=4, temperature=0.0).tokens
    saved = model.net.lnf_b.copy()
    model.net.lnf_b[3] = bad  # the final norm's bias: every logit turns non-finite
    with pytest.raises(NumericalError, match=r"NaN|Inf") as err:
        model.generate("Hello", max_tokens=4, **options)
    assert "generation step 1" in str(err.value)
    assert isinstance(err.value, PyrustmlError)
    model.net.lnf_b[:] = saved
    assert model.generate("Hello", max_tokens=4, temperature=0.0).tokens == clean
