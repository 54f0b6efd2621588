"""Serving benchmark: C concurrent streaming clients against the real HTTP server.

    python tools/bench_serve.py --model /work/peers/gpt2-random --threads 2
    python tools/bench_serve.py --model /work/peers/gpt2-random --threads 2 \\
        --llama-server /work/peers/bin/llama-server --gguf /work/peers/gguf/gpt2-q8_0.gguf

For each C in --concurrency (default 1 2 4 8 16), C clients each send a different ~128-token
prompt to /v1/completions with stream=true, temperature 0, ignore_eos and max_tokens 128, all at
once. pyrustml-serve runs once with --parallel max(C); llama-server (when given) is started with
`--parallel C` for each C, with the same client (the official openai AsyncOpenAI) and prompts.
Every round has prompts of its own (no prefix left in a cache by an earlier round), and one
short request with an unrelated prompt warms the server up before it. --library-check N then
alternates N single streams through the server (read by the openai client, plain httpx and a lean
stdlib client) with N library generations in-process.

Reported per server and C:
- aggregate tok/s: all generated tokens / (last stream's end - first request's start)
- per-stream tok/s: mean over streams of (tokens - 1) / (last chunk - first chunk)
- TTFT p50/p99: request sent -> first content chunk
- ITL p50/p99: gaps between content chunks (a chunk is one token unless text had to wait
  for a complete UTF-8 character, which random-weight models do now and then).
- steady ITL p50/p99: the same over the gaps that begin after every stream's first token, when
  no prompt is being read any more (the ITL above also holds the steps that carried prompt
  chunks beside the decoding streams).
- tokens/chunk: generated tokens over content chunks (1.00 when no text was held back; a chunk
  of two tokens is one gap of two steps).
Tokens are counted from the usage the server reports (stream_options.include_usage), else
max_tokens (ignore_eos makes every stream that long).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import openai

WORDS = (
    "the of and to in is was for on that with as by at from his her an which were are this be had "
    "river mountain city winter light garden music engine silver market window harbor letter story "
    "quiet bright ancient northern simple careful distant golden narrow sudden gentle early late "
    "walked spoke found built carried opened watched followed remembered answered"
).split()


@dataclass
class Stream:
    sent: float = 0.0
    chunks: list[float] = field(default_factory=list)  # arrival time of each content chunk
    tokens: int = 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def prompts(model_dir: str, n: int, tokens: int) -> list[str]:
    """n different prompts of about `tokens` tokens each (counted with the model's tokenizer)."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    out = []
    for i in range(n):
        rng = random.Random(i)
        words = [f"Story {i}:"]
        while len(tok.encode(" ".join(words), add_special_tokens=False).ids) < tokens:
            words.append(rng.choice(WORDS))
        out.append(" ".join(words))
    return out


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} while starting")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


async def one(client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int) -> Stream:
    s = Stream(sent=time.perf_counter())
    stream = await client.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"ignore_eos": True},
    )
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].text:
            s.chunks.append(time.perf_counter())
        if chunk.usage is not None:
            s.tokens = chunk.usage.completion_tokens
    if not s.tokens:
        s.tokens = max_tokens
    return s


async def round_(url: str, model: str, texts: list[str], max_tokens: int) -> list[Stream]:
    limits = httpx.Limits(max_connections=len(texts) + 4, max_keepalive_connections=len(texts) + 4)
    async with openai.AsyncOpenAI(
        base_url=url + "/v1",
        api_key=os.environ.get("PYRUSTML_API_KEY", "unused"),
        max_retries=0,
        timeout=600.0,
        http_client=httpx.AsyncClient(limits=limits, timeout=600.0),
    ) as client:
        await one(client, model, "A warm-up request, sharing no prefix with the prompts.", 4)
        return await asyncio.gather(*(one(client, model, t, max_tokens) for t in texts))


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, round(q / 100 * (len(v) - 1)))]


