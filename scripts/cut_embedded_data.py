"""Cut the small slice of real data that ships inside the package (src/fmloop/data/embedded/).

    python scripts/cut_embedded_data.py ../shared/datasets

Reads the full datasets (the layout of ../shared/datasets) and writes, reproducibly (seed 0,
gzip without timestamps):

    text/sst2/{train,validation,test}.csv.gz   every SST-2 sentence (6,920 / 872 / 1,821)
    text/imdb/unsup/part-{1,2}.jsonl.gz        6,000 unlabeled IMDb reviews (two files, each under 3 MB)
    text/imdb/{train,test}.jsonl.gz            1,000 labeled IMDb reviews each, 500 per class
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "fmloop" / "data" / "embedded"


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0, filename="") as fh:
        fh.write(text.encode("utf-8"))


def read_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def balanced(rows: list[dict], per_class: int, rng: random.Random) -> list[dict]:
    picked = []
    for label in sorted({r["label"] for r in rows}):
        picked += rng.sample([r for r in rows if r["label"] == label], per_class)
    rng.shuffle(picked)
    return picked


def main(shared: Path) -> None:
    for split in ("train", "validation", "test"):
        with open(shared / "text" / "sst2" / f"{split}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        write_gz(OUT / "text" / "sst2" / f"{split}.csv.gz", buffer.getvalue())
    rng = random.Random(0)
    unsup = rng.sample(read_jsonl(shared / "text" / "imdb" / "unsup.jsonl.gz"), 6000)
    for part, rows in enumerate((unsup[:3000], unsup[3000:]), start=1):
        text = "".join(json.dumps({"text": r["text"]}) + "\n" for r in rows)
        write_gz(OUT / "text" / "imdb" / "unsup" / f"part-{part}.jsonl.gz", text)
    for split in ("train", "test"):
        rows = balanced(read_jsonl(shared / "text" / "imdb" / f"{split}.jsonl.gz"), 500, rng)
        write_gz(OUT / "text" / "imdb" / f"{split}.jsonl.gz", "".join(json.dumps(r) + "\n" for r in rows))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets"))
