"""An image model behind the API: base64 image files in, the same labels as fmloop.load out; a file
that is not an image is a 422 naming the input; the images corrections are about, and those drawn
for the audit, kept in the store for retraining and erased with their user."""

import base64

from fmloop.feedback.schema import image_digest
from fmloop.feedback.snapshot import read_snapshot
from fmloop.feedback.store import Store
from fmloop.models.loading import load
from fmloop.serve.recent import RecentImages
from tests.serve.conftest import make_client


def test_images_are_predicted_like_the_loaded_model(image_run, image_dir, tmp_path):
    files = sorted(image_dir.rglob("*.png"))[:4]
    inputs = [{"image_base64": base64.b64encode(f.read_bytes()).decode()} for f in files]
    with make_client(image_run, tmp_path) as client:
        response = client.post("/v1/predict", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        got = [p["label"] for p in response.json()["predictions"]]
        assert got == [p["label"] for p in load(image_run).predict([str(f) for f in files])]
        bad = client.post(
            "/v1/predict", json={"inputs": [{"image_base64": base64.b64encode(b"not an image").decode()}]}
        )
        assert bad.status_code == 422 and "inputs.0.image_base64" in bad.json()["error"]
        text = client.post("/v1/predict", json={"inputs": ["a text"]})
        assert text.status_code == 422 and "reads images" in text.json()["error"]
        client.app.state.server.writer.flush()  # predictions reach the store from a background thread
        recent = client.get("/v1/recent").json()["predictions"]
        assert all(p["input"].startswith("sha256:") for p in recent)


def test_corrected_and_audited_images_are_kept_for_retraining_and_erased_with_their_user(
    image_run, image_dir, tmp_path
):
    files = sorted(image_dir.rglob("*.png"))[:6]
    raw = [f.read_bytes() for f in files]
    encoded = [base64.b64encode(b).decode() for b in raw]
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    with make_client(image_run, tmp_path, audit_fraction=0.0, image_memory_mb=1) as client:
        answer = client.post("/v1/predict", json={"inputs": [{"image_base64": e} for e in encoded[:3]]}).json()
        ids = [p["prediction_id"] for p in answer["predictions"]]
        labels = client.get("/v1/model").json()["labels"]
        wrong = [next(x for x in labels if x != p["label"]) for p in answer["predictions"]]
        state = client.app.state.server
        state.writer.flush()

        def correct(i, key, **extra):
            body = {"prediction_id": ids[i], "label": wrong[i], **extra}
            return client.post("/v1/feedback", json=body, headers={"Idempotency-Key": key})

        assert correct(0, "k0").status_code == 200  # the server still holds the image it answered
        state.recent_images = RecentImages(0)  # as after a restart, or at another worker
        assert correct(1, "k1").status_code == 200  # kept without its bytes: not trainable
        assert correct(2, "k2", image_base64=encoded[2]).status_code == 200  # sent again: kept
        mismatch = correct(2, "k3", image_base64=encoded[4])
        assert mismatch.status_code == 422 and "not the image" in mismatch.json()["error"]
        store = state.store
        assert store.image(image_digest(raw[0])) == raw[0] and store.image(image_digest(raw[2])) == raw[2]
        assert store.image(image_digest(raw[1])) is None

        snapshot = read_snapshot(store, answer["model"]["name"])
        assert {e.text: e.label for e in snapshot.examples} == {
            image_digest(raw[0]): wrong[0],
            image_digest(raw[2]): wrong[2],
        }

    with make_client(image_run, tmp_path, audit_fraction=1.0) as client:  # drawn for the audit: kept at once
        client.post("/v1/predict", json={"inputs": [{"image_base64": encoded[5]}]})
        client.app.state.server.writer.flush()
    reopened = Store.open(db)
    assert reopened.image(image_digest(raw[5])) == raw[5]
    reopened.erase_user("local")  # every prediction here was made by the loopback identity
    assert all(reopened.image(image_digest(b)) is None for b in raw)


def test_a_labeller_sees_the_kept_image_of_an_audit_prediction_and_no_one_else_does(image_run, image_dir, tmp_path):
    from fmloop.serve.identity import add_token

    path = tmp_path / "tokens.txt"
    user, labeller = add_token(path, "ann", "user"), add_token(path, "lee", "labeller")
    raw = sorted(image_dir.rglob("*.png"))[0].read_bytes()
    with make_client(image_run, tmp_path, audit_fraction=1.0, tokens=str(path)) as client:
        client.post("/v1/predict", json={"inputs": [{"image_base64": base64.b64encode(raw).decode()}]})
        client.app.state.server.writer.flush()
        queued = client.get("/v1/audit", headers={"Authorization": f"Bearer {labeller}"}).json()["predictions"]
        digest = queued[0]["input"]
        assert digest == image_digest(raw)
        shown = client.get(f"/v1/images/{digest}", headers={"Authorization": f"Bearer {labeller}"})
        assert shown.status_code == 200 and shown.content == raw and shown.headers["content-type"] == "image/png"
        assert client.get(f"/v1/images/{digest}", headers={"Authorization": f"Bearer {user}"}).status_code == 403
        assert client.get(f"/v1/images/{digest}").status_code == 401
        other = "sha256:" + "0" * 64
        assert client.get(f"/v1/images/{other}", headers={"Authorization": f"Bearer {labeller}"}).status_code == 404
        assert client.get("/v1/images/x", headers={"Authorization": f"Bearer {labeller}"}).status_code == 422