def summarize(streams: list[Stream]) -> dict[str, float]:
    start = min(s.sent for s in streams)
    end = max(s.chunks[-1] for s in streams if s.chunks)
    total = sum(s.tokens for s in streams)
    per_stream = [
        (s.tokens - 1) / (s.chunks[-1] - s.chunks[0]) for s in streams if len(s.chunks) > 1 and s.tokens > 1
    ]
    ttft = [(s.chunks[0] - s.sent) * 1000 for s in streams if s.chunks]
    itl = [(b - a) * 1000 for s in streams for a, b in zip(s.chunks, s.chunks[1:], strict=False)]
    all_in = max(s.chunks[0] for s in streams if s.chunks)  # the last stream's first token
    steady = [
        (b - a) * 1000 for s in streams for a, b in zip(s.chunks, s.chunks[1:], strict=False) if a >= all_in
    ]
    n_chunks = sum(len(s.chunks) for s in streams)
    return {
        "aggregate_tok_s": total / (end - start),
        "per_stream_tok_s": statistics.mean(per_stream) if per_stream else float("nan"),
        "ttft_p50_ms": pct(ttft, 50),
        "ttft_p99_ms": pct(ttft, 99),
        "itl_p50_ms": pct(itl, 50),
        "itl_p99_ms": pct(itl, 99),
        "steady_itl_p50_ms": pct(steady, 50),
        "steady_itl_p99_ms": pct(steady, 99),
        "tokens_per_chunk": total / n_chunks if n_chunks else float("nan"),
        "tokens": float(total),
    }


def run_pyrustml(args: argparse.Namespace, texts: list[str]) -> dict[int, dict[str, float]]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "pyrustml.serve", args.model, "--port", str(port),
        "--parallel", str(max(args.concurrency)), "--threads", str(args.threads),
        "--ctx", str(args.ctx), "--log-level", "warning", "--served-model-name", "bench",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc)
        out = {
            c: summarize(asyncio.run(round_(url, "bench", batch, args.gen_tokens)))
            for c, batch in zip(args.concurrency, rounds(args, texts), strict=True)
        }
        if args.library_check:
            library_check(args, url)
        return out
    finally:
        stop(proc)


def rounds(args: argparse.Namespace, texts: list[str]) -> list[list[str]]:
    """Each round its own prompts: no round reuses a prefix an earlier one left in a cache."""
    out, i = [], 0
    for c in args.concurrency:
        out.append(texts[i : i + c])
        i += c
    return out


def httpx_stream_tok_s(url: str, prompt: str, max_tokens: int) -> float:
    """One stream read with plain httpx, each SSE line parsed with json: a client whose own CPU
    per token is under half the openai client's."""
    body = {
        "model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "ignore_eos": True,
    }  # fmt: skip
    chunks: list[float] = []
    with httpx.Client(timeout=600.0) as c, c.stream("POST", url + "/v1/completions", json=body) as r:
        for line in r.iter_lines():
            if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["text"]:
                chunks.append(time.perf_counter())
    return (max_tokens - 1) / (chunks[-1] - chunks[0])


def lean_stream_tok_s(url: str, prompt: str, max_tokens: int) -> float:
    """One stream read with the standard library's http.client, one read1() per arrival and no
    JSON parsing (the chunks are counted by their "text" field): a client whose CPU per token is
    a few tens of microseconds, so the figure shows the server's own cost. On a 2-core host the
    client runs on the cores the decode uses: every microsecond it spends is taken from the step."""
    body = json.dumps({
        "model": "bench", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "stream": True, "ignore_eos": True,
    }).encode()  # fmt: skip
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    arrivals: list[tuple[float, int]] = []
    while True:
        data = r.read1(65536)
        if not data:
            break
        n = data.count(b'"text":"')  # chunks in this read; the finish chunk has text "" too
        if n:
            arrivals.append((time.perf_counter(), n))
    conn.close()
    # The first chunk's arrival starts the clock; the finish chunk (no token) is not counted.
    tokens = sum(n for _, n in arrivals) - 1
    return (tokens - 1) / (arrivals[-1][0] - arrivals[0][0])


