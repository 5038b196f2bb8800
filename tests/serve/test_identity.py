"""Identities come from tokens, never from the body: a client that rotates the user name it claims
gets the same rate limit and the same single vote as one that does not; roles decide who may label
the audit or add new inputs; the tokens file holds hashes and is re-read when it changes."""

import pytest

from fmloop.core.errors import ConfigError
from fmloop.feedback.snapshot import read_snapshot
from fmloop.feedback.store import Store
from fmloop.serve.identity import Credentials, add_token, hash_token, list_tokens, read_tokens, revoke_token
from tests.serve.conftest import make_client

TEXT = "my friend sees the river and it was great today"


@pytest.fixture
def tokens(tmp_path):
    path = tmp_path / "tokens.txt"
    made = {name: add_token(path, name, role) for name, role in
            (("ann", "user"), ("bob", "user"), ("lee", "labeller"), ("root", "admin"))}  # fmt: skip
    return path, made


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


def _feedback(client, token, body, key):
    return client.post("/v1/feedback", json=body, headers={"Idempotency-Key": key, **_auth(token)})


def _predict(client, token=None):
    answer = client.post("/v1/predict", json={"inputs": [TEXT]}, headers=_auth(token) if token else {})
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"][0]["prediction_id"]


def test_a_rotating_claimed_user_gets_the_same_rate_limit_and_one_vote(text_run, tmp_path, tokens):
    path, made = tokens
    with make_client(text_run, tmp_path, feedback_per_minute=3, tokens=str(path)) as client:
        pid = _predict(client)
        rotating = [
            _feedback(client, made["ann"], {"prediction_id": pid, "label": "negative", "user": f"alias{i}"}, f"a{i}")
            for i in range(4)
        ]
        steady = [
            _feedback(client, made["bob"], {"prediction_id": pid, "label": "positive"}, f"b{i}") for i in range(4)
        ]
        assert [r.status_code for r in rotating] == [r.status_code for r in steady] == [200, 200, 200, 429]
        assert "too many corrections from 'ann'" in rotating[3].json()["error"]
        db = client.app.state.server.config.database
    store = Store.open(db)
    assert {f.user for f in store.recent_feedback(20)} == {"ann", "bob"}  # never the claimed names
    snapshot = read_snapshot(store, text_run.name)
    # three corrections from ann under three claimed names weigh what bob's three weigh: one vote each
    assert snapshot.examples == [] and snapshot.ties == [{"input": TEXT, "votes": {"negative": 1.0, "positive": 1.0}}]
    store.close()


def test_roles_decide_who_labels_the_audit_adds_inputs_and_reads_stored_data(text_run, tmp_path, tokens):
    path, made = tokens
    with make_client(text_run, tmp_path, audit_fraction=1.0, tokens=str(path)) as client:
        pid = _predict(client, made["ann"])
        client.app.state.server.writer.flush()
        audit = {"prediction_id": pid, "label": "positive", "kind": "audit"}
        new_input = {"input": "a text nobody predicted", "label": "positive"}
        refused = [_feedback(client, made["ann"], audit, "u1"), _feedback(client, made["ann"], new_input, "u2")]
        assert [r.status_code for r in refused] == [403, 403]
        assert "labeller role" in refused[0].json()["error"]
        for route in ("/v1/audit", "/v1/recent"):
            assert client.get(route, headers=_auth(made["ann"])).status_code == 403
            assert client.get(route).status_code == 401
            assert client.get(route, headers=_auth("not-a-token")).status_code == 401
            assert client.get(route, headers=_auth(made["lee"])).status_code == 200
        assert _feedback(client, made["lee"], audit, "l1").status_code == 200
        assert _feedback(client, made["lee"], new_input, "l2").status_code == 200
        assert _feedback(client, made["ann"], {"prediction_id": pid, "label": "negative"}, "u3").status_code == 200
        # the same key from another identity is another body: a conflict, not a replay
        assert _feedback(client, made["bob"], {"prediction_id": pid, "label": "negative"}, "u3").status_code == 409
        assert "reference" not in client.get("/v1/model").json()
        assert "reference" not in client.get("/v1/model", headers=_auth(made["lee"])).json()
        info = client.get("/v1/model", headers=_auth(made["root"])).json()
        assert info["reference"] == str(text_run) and info["identity"] == {"name": "root", "role": "admin"}
        db = client.app.state.server.config.database
    store = Store.open(db)
    assert store.prediction(pid).user == "ann"  # the predicting token's identity, for deletion
    store.close()


def test_a_revoked_token_stops_working_without_a_restart(text_run, tmp_path, tokens):
    path, made = tokens
    with make_client(text_run, tmp_path, tokens=str(path)) as client:
        pid = _predict(client)
        assert _feedback(client, made["bob"], {"prediction_id": pid, "label": "negative"}, "k1").status_code == 200
        assert revoke_token(path, "bob")
        assert _feedback(client, made["bob"], {"prediction_id": pid, "label": "negative"}, "k2").status_code == 401
        carl = add_token(path, "carl", "user")
        assert _feedback(client, carl, {"prediction_id": pid, "label": "negative"}, "k3").status_code == 200


def test_the_tokens_file_keeps_hashes_and_names_a_bad_line(tmp_path):
    path = tmp_path / "tokens.txt"
    token = add_token(path, "ann", "labeller")
    assert token not in path.read_text() and hash_token(token) in path.read_text()
    assert path.stat().st_mode & 0o077 == 0
    again = add_token(path, "ann", "user")  # a new token replaces the old one
    assert list_tokens(path) == [("ann", "user")] and hash_token(again) in read_tokens(path)
    assert Credentials(str(path)).identify(f"Bearer {token}", "x") is None
    assert Credentials(str(path)).identify(f"Bearer {again}", "x").name == "ann"
    path.write_text(path.read_text() + "bob superuser sha256:" + "0" * 64 + "\n")
    with pytest.raises(ConfigError, match=r"tokens.txt, line 3: role 'superuser'"):
        read_tokens(path)
    with pytest.raises(ConfigError, match="no such file"):
        Credentials(str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="identity name"):
        add_token(path, "has space", "user")


def test_without_credentials_every_caller_is_local_and_limited_per_address():
    open_server = Credentials()
    assert not open_server.required
    who = open_server.identify(None, "127.0.0.1")
    assert who.name == "local" and who.may("admin") and who.rate_key == "address:127.0.0.1"
    shared = Credentials(shared_token="s3cret")
    assert shared.identify("Bearer s3cret", "x").name == "shared-token" and shared.identify(None, "x") is None
