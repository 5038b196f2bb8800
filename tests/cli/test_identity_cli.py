"""Tokens, deletion and retention from the command line, as an operator runs them."""

import dataclasses

from fmloop.feedback.schema import ERASED
from fmloop.feedback.store import NewPrediction, Store
from fmloop.serve.identity import Credentials
from tests.conftest import run_cli


def test_tokens_add_list_revoke(tmp_path):
    path = tmp_path / "tokens.txt"
    added = run_cli("tokens", "add", "ann", "--role", "labeller", "--file", str(path))
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    assert Credentials(str(path)).identify(f"Bearer {token}", "x").role == "labeller"
    assert run_cli("tokens", "list", "--file", str(path)).stdout.split() == ["ann", "labeller"]
    wrong = run_cli("tokens", "add", "bob", "--role", "root", "--file", str(path))
    assert wrong.returncode != 0 and "role 'root'" in wrong.stderr and "Traceback" not in wrong.stderr
    missing = run_cli("tokens", "revoke", "bob", "--file", str(path))
    assert missing.returncode != 0 and "has no identity 'bob'" in missing.stderr.replace("\n", " ")
    assert run_cli("tokens", "revoke", "ann", "--file", str(path)).returncode == 0
    assert Credentials(str(path)).identify(f"Bearer {token}", "x") is None


def test_feedback_delete_and_expire(tmp_path):
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    store = Store.open(db)
    row = NewPrediction("m", 1, "text", "ann's text", "pos", None, None, 1.0, user="ann")
    (ann,) = store.add_predictions([row])
    (other,) = store.add_predictions([dataclasses.replace(row, input="other text", user=None)])
    store.add_feedback(key="k", body_hash="h", model_name="m", label="neg", prediction_id=other, user="ann")
    deleted = run_cli("feedback", "delete", "--user", "ann", "--db", db)
    assert deleted.returncode == 0, deleted.stderr
    assert "1 feedback rows deleted, 1 prediction inputs erased" in deleted.stderr.replace("\n", " ")
    assert store.prediction(ann).input == ERASED and store.prediction(other).input == "other text"
    expired = run_cli("feedback", "expire", "--days", "0", "--db", db)
    assert expired.returncode == 0 and store.prediction(other).input == ERASED, expired.stderr
    assert [e.reason for e in store.erasures()] == ["user", "retention"]
    assert all(e.done_by and "fmloop feedback" in e.done_by for e in store.erasures())
    store.close()
