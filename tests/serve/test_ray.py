"""Ray Serve: two replicas of a tiny model behind Ray's HTTP proxy on 127.0.0.1.

Marked `ray` (deselected by default): needs `pip install '.[ray]'`; .ci/run runs `pytest -m ray`."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from serve_harness import FIXTURES, free_port

pytestmark = pytest.mark.ray

GPT2 = "gpt2-tiny-hf"
PROMPTS = ["The quick brown fox", "Once upon a time", "hello world", "In the beginning"]


@pytest.fixture(scope="module")
def ray_url() -> Iterator[str]:
    ray = pytest.importorskip("ray")
    from ray import serve

    from pyrustml.serve.ray import build_app

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(
            build_app(str(FIXTURES / GPT2), replicas=2, threads_per_replica=1, parallel=4),
            name="pyrustml",
            route_prefix="/",
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def test_two_replicas_serve_and_equal_solo(ray_url: str) -> None:
    import pyrustml

    lib = pyrustml.load(str(FIXTURES / GPT2), threads=1)
    reqs = []
    for i in range(8):
        body = {"model": GPT2, "prompt": PROMPTS[i % 4], "max_tokens": 10 + i, "ignore_eos": True}
        body |= {"temperature": 0} if i % 2 == 0 else {"temperature": 1.0, "seed": i}
        reqs.append(body)
    want = [
        lib.generate(
            r["prompt"],
            max_tokens=r["max_tokens"],
            temperature=r["temperature"],
            seed=r.get("seed"),
            ignore_eos=True,
        ).text
        for r in reqs
    ]

    def post(body: dict[str, object]) -> tuple[str, str]:
        r = httpx.post(ray_url + "/v1/completions", json=body, timeout=120)
        assert r.status_code == 200, r.text
        return r.json()["choices"][0]["text"], r.headers["x-pyrustml-instance"]

    instances: set[str] = set()
    for _ in range(5):  # Ray's router picks replicas at random: a few rounds see both
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(post, reqs))
        assert [text for text, _ in results] == want
        instances |= {inst for _, inst in results}
        if len(instances) == 2:
            break
    assert len(instances) == 2, instances


def test_streaming_and_models_through_the_proxy(ray_url: str) -> None:
    import openai

    c = openai.OpenAI(base_url=ray_url + "/v1", api_key="unused", max_retries=0, timeout=120)
    assert [m.id for m in c.models.list().data] == [GPT2]
    args = {"model": GPT2, "prompt": "hello world", "max_tokens": 12, "temperature": 0}
    whole = c.completions.create(**args)  # type: ignore[call-overload]
    streamed = "".join(ch.choices[0].text for ch in c.completions.create(stream=True, **args) if ch.choices)  # type: ignore[call-overload]
    assert streamed == whole.choices[0].text


def test_build_app_refuses_an_unknown_option_before_ray_starts_anything() -> None:
    pytest.importorskip("ray")
    from pyrustml.errors import OptionError
    from pyrustml.serve.ray import build_app

    for bad in ({"threads": 2}, {"paralel": 4}):
        with pytest.raises(OptionError, match=f"unknown option {next(iter(bad))!r}"):
            build_app(str(FIXTURES / GPT2), **bad)  # type: ignore[arg-type]
