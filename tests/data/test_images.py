import json

import numpy as np
import pytest
from PIL import Image

from fmloop.core.errors import DataError
from fmloop.data.images import is_image_source, limit_per_class, load_images
from tests.conftest import make_image_folder, make_unlabeled_folder


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FMLOOP_CACHE", str(tmp_path / "cache"))


def test_image_folder_with_a_corrupt_file_and_mixed_modes(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n_per_class=10)
    (root / "horizontal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    Image.new("RGBA", (16, 16), (255, 0, 0, 0)).save(root / "vertical" / "transparent.png")
    Image.new("L", (20, 20), 128).save(root / "vertical" / "grey_and_larger.png")
    data = load_images(str(root), seed=0)
    assert data.labels == ["horizontal", "vertical"]
    assert data.image_shape == (16, 16, 3)
    assert len(data.skipped) == 1 and "broken.png" in data.skipped[0][0]
    total = sum(len(s) for s in data.splits.values())
    assert total == 22  # 23 files, one unreadable
    names = [n for s in data.splits.values() for n in s.names]
    pixels = np.concatenate([s.pixels for s in data.splits.values()])
    transparent = pixels[names.index("vertical/transparent.png")]
    assert (transparent == 255).all()  # transparent areas become white, not black
    assert set(data.splits) == {"train", "validation"}
    assert "skipped 1 unreadable" in data.description


def test_too_many_unreadable_files_is_an_error(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n_per_class=4)
    for i in range(3):
        (root / "horizontal" / f"bad{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot be decoded"):
        load_images(str(root))


def test_empty_folder_and_single_class(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        load_images(str(tmp_path / "empty"))
    one = make_image_folder(tmp_path / "one", classes=("only",))
    with pytest.raises(DataError, match="one class"):
        load_images(str(one))


def test_label_file_naming_missing_images(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n_per_class=3)
    rows = [{"path": "horizontal/000.png", "label": "h"}, {"path": "nowhere/x.png", "label": "v"}]
    (root / "labels.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert is_image_source(str(root / "labels.jsonl"))
    with pytest.raises(DataError, match=r"labels.jsonl: 1 image file\(s\) do not exist \(row 2: nowhere/x.png"):
        load_images(str(root / "labels.jsonl"))


def test_csv_of_paths_and_labels(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n_per_class=6)
    lines = ["file,label"] + [f"{c}/{i:03d}.png,{c[0]}" for c in ("horizontal", "vertical") for i in range(6)]
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    data = load_images(str(root / "train.csv"), hold_out=False)
    assert data.labels == ["h", "v"] and len(data.splits["train"]) == 12


def test_unlabeled_folder_for_pretraining(tmp_path):
    flat = make_unlabeled_folder(tmp_path / "flat", 10)
    with pytest.raises(DataError, match="no labels found"):
        load_images(str(flat))
    data = load_images(str(flat), need_labels=False)
    assert data.labels is None and sum(len(s) for s in data.splits.values()) == 10


def test_decoded_images_are_cached(tmp_path):
    root = make_image_folder(tmp_path / "imgs", n_per_class=4)
    first = load_images(str(root), hold_out=False)
    assert list((tmp_path / "cache" / "images").glob("*.npz"))
    second = load_images(str(root), hold_out=False)
    np.testing.assert_array_equal(first.splits["train"].pixels, second.splits["train"].pixels)
    assert first.splits["train"].names == second.splits["train"].names


def test_limit_per_class_is_seeded_and_stratified(tmp_path):
    data = load_images(str(make_image_folder(tmp_path / "imgs", n_per_class=10)), hold_out=False)
    a = limit_per_class(data.splits["train"], 3, seed=1)
    b = limit_per_class(data.splits["train"], 3, seed=1)
    assert a.names == b.names and np.bincount(a.labels).tolist() == [3, 3]
    assert np.bincount(limit_per_class(data.splits["train"], 0.5, seed=1).labels).tolist() == [5, 5]


def test_hugging_face_parquet(tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for i in range(8):
        buffer = io.BytesIO()
        Image.fromarray(np.full((8, 8), i * 30, np.uint8)).save(buffer, format="PNG")
        rows.append({"image": {"bytes": buffer.getvalue(), "path": None}, "label": i % 2})
    table = pa.Table.from_pylist(rows)
    meta = {
        "info": {"features": {"image": {"_type": "Image"}, "label": {"names": ["even", "odd"], "_type": "ClassLabel"}}}
    }
    table = table.replace_schema_metadata({"huggingface": json.dumps(meta)})
    pq.write_table(table, tmp_path / "train.parquet")
    assert is_image_source(str(tmp_path / "train.parquet"))
    data = load_images(str(tmp_path / "train.parquet"), hold_out=False)
    assert data.labels == ["even", "odd"] and data.image_shape == (8, 8, 1)
    assert data.splits["train"].labels.tolist() == [0, 1] * 4
