"""An image model behind the API: base64 image files in, the same labels as fmloop.load out; a file
that is not an image is a 422 naming the input."""

import base64

from fmloop.models.loading import load
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
