"""The users stage: a registered model served by `fmloop serve` in its own process, and simulated
users talking to it over real HTTP. They send labeled examples to /v1/predict; a share of those
whose answer is wrong send the true label to /v1/feedback as a correction (a share of those
corrections deliberately wrong, as real users make mistakes); labellers give the server's audit
sample its true labels. The feedback lands in OUT/feedback.db, which a retrain stage reads.

    OUT/feedback.db      predictions, corrections and audit labels (SQLite)
    OUT/users.json       served, served accuracy, corrections (wrong ones), audit labels
    OUT/server.log       the server's own log
    OUT/tokens.txt       the identities of the users and the labellers (hashes of their tokens)
    OUT/manifest.json    kind "users", with the same counts as metrics

The labellers stage answers the audit queue of a store later (what a pending challenger asked
about), with the true labels of the same data, as `fmloop feedback audit-import` would.
"""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from fmloop.core import stop
from fmloop.core.artifacts import RunDir, atomic_write_json, atomic_write_text, require_new_folder
from fmloop.core.config import StageConfig
from fmloop.core.errors import DataError, FmloopError, Interrupted
from fmloop.core.html import CSS, html_table
from fmloop.core.machine import free_port
from fmloop.serve.ready import ServerExited, wait_until_ready

log = logging.getLogger(__name__)


class LabeledSource(StageConfig):
    """Where the simulated people find the truth: labeled examples, one split of them."""

    data: str = Field(description="labeled examples: the inputs sent and their true labels (what the people know)")
    split: str = Field("test", description="which split of `data`")
    text_column: str | None = None
    label_column: str | None = None


class UsersConfig(LabeledSource):
    stage: ClassVar[str] = "users"
    model: str = Field(description="the model to serve, usually a registry reference such as models:/NAME@champion")
    requests: int = Field(400, ge=1, description="examples sent to /v1/predict (at most the split's size)")
    correct_rate: float = Field(0.8, ge=0, le=1, description="share of wrong answers whose user sends a correction")
    wrong_rate: float = Field(0.1, ge=0, le=1, description="share of corrections that carry the wrong label")
    audit_fraction: float = Field(0.15, gt=0, le=1, description="share of predictions the server samples for audit")
    seed: int = 0


class Server:
    """`fmloop serve MODEL` on a free loopback port, in its own process."""

    def __init__(self, model: str, db: str, audit_fraction: float, log_path: Path, options: tuple[str, ...] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "a")
        command = [sys.executable, "-m", "fmloop", "serve", model, "--db", db, "--port", str(self.port),
                   "--audit-fraction", str(audit_fraction), *options]  # fmt: skip
        # its own session: a Ctrl-C meant for the pipeline must not kill the server under the users
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_until_ready(self.url, timeout_s=300, exit_code=self.proc.poll)
        except (ServerExited, TimeoutError) as err:
            self.stop()  # also closes the log, whichever way the start failed
            raise FmloopError(f"`fmloop serve {model}` failed to start: {err}; see {log_path}") from None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def post_feedback(http, body: dict, headers: dict[str, str]) -> None:
    """Send one feedback, waiting out the per-identity rate limit (429 + Retry-After)."""
    for _ in range(20):
        response = http.post("/v1/feedback", json=body, headers={"Idempotency-Key": uuid.uuid4().hex, **headers})
        if response.status_code != 429:
            response.raise_for_status()
            return
        time.sleep(float(response.headers.get("Retry-After", "1")))
    raise FmloopError(f"the server kept refusing feedback (429): {response.text}")


def _check_stop() -> None:
    if stop.requested():
        raise Interrupted(f"{stop.requested()} received: the simulated users stopped")


def labeled_pairs(source: LabeledSource) -> list[tuple[str, str]]:
    """(text, true label name) pairs of the source's split, in the file's order."""
    from fmloop.data.labeled import load_labeled

    data = load_labeled(source.data, text_column=source.text_column, label_column=source.label_column, hold_out=False)
    if source.split not in data.splits:
        raise DataError(f"{source.data} has no {source.split!r} split (it has {', '.join(data.splits)}); set `split`.")
    rows = data.splits[source.split]
    return [(t, data.labels[y]) for t, y in zip(rows["text"], rows["label"])]


def examples(cfg: UsersConfig) -> list[tuple[str, str]]:
    """The pairs the users send: the split shuffled with the seed, the first `requests` of it."""
    pairs = labeled_pairs(cfg)
    random.Random(cfg.seed).shuffle(pairs)
    return pairs[: cfg.requests]


USERS = 50  # simulated users, each with a token of its own