def library_check(args: argparse.Namespace, url: str) -> None:
    """One stream through the server against the library's own decode rate, alternating
    (paired: the machine's noise hits all alike); fresh prompts each time. The server is read
    by the openai client (as in the rounds above), by plain httpx, and by a lean stdlib client."""
    import pyrustml

    model = pyrustml.load(args.model, threads=args.threads)
    texts = prompts(args.model, 4 * args.library_check + 100, args.prompt_tokens)[100:]
    server, raw, lean, library = [], [], [], []
    for i in range(args.library_check):
        s = summarize(asyncio.run(round_(url, "bench", [texts[4 * i]], args.gen_tokens)))
        server.append(s["per_stream_tok_s"])
        raw.append(httpx_stream_tok_s(url, texts[4 * i + 1], args.gen_tokens))
        lean.append(lean_stream_tok_s(url, texts[4 * i + 2], args.gen_tokens))
        g = model.generate(texts[4 * i + 3], max_tokens=args.gen_tokens, temperature=0, ignore_eos=True)
        library.append(g.timings.as_dict()["eval_tok_per_s"])
    model.close()
    med = statistics.median
    ms, mr, mn, ml = med(server), med(raw), med(lean), med(library)
    print(
        f"single stream, {args.library_check} alternating rounds (median tok/s): server with the "
        f"openai client {ms:.1f}, with plain httpx {mr:.1f}, with the lean client {mn:.1f}, library "
        f"{ml:.1f}; server / library = {ms / ml:.3f} (openai client), {mr / ml:.3f} (plain httpx), "
        f"{mn / ml:.3f} (lean client)"
    )


def run_llama(args: argparse.Namespace, texts: list[str]) -> dict[int, dict[str, float]]:
    out = {}
    for c, batch in zip(args.concurrency, rounds(args, texts), strict=True):
        port = free_port()
        cmd = [
            args.llama_server, "-m", args.gguf, "--host", "127.0.0.1", "--port", str(port),
            "--parallel", str(c), "-c", str(c * args.ctx), "-t", str(args.threads), "-tb", str(args.threads),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, proc)
            out[c] = summarize(asyncio.run(round_(url, "bench", batch, args.gen_tokens)))
        finally:
            stop(proc)
    return out


def table(name: str, results: dict[int, dict[str, float]]) -> str:
    rows = [
        f"| {name} | C | aggregate tok/s | per-stream tok/s | TTFT p50 ms | TTFT p99 ms "
        "| ITL p50 ms | ITL p99 ms | steady ITL p50 ms | steady ITL p99 ms | tokens/chunk |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = results[min(results)]["aggregate_tok_s"]
    for c, r in sorted(results.items()):
        rows.append(
            f"| | {c} | {r['aggregate_tok_s']:.1f} ({r['aggregate_tok_s'] / base:.2f}x) | "
            f"{r['per_stream_tok_s']:.1f} | {r['ttft_p50_ms']:.0f} | {r['ttft_p99_ms']:.0f} | "
            f"{r['itl_p50_ms']:.1f} | {r['itl_p99_ms']:.1f} | {r['steady_itl_p50_ms']:.1f} | "
            f"{r['steady_itl_p99_ms']:.1f} | {r['tokens_per_chunk']:.2f} |"
        )
    return "\n".join(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="pyrustml checkpoint directory")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--prompt-tokens", type=int, default=128)
    p.add_argument("--gen-tokens", type=int, default=128)
    p.add_argument("--ctx", type=int, default=512, help="context per sequence (both servers)")
    p.add_argument("--llama-server", default=None, help="llama-server binary: measure it too")
    p.add_argument("--gguf", default=None, help="the same model as a GGUF, for --llama-server")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.add_argument(
        "--library-check",
        type=int,
        default=0,
        metavar="N",
        help="then N alternating pairs: one stream through the server vs the library in-process",
    )
    args = p.parse_args()
    if (args.llama_server is None) != (args.gguf is None):
        p.error("--llama-server and --gguf go together")
    texts = prompts(args.model, sum(args.concurrency), args.prompt_tokens)
    results = {"pyrustml": run_pyrustml(args, texts)}
    if args.llama_server:
        results["llama-server"] = run_llama(args, texts)
    # One home for machine facts; imported late, as pyrustml is elsewhere in this client.
    from pyrustml.perf.bench import cpu_model

    print(f"\n{cpu_model()}, {os.cpu_count()} CPUs visible, {args.threads} threads; model {args.model}; "
          f"~{args.prompt_tokens}-token prompts, {args.gen_tokens} tokens each, ignore_eos\n")  # fmt: skip
    for name, r in results.items():
        print(table(name, r) + "\n")
    if "llama-server" in results:
        for c in args.concurrency:
            ratio = results["pyrustml"][c]["aggregate_tok_s"] / results["llama-server"][c]["aggregate_tok_s"]
            print(f"C={c}: pyrustml / llama-server aggregate = {ratio:.2f}x")
    if args.json:
        Path(args.json).write_text(
            json.dumps({k: {str(c): v for c, v in r.items()} for k, r in results.items()}, indent=1)
        )


if __name__ == "__main__":
    main()
