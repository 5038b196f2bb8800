"""Where a serving process's time goes under load: `fmloop serve` under wrk at concurrency 32 (one
SST-2 validation sentence per request), sampled by py-spy, each sampled stack put in one bucket by
the innermost fmloop/library frame that explains it.

    .venv/bin/python bench/serving_profile.py --model RUN [--backend torch|onnx] [--seconds 20]

Two samplings of the same load, one after the other: every thread that is running (what the CPU
does), and only the thread that holds the interpreter lock (what the event loop competes with: a
forward pass that releases the lock lets requests be read meanwhile; Python work in the model path
does not). Needs py-spy (`pip install py-spy`) and wrk (`apt-get install wrk`), both for the
benchmark only.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fmloop.core.machine import free_port
from fmloop.serve.ready import wait_until_ready
from serving import PY, WRK_SCRIPT, cpu_model, sentences  # bench/serving.py, beside this file

# The first rule that matches a stack (searched from the innermost frame outwards) names its bucket.
BUCKETS = [
    ("forward: torch ops", ("torch/nn/", "torch/_tensor", "transformers/models/", "onnxruntime")),
    ("tokenization", ("tokenizers", "tokenization_utils", "models/text.py:encode", "_tokenize")),
    ("batching: padding, stacking, decoding", ("serve/batching.py", "tasks/", "numpy/")),
    ("store writes (SQLAlchemy, SQLite)", ("sqlalchemy", "sqlite3", "feedback/store.py", "serve/writer.py")),
    ("request validation and JSON (pydantic, FastAPI)", ("pydantic", "fastapi/", "json/", "routing.py")),
    ("HTTP and event loop (uvicorn, h11, asyncio)", ("uvicorn", "h11", "httptools", "asyncio", "starlette")),
    ("metrics (prometheus_client)", ("prometheus_client",)),
]


def bucket(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for name, needles in BUCKETS:
            if any(n in frame for n in needles):
                return name
    return "other Python"


def profile(pid: int, seconds: int, gil: bool, out: Path) -> collections.Counter:
    command = ["py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
               "--format", "raw", "--threads", "--nonblocking", "-o", str(out)]  # fmt: skip
    if gil:
        command.append("--gil")
    subprocess.run(command, check=True, capture_output=True)
    counts: collections.Counter = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            counts[bucket(stack)] += int(n)
    return counts


def wrk(url: str, seconds: int, concurrency: int) -> subprocess.Popen:
    bodies = ", ".join("[==[" + json.dumps({"inputs": [t]}) + "]==]" for t in sentences(200))
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(WRK_SCRIPT % bodies)
    command = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "--latency", "-s", str(script), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a fine-tuned MiniLM SST-2 run dir")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--out", default="bench/results/serving_profile.json")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fmloop-profile-"))
    port = free_port()
    server = subprocess.Popen(
        [PY, "-m", "fmloop", "serve", args.model, "--backend", args.backend, "--threads", str(args.threads),
         "--port", str(port), "--db", f"sqlite:///{work / 'fb.db'}"],
        env={**os.environ, "FMLOOP_HOME": str(work / "home"), "FMLOOP_TRACKING": "off"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    result = {"command": " ".join(["bench/serving_profile.py", *sys.argv[1:]]),
              "date": datetime.date.today().isoformat(), "cpu": cpu_model(), "samplings": {}}  # fmt: skip
    try:
        wait_until_ready(url, timeout_s=600, exit_code=server.poll)
        wrk(url, 5, 8).wait()  # warm-up
        for gil in (False, True):
            load = wrk(url, args.seconds + 4, args.concurrency)
            time.sleep(2)  # past the first connections
            counts = profile(server.pid, args.seconds, gil, work / f"stacks-{gil}.txt")
            summary = load.communicate()[0]
            total = sum(counts.values())
            name = "the thread holding the GIL" if gil else "all running threads"
            result["samplings"][name] = {
                "samples": total,
                "share": {k: round(v / total, 3) for k, v in counts.most_common()},
                "wrk": [line.strip() for line in summary.splitlines() if "Requests/sec" in line or "99%" in line],
            }
            print(name, json.dumps(result["samplings"][name], indent=1), flush=True)
    finally:
        server.terminate()
        server.wait(60)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
