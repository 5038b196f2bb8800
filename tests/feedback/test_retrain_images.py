"""Images through the loop: an image champion is served, its users correct it over HTTP on a kind
of image it never saw, the server keeps those images, and a retrain trains a challenger on them
(beside a replay of the champion's own images) whose answers on the corrected images change; the
gate then judges it as it judges a text challenger."""

import base64
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fmloop.feedback import retrain
from fmloop.models.loading import load
from fmloop.registry import models
from tests.conftest import make_image_folder
from tests.feedback.conftest import served_retrain
from tests.serve.conftest import make_client

pytestmark = pytest.mark.slow


def checkerboards(n: int, size: int = 16, seed: int = 1) -> list[bytes]:
    """PNG files of noisy checkerboards: neither of the champion's striped classes."""
    rng = np.random.default_rng(seed)
    files = []
    for _ in range(n):
        cell = int(rng.integers(2, 4))
        grid = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2).astype(np.float64)
        image = grid * 180 + rng.normal(40, 20, (size, size))
        rgb = np.stack([image, image * 0.75, image[::-1]], -1).clip(0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(rgb).save(out, format="PNG")
        files.append(out.getvalue())
    return files


def test_image_corrections_over_http_teach_the_challenger(home, image_run, tmp_path):
    run = tmp_path / "champion"
    shutil.copytree(image_run, run)
    models.register(run, "shapes")
    models.promote("shapes", 1)
    files = checkerboards(48)
    db = f"sqlite:///{tmp_path / 'feedback.db'}"
    striped = sorted(make_image_folder(tmp_path / "more", n_per_class=6, seed=5).rglob("*.png"))

    def predict(client, blobs):
        inputs = [{"image_base64": base64.b64encode(b).decode()} for b in blobs]
        response = client.post("/v1/predict", json={"inputs": inputs})
        assert response.status_code == 200, response.text
        return response.json()["predictions"]

    def send(client, answer, label, key, kind="correction"):
        body = {"prediction_id": answer["prediction_id"], "label": label, "kind": kind}
        response = client.post("/v1/feedback", json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 200, response.text

    with make_client("models:/shapes@champion", tmp_path, audit_fraction=1.0) as client:
        answers = predict(client, files)
        said = [a["label"] for a in answers]
        target = min(set(client.get("/v1/model").json()["labels"]), key=said.count)  # what it says least
        for i, answer in enumerate(answers):
            if answer["label"] != target:
                send(client, answer, target, f"fix-{i}")
        # labellers answer the audit sample of ordinary images: both classes in the challenger's labels
        for i, (path, answer) in enumerate(zip(striped, predict(client, [p.read_bytes() for p in striped]))):
            send(client, answer, path.parent.name, f"audit-{i}", kind="audit")
    corrected = [f for f, label in zip(files, said) if label != target]
    assert len(corrected) >= 24

    cfg = served_retrain("shapes", db)
    done = retrain.run(cfg, tmp_path / "retrain")
    manifest = done.read_manifest()
    assert manifest["decision"] in ("pending", "refused", "promoted"), manifest
    assert manifest["feedback"]["inputs"] == len(corrected) and manifest["feedback"]["replayed"] > 0
    assert (done.path / "data" / "train" / target).is_dir()  # one folder per class, as fine-tuning reads
    shadow = json.loads((done.path / "shadow.json").read_text())
    assert shadow["scored"] == len(files) - len(corrected)  # kept images it did not train on

    pixels = load(run).to_pixels([io.BytesIO(f) for f in corrected])
    before = [p["label"] for p in load(run).predict(pixels)]
    after = [p["label"] for p in load("models:/shapes/2").predict(pixels)]
    assert before.count(target) == 0 and after.count(target) >= 0.8 * len(corrected), (before, after)
