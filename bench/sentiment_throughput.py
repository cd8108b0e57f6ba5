"""Texts/s of our sentiment server (micro-batched, length-sorted) against a naive
``transformers.pipeline("text-classification")`` on the same model and texts, in the same run, plus the
p99 latency of single-text requests under 32 concurrent clients. On CPU it measures every backend
(float32 torch, bf16 torch, torch int8 dynamic quantisation, ONNX Runtime float32 and int8; speed and held-out
accuracy on every held-out test text, scored in random batches of 64 as the server forms them) and
counts the fastest whose accuracy is at most half a point below float32 torch.

    .venv/bin/python bench/sentiment_throughput.py [--data-dir var/sentiment] [--texts 512]

For a one-core comparison set CRM_SENTIMENT_THREADS=1 (the servers' forwards) and OMP_NUM_THREADS=1 (the
naive pipeline's torch) in the environment.

Serves ``--model`` or else what the server would pick in <data-dir>/models: the newest ensemble or
fine-tuned model, MiniLM or MPNet (an ensemble's server also runs its n-gram model on every text; the
naive pipeline runs its fine-tuned network alone). Without one (fresh checkout) it saves the base MiniLM
with an untrained 2-class head: same architecture, same cost. Writes bench/results/sentiment_throughput.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from services.sentiment import data
from services.sentiment.model import (
    CPU_BACKENDS,
    ENGLISH_ENSEMBLE_KINDS,
    ENGLISH_FINETUNED_KINDS,
    cpu_has_amx,
    list_models,
    load_network,
    predict_in_server_batches,
    read_metadata,
    save_untrained_head,
)

RESULTS = Path(__file__).parent / "results" / "sentiment_throughput.json"
EQUAL_ACCURACY = 0.005  # a backend may be this much less accurate than float32 torch and still count
ROOT = Path(__file__).resolve().parent.parent


def model_dir_for(data_dir: Path) -> Path:
    """The newest ensemble or fine-tuned model (what the server serves by default)."""
    found = list_models(data_dir / "models", *ENGLISH_ENSEMBLE_KINDS, *ENGLISH_FINETUNED_KINDS)
    return found[0] if found else save_untrained_head(data_dir / "models")


def device_name() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)}"
    model = ""
    if Path("/proc/cpuinfo").exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ]
        model = f"{names[0]}, " if names else ""
    amx = "AMX" if cpu_has_amx() else "no AMX"
    return f"cpu ({model}{amx}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()})"


def naive_pipeline(model_dir: Path, texts: list[str], max_length: int, warmup: list[str]) -> float:
    """One text per call, as most code does it."""
    from transformers import pipeline

    pipe = pipeline(
        "text-classification",
        model=str(model_dir),
        tokenizer=str(model_dir),
        device=0 if device_name().startswith("cuda") else -1,
        truncation=True,
        max_length=max_length,
    )
    for text in warmup:  # the same warm-up texts as the servers get, one per call
        pipe(text)
    started = time.perf_counter()
    for text in texts:
        pipe(text)
    return len(texts) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, data_dir: Path, model_dir: Path, backend: str) -> None:
        self.port = free_port()
        env = dict(
            os.environ,
            CRM_SENTIMENT_DATA_DIR=str(data_dir),
            CRM_SENTIMENT_MODEL_VERSION=model_dir.name,
            CRM_SENTIMENT_CONSUME_EVENTS="false",
            CRM_SENTIMENT_CPU_BACKEND=backend,
            CRM_SENTIMENT_MAX_BATCH_SIZE="64",
            CRM_SENTIMENT_MAX_WAIT_MS="4",
            CRM_LOG_LEVEL="WARNING",
        )
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "services.sentiment.app:create_app",
                "--factory",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout_s: float = 600) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError("server exited")
            time.sleep(0.5)
        raise TimeoutError("server not ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def server_throughput(url: str, texts: list[str], clients: int = 32, per_request: int = 8) -> float:
    import httpx

    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for chunk in chunks:
        queue.put_nowait(chunk)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)
    ) as client:
        await client.post("/sentiment", json={"texts": texts[:8]})  # warm-up

        async def worker() -> None:
            while not queue.empty():
                chunk = queue.get_nowait()
                response = await client.post("/sentiment", json={"texts": chunk})
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return len(texts) / (time.perf_counter() - started)


async def single_text_latency(url: str, texts: list[str], clients: int = 32) -> list[float]:
    import httpx

    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for text in texts:
        queue.put_nowait(text)
    async with httpx.AsyncClient(
        base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)
    ) as client:

        async def worker() -> None:
            while not queue.empty():
                text = queue.get_nowait()
                started = time.perf_counter()
                response = await client.post("/sentiment", json={"texts": [text]})
                response.raise_for_status()
                latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return latencies


def held_out_sample(sets: list[data.Dataset], n: int) -> data.Split:
    """``n`` held-out test texts drawn across every English test split (short snippets and long reviews)."""
    pool = data.Split()
    for ds in sets:
        pool = pool + ds.test
    return pool.sample(n, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", default=os.environ.get("CRM_SENTIMENT_DATA_DIR", "var/sentiment"))
    parser.add_argument(
        "--texts",
        type=int,
        default=512,
        help="Texts per throughput measurement: held-out test texts, repeated when more are asked for "
        "than the 2,442 held out (e.g. 50000 on a GPU).",
    )
    parser.add_argument("--single", type=int, default=320, help="Single-text requests for the p99.")
    parser.add_argument(
        "--per-request",
        type=int,
        default=8,
        help="Texts per request in the throughput runs (32 clients); on a GPU, larger requests (e.g. 64) "
        "keep HTTP and JSON from setting the pace.",
    )
    parser.add_argument(
        "--warmup-texts",
        type=int,
        default=256,
        help="Other held-out texts through the pipeline and each server before they are timed.",
    )
    parser.add_argument(
        "--accuracy-texts",
        type=int,
        default=0,
        help="Held-out texts per backend accuracy (0 = every test text).",
    )
    parser.add_argument(
        "--backends", default="", help="Comma-separated CPU backends to measure (default: all)."
    )
    parser.add_argument(
        "--model",
        default="",
        help="Model version under <data-dir>/models to serve (default: what the server picks), e.g. a "
        "minilm-ngram-ensemble-… for the MiniLM-L6 figure while an MPNet one is served.",
    )
    args = parser.parse_args()
    if args.per_request < 1 or args.texts < 1:
        parser.error("--per-request and --texts must be at least 1")
    data_dir = Path(args.data_dir)
    model_dir = data_dir / "models" / args.model if args.model else model_dir_for(data_dir)
    if not (model_dir / "metadata.json").exists():
        parser.error(f"--model {args.model}: no model at {model_dir}")
    meta = read_metadata(model_dir)
    # The Hugging Face directory the naive pipeline loads: an ensemble's fine-tuned network.
    network_dir = (
        data_dir / "models" / meta["network"] if meta["kind"] in ENGLISH_ENSEMBLE_KINDS else model_dir
    )
    max_length = int(meta.get("max_length", 128))
    on_gpu = device_name().startswith("cuda")
    # Same texts for everyone: held-out reviews and snippets, mixed lengths.
    sets = data.english_datasets(data_dir)
    pool = [t for ds in sets for t in ds.test.texts]
    rng = np.random.default_rng(0)
    # The model reads max_length tokens; clip so no text trips the service's length limit. More texts than
    # are held out (a GPU run wants tens of thousands) go round the pool again; the server keeps no
    # per-text cache, so a repeated text costs what it did the first time.
    order = rng.permutation(len(pool))
    texts = [pool[order[i % len(pool)]][:2000] for i in range(args.texts)]
    # Other held-out texts, run through every contender before it is timed: first forwards of new input
    # shapes ran slower (oneDNN builds kernels per shape, presumably), a one-off cost.
    warmup = [pool[order[(args.texts + i) % len(pool)]][:2000] for i in range(args.warmup_texts)]
    results: dict[str, float | str] = {
        "device": device_name(),
        "texts": len(texts),
        "warmup_texts": len(warmup),
        "texts_per_request": args.per_request,
    }

    # The naive pipeline before and after the servers (the machine may be shared: the mean of the two).
    pipeline_speeds = [naive_pipeline(network_dir, texts, max_length, warmup)]
    print(f"  naive pipeline: {pipeline_speeds[0]:.1f} texts/s", flush=True)

    # CPU backends: held-out accuracy in-process, then server speed; the faster at equal accuracy is served.
    backends = ["torch"] if on_gpu else (args.backends.split(",") if args.backends else list(CPU_BACKENDS))
    held_out = held_out_sample(sets, args.accuracy_texts or 10**9)
    speeds: dict[str, float] = {}
    for backend in backends:
        # As many threads as the servers get (CRM_SENTIMENT_THREADS; 0 = every core).
        threads = int(os.environ.get("CRM_SENTIMENT_THREADS", "0"))
        model = load_network(model_dir, backend=backend, threads=threads)  # type: ignore[arg-type]
        probs = predict_in_server_batches(model, held_out.texts)
        acc = float(((probs >= 0.5) == np.asarray(held_out.labels)).mean())
        del model
        server = Server(data_dir, model_dir, backend)
        try:
            server.wait_ready()
            if warmup:
                asyncio.run(server_throughput(server.url, warmup, per_request=args.per_request))
            speeds[backend] = asyncio.run(server_throughput(server.url, texts, per_request=args.per_request))
            latencies = asyncio.run(single_text_latency(server.url, texts[: args.single]))
        finally:
            server.stop()
        results[f"{backend}_texts_per_s"] = round(speeds[backend], 1)
        results[f"{backend}_acc"] = round(acc, 4)
        results[f"{backend}_p50_ms_single"] = round(1000 * float(np.percentile(latencies, 50)), 1)
        results[f"{backend}_p99_ms_single"] = round(1000 * float(np.percentile(latencies, 99)), 1)
        print(
            f"  server[{backend}]: {speeds[backend]:.1f} texts/s, held-out accuracy {acc:.4f}, "
            f"single-text p99 {results[f'{backend}_p99_ms_single']} ms",
            flush=True,
        )
    # Equal accuracy: at most half a point below float32 torch on the same held-out texts.
    reference = float(results.get("torch_acc", max(float(results[f"{b}_acc"]) for b in backends)))
    eligible = [b for b in backends if reference - float(results[f"{b}_acc"]) <= EQUAL_ACCURACY]
    best = max(eligible, key=lambda b: speeds[b])
    pipeline_speeds.append(naive_pipeline(network_dir, texts, max_length, warmup))
    print(f"  naive pipeline (again): {pipeline_speeds[1]:.1f} texts/s", flush=True)
    pipeline_speed = float(np.mean(pipeline_speeds))
    results["server_backend"] = best
    results["server_texts_per_s"] = round(speeds[best], 1)
    results["pipeline_texts_per_s"] = round(pipeline_speed, 1)
    results["pipeline_texts_per_s_before"] = round(pipeline_speeds[0], 1)
    results["pipeline_texts_per_s_after"] = round(pipeline_speeds[1], 1)
    results["speedup"] = round(speeds[best] / pipeline_speed, 2)
    results["p50_ms_single"] = results[f"{best}_p50_ms_single"]
    results["p99_ms_single"] = results[f"{best}_p99_ms_single"]
    results["accuracy_texts"] = len(held_out)

    print(
        f"\nserved model {model_dir.name} (pipeline: {network_dir.name}) on {results['device']}, "
        f"{len(texts)} texts, {max_length} tokens"
    )
    print(f"{'what':<44}{'value':>12}")
    for key in (
        "pipeline_texts_per_s_before",
        "pipeline_texts_per_s_after",
        "pipeline_texts_per_s",
        *(f"{b}_texts_per_s" for b in backends),
        "server_texts_per_s",
        "speedup",
        "p50_ms_single",
        "p99_ms_single",
        *(f"{b}_acc" for b in backends),
    ):
        print(f"{key:<44}{results[key]!s:>12}")
    print(f"served backend: {best}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    numeric = {k: v for k, v in results.items() if isinstance(v, int | float)}
    RESULTS.write_text(
        json.dumps(
            {
                **numeric,
                "device": results["device"],
                "server_backend": best,
                "model_version": model_dir.name,
                "pipeline_model_version": network_dir.name,
            },
            indent=2,
            sort_keys=True,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
