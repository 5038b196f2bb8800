"""The users stage: a registered model served by `fmloop serve`, simulated users over real HTTP;
every prediction, correction and audit label they send lands in the stage's own feedback store."""

import json

import pytest

from fmloop.feedback.store import Store
from fmloop.pipeline.users import UsersConfig, run
from tests.feedback.users import register_champion

pytestmark = pytest.mark.slow


def test_users_predict_correct_and_audit_over_http(home, text_run, sentiment_dir, tmp_path):
    register_champion(text_run, tmp_path)
    cfg = UsersConfig(model="models:/sst2@champion", data=str(sentiment_dir), requests=50, correct_rate=1.0,
                      wrong_rate=0.0, audit_fraction=0.5)  # fmt: skip
    out = run(cfg, tmp_path / "users").path
    counts = json.loads((out / "users.json").read_text())
    assert counts["served"] == 50
    wrong = round((1 - counts["served_accuracy"]) * 50)
    assert counts["corrections"] == wrong and counts["wrong_corrections"] == 0  # every wrong answer corrected
    store = Store.open(f"sqlite:///{out / 'feedback.db'}")
    try:
        assert store.count_feedback("sst2") == counts["corrections"] + counts["audit_labels"]
        assert 10 <= counts["audit_labels"] <= 40  # about half of 50 sampled for audit
    finally:
        store.close()
    assert json.loads((out / "manifest.json").read_text())["status"] == "finished"
