"""``adaptlab serve`` under load, batched and one at a time, and the GGUF export of the same SmolLM2 run.

Trains (once; kept in ``bench/runs/serve``) a LoRA SFT run of SmolLM2-135M-Instruct on 128 French -> English
verses and a LoRA classifier of MiniLM-L6 on 1,000 rotten-tomatoes reviews, serves both from one process, and
sends 200 chat requests (greedy, 32 tokens at most, the 48 held-out prompts of the SFT run in turn) from 16
concurrent clients through the official ``openai`` client, then 200 ``/v1/classify`` requests of one review
each through httpx: first with dynamic batching (16 to a batch, a 10 ms window), then one request at a time
(``--max-batch 1 --batch-window-ms 0``), on the same server process layout and the same requests. Every answer
is compared with ``adaptlab generate``'s for its prompt (greedy, the same run). Then ``adaptlab export`` writes
the SFT run as GGUF (f16 and q8_0) and reads it back through transformers.

    .venv/bin/python bench/serve_load.py          # about 10 minutes on 2 CPU cores

Writes ``bench/results/serve_load.json`` and ``.md``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from _env import environment  # noqa: E402

RUNS = ROOT / "bench" / "runs" / "serve"
REQUESTS, CLIENTS = 200, 16
ADAPTLAB = str(Path(sys.executable).parent / "adaptlab")


def train() -> tuple[Path, Path]:
    sft, clf = RUNS / "sft-lora", RUNS / "sentiment-lora"
    if not (sft / "metrics.json").is_file():
        subprocess.run([ADAPTLAB, "train", "-s", "lora", "-b", "smollm2-135m", "-d", "verses-fr-en", "--eval-data", "verses-fr-en-test",
                        "--max-train", "128", "--max-eval", "48", "--max-length", "384", "--epochs", "1", "--lr", "2e-4", "--set", "generation.max_new_tokens=32",
                        "-o", str(sft), "-q"], check=True)
    if not (clf / "metrics.json").is_file():
        subprocess.run([ADAPTLAB, "train", "-s", "lora", "-b", "minilm-l6", "-d", "rotten-tomatoes", "--max-train", "1000", "--max-eval", "200",
                        "--epochs", "1", "--lr", "5e-4", "-o", str(clf), "-q"], check=True)
    return sft, clf


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def load(ask, jobs: list) -> dict:
    """``ask(job)`` for every job from ``CLIENTS`` threads: latencies, errors, wall time."""
    latencies, errors, outputs = [], 0, []

    def timed(job):
        started = time.perf_counter()
        try:
            out = ask(job)
        except Exception as e:  # noqa: BLE001 -- counted, shown
            return None, time.perf_counter() - started, repr(e)
        return out, time.perf_counter() - started, None

    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(timed, jobs))
    wall = time.perf_counter() - started
    for out, latency, error in results:
        outputs.append(out)
        latencies.append(latency)
        errors += error is not None
    return {"requests": len(jobs), "concurrency": CLIENTS, "errors": errors, "wall_seconds": round(wall, 2),
            "requests_per_second": round(len(jobs) / wall, 2), "p50_seconds": round(percentile(latencies, 0.5), 3),
            "p95_seconds": round(percentile(latencies, 0.95), 3), "outputs": outputs}


def serve_and_load(engine, limits, prompts: list[str], expected: dict[str, str], reviews: list[str]) -> dict:
    import httpx
    from openai import OpenAI

    from adaptlab.serve.server import create_app, listen, running

    app = create_app(engine, limits)
    with running(app, listen("127.0.0.1", 0)) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)

        def chat(prompt: str) -> tuple[str, int]:
            reply = client.chat.completions.create(model="sft-lora", messages=[{"role": "user", "content": prompt}], temperature=0)
            return reply.choices[0].message.content, reply.usage.completion_tokens

        chat(prompts[0])  # warm-up, outside the measured span
        streamed = 0
        for prompt in prompts[:8]:  # streaming: the same text, piece by piece
            pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
                model="sft-lora", messages=[{"role": "user", "content": prompt}], temperature=0, stream=True)]
            streamed += "".join(pieces) == expected[prompt] and len(pieces) > 3
        batches = httpx.get(f"{url}/health").json()["batches"]
        jobs = [prompts[i % len(prompts)] for i in range(REQUESTS)]
        chats = load(chat, jobs)
        chats["batches"] = httpx.get(f"{url}/health").json()["batches"] - batches
        answered = chats.pop("outputs")
        chats["equal_to_generate"] = sum(a is not None and a[0] == expected[p] for a, p in zip(answered, jobs))
        chats["tokens_per_second"] = round(sum(a[1] for a in answered if a) / chats["wall_seconds"], 1)
        with httpx.Client(timeout=600) as http:
            def classify(text: str) -> str:
                reply = http.post(f"{url}/v1/classify", json={"model": "sentiment-lora", "input": text})
                reply.raise_for_status()
                return reply.json()["data"][0]["label"]

            batches = httpx.get(f"{url}/health").json()["batches"]
            labels = load(classify, [reviews[i % len(reviews)] for i in range(REQUESTS)])
            labels["batches"] = httpx.get(f"{url}/health").json()["batches"] - batches
            labels["labels"] = labels.pop("outputs")
    return {"chat": chats, "classify": labels, "streamed_equal": streamed, "streamed": 8}


def export(sft: Path) -> list[dict]:
    rows = []
    for kind in ("f16", "q8_0"):
        path = RUNS / f"sft-lora-{kind}.gguf"
        path.unlink(missing_ok=True)
        started = time.perf_counter()
        from adaptlab.serve.export_gguf import export_gguf

        _, check = export_gguf(sft, path, kind)
        rows.append({"type": kind, "megabytes": round(path.stat().st_size / 2**20, 1), "seconds": round(time.perf_counter() - started, 1),
                     "max_logit_gap": check.max_logit_gap, "top1_agreement": check.top1_agreement, "same_tokens": check.same_tokens})
    return rows


def main() -> None:
    import adaptlab
    from adaptlab.serve.engine import Engine
    from adaptlab.serve.server import Limits

    started = time.perf_counter()
    sft, clf = train()
    prompts = [json.loads(line)["prompt"] for line in (sft / "generations.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = dict(zip(prompts, adaptlab.load(sft).generate(prompts)))  # adaptlab generate's answers, greedy
    from adaptlab.data.bundled import BUNDLED_DATASETS

    reviews = [r["text"] for r in BUNDLED_DATASETS["rotten-tomatoes"].load().rows[-50:]]  # 50 reviews, one per request
    engine = Engine([str(sft), str(clf)])
    modes = {"batched": Limits(window_ms=10, max_batch=16), "one at a time": Limits(window_ms=0, max_batch=1)}
    measured = {mode: serve_and_load(engine, limits, prompts, expected, reviews) for mode, limits in modes.items()}
    same_labels = measured["batched"]["classify"].pop("labels") == measured["one at a time"]["classify"].pop("labels")
    gguf = export(sft)
    env = environment()
    out = ROOT / "bench" / "results"
    (out / "serve_load.json").write_text(json.dumps({"environment": env, "wall_seconds": round(time.perf_counter() - started, 1),
                                                     "modes": measured, "classify_labels_equal": same_labels, "gguf": gguf}, indent=2))
    (out / "serve_load.md").write_text(table(measured, same_labels, gguf, env))
    print((out / "serve_load.md").read_text())


def table(measured: dict, same_labels: bool, gguf: list[dict], env: dict) -> str:
    lines = [f"# adaptlab serve under load and GGUF export (SmolLM2-135M-Instruct LoRA SFT + MiniLM-L6 LoRA classifier; "
             f"{env.get('device', 'CPU')}, {env.get('threads', '?')} threads; {env.get('date', '')})", "",
             "Command: `.venv/bin/python bench/serve_load.py` (commit " + env.get("commit", "?") + ")", "",
             f"{REQUESTS} requests from {CLIENTS} concurrent clients per row; chat: greedy, at most 32 tokens (the run's setting), the 48 held-out prompts "
             "in turn, through the `openai` client; classify: one review per request, through httpx.", "",
             "| endpoint | mode | requests | errors | answers equal to `adaptlab generate` | batches | p50 latency (s) | p95 latency (s) "
             "| wall (s) | requests/s | generated tokens/s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for endpoint in ("chat", "classify"):
        for mode, result in measured.items():
            r = result[endpoint]
            equal = f"{r['equal_to_generate']}/{r['requests']}" if endpoint == "chat" else ("all labels equal across modes" if same_labels else "LABELS DIFFER")
            lines.append(f"| {endpoint} | {mode} | {r['requests']} | {r['errors']} | {equal} | {r['batches']} | {r['p50_seconds']:.3f} | "
                         f"{r['p95_seconds']:.3f} | {r['wall_seconds']:.1f} | {r['requests_per_second']:.2f} | {r.get('tokens_per_second', '–')} |")
    streams = measured["batched"]
    lines.append(f"\nStreaming (`stream=True`, the openai client): {streams['streamed_equal']} of {streams['streamed']} streamed answers "
                 "arrive in more than three pieces that join into the non-streamed answer.")
    for endpoint in ("chat", "classify"):
        ratio = measured["batched"][endpoint]["requests_per_second"] / measured["one at a time"][endpoint]["requests_per_second"]
        lines.append(f"\n{endpoint}: batching serves {ratio:.1f}x the requests per second of one at a time.")
    lines += ["", "GGUF export of the SFT run (`adaptlab export RUN -o FILE --gguf-type TYPE`), read back by transformers' GGUF loader:", "",
              "| type | size (MB) | export + check (s) | largest logit gap | same next token | tokenizer read back |", "|---|---|---|---|---|---|"]
    for g in gguf:
        lines.append(f"| {g['type']} | {g['megabytes']:,.1f} | {g['seconds']:.0f} | {g['max_logit_gap']:.2e} | {g['top1_agreement']:.1%} | "
                     f"{'identical' if g['same_tokens'] else 'different'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
