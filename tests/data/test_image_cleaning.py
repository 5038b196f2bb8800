"""Image cleaning: perceptual hashes, duplicates, leaks and unreadable files, on real image files."""

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from fmloop.data.cleaning import CleanSettings
from fmloop.data.curate import clean_dataset, inspect_dataset
from fmloop.data.image_cleaning import hamming, match_earlier, phash
from fmloop.data.images import load_images
from tests.conftest import run_cli


def _scenes(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """Distinct smooth random images (uint8, N x size x size x 3): low-frequency noise upsampled."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 12, 12, generator=g)
    return (
        (F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1) * 255)
        .byte()
        .permute(0, 2, 3, 1)
        .numpy()
    )


def _edited(image: np.ndarray) -> np.ndarray:
    """A near copy: brighter, a little noise, re-encoded as JPEG."""
    rng = np.random.default_rng(1)
    changed = (image.astype(np.float64) * 1.08 + 6 + rng.normal(0, 3, image.shape)).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(changed).save(buf, format="JPEG", quality=80)
    return np.asarray(Image.open(buf).convert("RGB"))


def _png(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def test_phash_is_stable_under_edits_and_separates_different_images():
    images = _scenes(40)
    copies = np.stack([_edited(im) for im in images])
    same = np.bitwise_count(phash(images) ^ phash(copies))
    others = hamming(phash(images), phash(images))[~np.eye(40, dtype=bool)]
    assert same.max() <= 4, same
    assert np.percentile(others, 1) > 12, np.sort(others)[:10]


def test_match_earlier_keeps_the_first_of_each_group_and_follows_kept_rows():
    h = np.array([0b0000, 0b0001, 0b0011, 0b1111_0000_0000], dtype=np.uint64)
    match, dist = match_earlier(h, max_distance=1)
    # row 1 is within 1 bit of row 0; row 2 is within 1 bit of row 1 only, which was removed, and
    # 2 bits from row 0: it stays.
    assert match.tolist() == [-1, 0, -1, -1] and dist[1] == 1


def _tree(root, images, labels, names):
    for image, label, name in zip(images, labels, names):
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / label / name)


def test_clean_an_image_folder_removes_duplicates_leaks_and_broken_files(tmp_path):
    images = _scenes(30)
    src = tmp_path / "photos"
    labels = ["cat" if i % 2 else "dog" for i in range(30)]
    _tree(src / "train", images[:24], labels[:24], [f"{i:02d}.png" for i in range(24)])
    Image.fromarray(images[3]).save(src / "train" / labels[3] / "zz-copy-03.png")  # exact duplicate
    Image.fromarray(_edited(images[5])).save(src / "train" / labels[5] / "zz-edit-05.jpg")  # near duplicate
    (src / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")  # unreadable
    _tree(src / "test", images[24:], labels[24:], [f"{i:02d}.png" for i in range(24, 30)])
    Image.fromarray(_edited(images[7])).save(src / "test" / labels[7] / "leaked.jpg")  # train image in test
    before = sorted(p.stat().st_mtime_ns for p in src.rglob("*"))

    result = run_cli("data", "clean", str(src), "--out", str(tmp_path / "clean"))
    assert result.returncode == 0, result.stderr
    removed = [json.loads(line) for line in (tmp_path / "clean" / "removed.jsonl").read_text().splitlines()]
    by_reason = {r["reason"]: r for r in removed}
    assert sorted(by_reason) == ["duplicate", "leak", "near_duplicate", "unreadable"] and len(removed) == 4
    assert by_reason["duplicate"]["name"].endswith("zz-copy-03.png") and "03.png" in by_reason["duplicate"]["detail"]
    assert by_reason["near_duplicate"]["name"].endswith("zz-edit-05.jpg")
    assert by_reason["leak"]["split"] == "test" and "07.png" in by_reason["leak"]["detail"]
    report = json.loads((tmp_path / "clean" / "clean_report.json").read_text())
    assert report["splits"]["train"] == {
        "source": str(src / "train"),
        "rows": 27,
        "kept": 24,
        "removed": {"duplicate": 1, "near_duplicate": 1, "unreadable": 1},
    }
    assert sorted(p.stat().st_mtime_ns for p in src.rglob("*")) == before  # input untouched
    cleaned = load_images(str(tmp_path / "clean"), hold_out=False)  # fine-tuning reads it
    assert len(cleaned.splits["train"]) == 24 and len(cleaned.splits["test"]) == 6
    assert cleaned.labels == ["cat", "dog"]


def test_clean_a_parquet_source_keeps_its_rows_and_columns(tmp_path):
    images = _scenes(12, size=28)
    rows = [{"bytes": _png(im), "path": None} for im in images] + [{"bytes": _png(images[2]), "path": None}]
    table = pa.table({"image": rows, "label": list(range(12)) + [2], "note": [f"n{i}" for i in range(13)]})
    pq.write_table(table, tmp_path / "train.parquet")
    clean_dataset(str(tmp_path / "train.parquet"), tmp_path / "out", CleanSettings())
    kept = pq.read_table(tmp_path / "out" / "train.parquet")
    assert kept.num_rows == 12 and kept.column_names == ["image", "label", "note"]
    assert kept.column("image")[0].as_py()["bytes"] == rows[0]["bytes"]  # original bytes


def test_text_only_settings_are_refused_for_images(tmp_path):
    _tree(tmp_path / "imgs", _scenes(4), ["a", "b", "a", "b"], [f"{i}.png" for i in range(4)])
    result = run_cli("data", "clean", str(tmp_path / "imgs"), "--out", str(tmp_path / "out"), "--language", "en")
    assert result.returncode != 0 and "apply to text" in result.stderr and not (tmp_path / "out").exists()


def test_inspect_images_reports_sizes_modes_and_duplicate_pairs(tmp_path):
    images = _scenes(10)
    src = tmp_path / "imgs"
    _tree(src, images, ["a", "b"] * 5, [f"{i}.png" for i in range(10)])
    Image.fromarray(images[0]).convert("L").save(src / "a" / "grey.png")  # a grey copy: near duplicate
    result = inspect_dataset(str(src), tmp_path / "report")
    train = result["splits"]["train"]
    assert train["rows"] == 11 and train["sizes"] == {"32x32": 11} and train["modes"] == {"RGB": 10, "L": 1}
    assert train["issues"] == {"near_duplicate": 1} and train["class_balance"] == {"a": 6, "b": 5}
    html = (tmp_path / "report" / "report.html").read_text()
    assert "Duplicates and leaks" in html and html.count("data:image/png") >= 2
