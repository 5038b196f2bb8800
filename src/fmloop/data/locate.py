"""Where named datasets are found: `$FMLOOP_DATA`, then `../shared/datasets` beside the working
folder, then the small slice of real data shipped inside the package (`data/embedded/`, see its
README). Every root has the same layout (`text/sst2/`, `text/imdb/unsup.jsonl.gz`, ...), so a
user with the full datasets points `$FMLOOP_DATA` at them and nothing else changes. The Hugging
Face hub is never a fallback: it is used only when a user names a hub id as the data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

EMBEDDED = Path(__file__).resolve().with_name("embedded")


@dataclass(frozen=True)
class Located:
    path: str
    origin: str  # which root it came from, for the log line that says so


def dataset_roots() -> list[tuple[Path, str]]:
    """(root, what it is) in lookup order."""
    roots = []
    if os.environ.get("FMLOOP_DATA"):
        roots.append((Path(os.environ["FMLOOP_DATA"]).expanduser(), "$FMLOOP_DATA"))
    roots.append((Path.cwd().parent / "shared" / "datasets", "../shared/datasets"))
    roots.append((EMBEDDED, "the data shipped with fmloop"))
    return roots


def find_dataset(candidates: list[str]) -> Located:
    """The first root holding one of `candidates` (relative paths, best first)."""
    for root, origin in dataset_roots():
        for rel in candidates:
            if (root / rel).exists():
                return Located(str(root / rel), f"{origin} ({root / rel})")
    tried = ", ".join(str(root) for root, _ in dataset_roots())
    raise FileNotFoundError(f"none of {', '.join(candidates)} under {tried}: the installed package lacks its data")
