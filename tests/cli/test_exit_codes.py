"""The exit-code contract of docs/cli.md (fmloop.core.errors.ExitCode): each class of command run
into each exit it documents: a usage error (2), bad data (3), an unknown model (4), a registry
without what was named (9), and a signal (130 for Ctrl-C, 143 for SIGTERM)."""

import signal
import subprocess
import time

import pytest

from fmloop.core.errors import EXIT_MEANINGS, ExitCode
from tests.conftest import REPO, fmloop_cmd, run_cli, write_csv


def test_every_code_has_a_meaning_and_the_signal_codes_are_the_shell_s():
    assert set(EXIT_MEANINGS) == set(ExitCode)
    assert ExitCode.INTERRUPTED == 128 + signal.SIGINT and ExitCode.TERMINATED == 128 + signal.SIGTERM


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("exit-codes")
    (folder / "ragged.csv").write_text("text,label\na fine film,positive\nno label here\nmore,negative,extra\n")
    (folder / "empty.txt").write_text("")
    (folder / "pipeline.yaml").write_text(
        f"name: p\nstages:\n  pretrain:\n    config:\n      objective: mlm\n      data: {{path: {folder / 'missing.txt'}}}\n"
    )
    return folder


# (command class, arguments, expected code); `{f}` is the files folder, `{run}` a fine-tuned run
CASES = [
    ("train", ["pretrain", "--data", "{f}/corpus.txt"], ExitCode.USAGE),  # no --out
    ("train", ["finetune", "--model", "{run}", "--data", "{f}", "--out", "{f}/o", "--train.nope=1"], ExitCode.USAGE),
    ("train", ["pretrain", "--data", "{f}/empty.txt", "--out", "{f}/p"], ExitCode.DATA),
    ("train", ["finetune", "--model", "{run}", "--data", "{f}/ragged.csv", "--out", "{f}/ft"], ExitCode.DATA),
    (
        "train",
        ["finetune", "--model", "{f}/no-such-model", "--data", "{f}/ragged.csv", "--out", "{f}/ft2"],
        ExitCode.MODEL,
    ),
    ("evaluate", ["evaluate", "{run}", "{f}/ragged.csv", "--batch-size", "0"], ExitCode.USAGE),
    ("evaluate", ["evaluate", "{run}", "{f}/ragged.csv"], ExitCode.DATA),
    ("evaluate", ["predict", "{run}", "{f}/missing.csv", "--out", "{f}/p.jsonl"], ExitCode.DATA),
    ("compress", ["quantize", "{run}", "--out", "{f}/q", "--backend", "torch", "--mode", "static"], ExitCode.USAGE),
    ("compress", ["quantize", "{f}/no-such-model", "--out", "{f}/q"], ExitCode.MODEL),
    ("data", ["data", "clean", "{f}/missing.csv", "--out", "{f}/c"], ExitCode.DATA),
    ("registry", ["register", "{run}", "--name", "bad name!"], ExitCode.USAGE),
    ("registry", ["alias", "no-such-model", "champion", "1"], ExitCode.REGISTRY),
    ("registry", ["rollback", "no-such-model"], ExitCode.REGISTRY),
    ("feedback", ["retrain", "sst2", "--train.epoch=2"], ExitCode.USAGE),
    ("feedback", ["retrain", "sst2", "--model.name=x"], ExitCode.USAGE),
    ("feedback", ["loop", "sst2", "--retrain.min_audits=3"], ExitCode.USAGE),
    ("feedback", ["retrain", "no-such-model", "--db", "sqlite:///{f}/fb.db"], ExitCode.REGISTRY),
    ("pipeline", ["run", "{f}/pipeline.yaml", "--out", "{f}/pipe", "--set", "nope.x=1"], ExitCode.USAGE),
    ("pipeline", ["run", "{f}/pipeline.yaml", "--out", "{f}/pipe2"], ExitCode.DATA),
    ("pipeline", ["demo", "--out", "{f}/demo", "--set", "pretrain.train.lr=-1"], ExitCode.USAGE),
    ("serve", ["serve", "{run}", "--host", "0.0.0.0"], ExitCode.USAGE),
]


@pytest.mark.parametrize("kind,args,code", CASES, ids=[f"{c[0]}-{c[1][0]}-{c[2].name}" for c in CASES])
def test_each_command_class_exits_with_the_documented_code(kind, args, code, files, text_run, home):
    argv = [a.format(f=files, run=text_run) for a in args]
    result = run_cli(*argv, env={"FMLOOP_HOME": str(home)})
    assert result.returncode == code, (argv, result.returncode, result.stderr[-2000:])
    if code != ExitCode.USAGE or "Usage:" not in result.stderr:  # fmloop's own errors: one line, no traceback
        assert "Traceback" not in result.stderr, result.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, ExitCode.INTERRUPTED), (signal.SIGTERM, ExitCode.TERMINATED)])
def test_a_signal_stops_finetune_at_a_checkpoint_with_the_shell_s_code(sig, code, tiny_base, tmp_path):
    rows = [{"text": f"{'great' if i % 2 else 'awful'} film number {i}", "label": "pos" if i % 2 else "neg"}
            for i in range(400)]  # fmt: skip
    data = write_csv(tmp_path / "d.csv", rows)
    out = tmp_path / "run"
    args = ["finetune", "--model", str(tiny_base), "--data", str(data), "--out", str(out),
            "--train.epochs=400", "--train.batch_size=8", "--train.checkpoint_every=5", "--train.precision=fp32"]  # fmt: skip
    with open(tmp_path / "stderr.log", "w") as err:
        proc = subprocess.Popen(fmloop_cmd(*args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 300
        while not any((out / "checkpoints").glob("step-*")) if (out / "checkpoints").is_dir() else True:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.log").read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=300)
    log = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == code, log[-3000:]
    assert f"fmloop finetune --resume {out}" in log.replace("\n", "")