def make_tokens(path: Path, users: int = USERS) -> dict[str, str]:
    """Tokens for `users` simulated users (role user) and the labellers (role labeller), written to
    `path` for the server; returns {identity: token}."""
    from fmloop.serve.identity import add_token

    names = [f"user{i}" for i in range(users)]
    tokens = {name: add_token(path, name, "user") for name in names}
    tokens["labellers"] = add_token(path, "labellers", "labeller")
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def simulate(url: str, pairs: list[tuple[str, str]], cfg: UsersConfig, tokens: dict[str, str]) -> dict:
    """Predictions, then corrections of wrong answers (each from one of the users, with its own
    token), then audit labels from the labellers; returns the counts."""
    import httpx

    rng = random.Random(cfg.seed)
    truth = dict(pairs)
    answers = []
    users = sorted(name for name in tokens if name != "labellers")
    with httpx.Client(base_url=url, timeout=120) as http:
        for start in range(0, len(pairs), 8):
            _check_stop()
            chunk = [text for text, _ in pairs[start : start + 8]]
            response = http.post("/v1/predict", json={"inputs": chunk})
            response.raise_for_status()
            answers += list(zip(chunk, response.json()["predictions"]))
        labels = sorted(set(truth.values()))
        wrong = [(text, p) for text, p in answers if p["label"] != truth[text]]
        corrections = misled = 0
        for text, p in wrong:
            _check_stop()
            if rng.random() >= cfg.correct_rate:
                continue
            label = truth[text]
            if rng.random() < cfg.wrong_rate:
                label, misled = rng.choice([name for name in labels if name != label] or [label]), misled + 1
            user = rng.choice(users)
            post_feedback(http, {"prediction_id": p["prediction_id"], "label": label}, bearer(tokens[user]))
            corrections += 1
        labellers = bearer(tokens["labellers"])
        audit = http.get("/v1/audit", params={"limit": 1000}, headers=labellers).json()["predictions"]
        for item in audit:
            post_feedback(
                http,
                {"prediction_id": item["prediction_id"], "label": truth[item["input"]], "kind": "audit"},
                labellers,
            )
    return {
        "served": len(answers),
        "served_accuracy": round(1 - len(wrong) / max(len(answers), 1), 4),
        "corrections": corrections,
        "wrong_corrections": misled,
        "audit_labels": len(audit),
    }


def run(cfg: UsersConfig, out: str | Path) -> RunDir:
    import httpx

    out = require_new_folder(out)
    run = RunDir(out).create()
    run.write_config(cfg.resolved())
    run.write_manifest(kind="users", status="running", model=cfg.model)
    pairs = examples(cfg)
    database = f"sqlite:///{(out / 'feedback.db').resolve()}"
    log.info("serving %s; %d simulated users send %s examples", cfg.model, len(pairs), cfg.split)
    tokens = make_tokens(out / "tokens.txt")
    server = Server(cfg.model, database, cfg.audit_fraction, out / "server.log", ("--tokens", str(out / "tokens.txt")))
    try:
        counts = simulate(server.url, pairs, cfg, tokens)
    except httpx.HTTPError as err:
        raise FmloopError(
            f"the server stopped answering the users ({type(err).__name__}: {err}); see {out / 'server.log'}"
        ) from None
    finally:
        server.stop()
    log.info(
        "served %d (accuracy %.3f); %d corrections (%d wrong on purpose), %d audit labels",
        counts["served"], counts["served_accuracy"], counts["corrections"], counts["wrong_corrections"],
        counts["audit_labels"],
    )  # fmt: skip
    atomic_write_json(out / "users.json", {"model": cfg.model, **counts})
    run.write_manifest(status="finished", metrics=counts)
    atomic_write_text(out / "report.html", _report(cfg, counts))
    return run


def _report(cfg: UsersConfig, counts: dict) -> str:
    return (
        f"<!doctype html><meta charset='utf-8'><title>users</title><style>{CSS}</style>"
        f"<h1>Simulated users of {cfg.model}</h1>{html_table({**counts, 'data': f'{cfg.data} ({cfg.split})'})}"
        f"<pre>{json.dumps(cfg.resolved(), indent=2)}</pre>"
    )


class LabellersConfig(LabeledSource):
    stage: ClassVar[str] = "labellers"
    database: str = Field(description="the feedback store whose audit queue the labellers answer")
    limit: int = Field(1000, ge=1, description="labels given at most (the oldest waiting first, as the queue orders)")


def label_queue(cfg: LabellersConfig, out: str | Path) -> RunDir:
    """Simulated labellers: every prediction waiting in the audit queue (the uniform sample, then
    what a pending challenger asked about) gets its true label, as an audit label."""
    from fmloop.feedback.schema import AUDIT
    from fmloop.feedback.store import Store

    out = require_new_folder(out)
    run = RunDir(out).create()
    run.write_config(cfg.resolved())
    run.write_manifest(kind="labellers", status="running")
    truth = dict(labeled_pairs(cfg))
    store = Store.open(cfg.database)
    try:
        queue = store.audit_queue(limit=cfg.limit)
        answered = [p for p in queue if p.input in truth]
        for prediction in answered:
            _check_stop()
            store.add_feedback(
                key=f"labellers-{prediction.id}", body_hash=prediction.id, model_name=prediction.model_name,
                label=truth[prediction.input], prediction_id=prediction.id, kind=AUDIT, user="labellers",
            )  # fmt: skip
    finally:
        store.close()
    counts = {
        "waiting": len(queue),
        "labelled": len(answered),
        "asked_by_a_challenger": sum(p.audit_for is not None for p in answered),
    }
    log.info("labellers: %d audit labels (%d asked for by a challenger)", counts["labelled"],
             counts["asked_by_a_challenger"])  # fmt: skip
    atomic_write_json(out / "labellers.json", counts)
    run.write_manifest(status="finished", metrics=counts)
    return run
