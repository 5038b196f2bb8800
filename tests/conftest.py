"""Shared fixtures: a small synthetic corpus and tiny model settings (vocab ~200, hidden 32, 2 layers)."""

from __future__ import annotations

import atexit
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never touch the user's fmloop home; tracking is switched on by the tests that check it.
os.environ["FMLOOP_HOME"] = tempfile.mkdtemp(prefix="fmloop-test-home-")
atexit.register(shutil.rmtree, os.environ["FMLOOP_HOME"], ignore_errors=True)
os.environ["FMLOOP_TRACKING"] = "off"
SHARED = REPO.parent / "shared" / "datasets"

_SUBJECTS = ["the cat", "a dog", "my friend", "the old man", "our teacher", "the film", "this story", "a child"]
_VERBS = ["sees", "likes", "finds", "watches", "remembers", "describes", "loves", "ignores"]
_OBJECTS = ["the river", "a small house", "the red ball", "an empty street", "the bright moon", "a long song"]
_ENDS = ["today", "at night", "in the morning", "again", "with joy", "without a word"]


def make_corpus(n_docs: int = 400, seed: int = 0) -> list[str]:
    """Grammatical nonsense with learnable structure: a model that learns should beat chance quickly."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        sentences = [
            f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_ENDS)}."
            for _ in range(rng.randint(1, 4))
        ]
        docs.append(" ".join(sentences))
    return docs


@pytest.fixture
def corpus_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(make_corpus()) + "\n", encoding="utf-8")
    return path


def tiny_overrides(data: Path | str, objective: str = "mlm", **train) -> dict:
    """Config for a model small enough that a test step takes milliseconds."""
    model = "bert-tiny" if objective == "mlm" else "gpt2-nano"
    overrides = (
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
        if objective == "mlm"
        else {"n_embd": 32, "n_layer": 2, "n_head": 2}
    )
    settings = {
        "seq_len": 32,
        "batch_size": 8,
        "max_steps": 12,
        "lr": 3e-3,
        "eval_every": 4,
        "eval_batches": 2,
        "log_every": 1,
        "checkpoint_every": 4,
        "precision": "fp32",
        "tensorboard": False,
        "seed": 7,
        "deterministic": True,
        "threads": 1,
    }
    settings.update(train)
    return {
        "objective": objective,
        "data": {"path": str(data)},
        "tokenizer": {"vocab_size": 200, "min_frequency": 1},
        "model": {"name": model, "overrides": overrides},
        "train": settings,
    }


def overrides_to_args(tree: dict, prefix: str = "") -> list[str]:
    args = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and key != "overrides":
            args += overrides_to_args(value, name + ".")
        elif isinstance(value, dict):
            args += [f"--{name}.{k}={v}" for k, v in value.items()]
        else:
            args.append(f"--{name}={value}")
    return args


def fmloop_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fmloop", *args]


def run_cli(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(fmloop_cmd(*args), capture_output=True, text=True, timeout=timeout, env=full_env, cwd=REPO)


def needs_shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is not available (real datasets live in ../shared/datasets beside the checkout)")
    return path


POSITIVE = ["great", "wonderful", "good", "lovely", "brilliant", "superb"]
NEGATIVE = ["awful", "bad", "terrible", "boring", "dull", "poor"]


def make_sentiment(n: int, seed: int = 0) -> list[dict]:
    """Rows whose label is decided by the sentiment words they contain: learnable in a few steps."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["positive", "negative"])
        words = POSITIVE if label == "positive" else NEGATIVE
        filler = rng.choice(_SUBJECTS) + " " + rng.choice(_VERBS) + " " + rng.choice(_OBJECTS)
        rows.append({"text": f"{filler} and it was {rng.choice(words)} {rng.choice(_ENDS)}", "label": label})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """A tiny BERT (hidden 32, 2 layers) with a WordPiece tokenizer, saved as a model folder."""
    from fmloop.data.tokenizer import train_tokenizer
    from fmloop.models.presets import PRESETS

    folder = tmp_path_factory.mktemp("tiny_base")
    texts = [r["text"] for r in make_sentiment(300)] + make_corpus(100)
    tok = train_tokenizer(texts, "wordpiece", vocab_size=200, min_frequency=1)
    import torch

    torch.manual_seed(0)
    model = PRESETS.get("bert-tiny").build(
        len(tok),
        tok,
        64,
        0.1,
        {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64},
    )
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def sentiment_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("sentiment")
    write_csv(folder / "train.csv", make_sentiment(240, seed=1))
    write_csv(folder / "validation.csv", make_sentiment(100, seed=2))  # enough to choose a checkpoint on
    write_csv(folder / "test.csv", make_sentiment(60, seed=3))
    return folder


def make_image_folder(
    root: Path, n_per_class: int = 12, size: int = 16, classes=("horizontal", "vertical"), seed: int = 0
) -> Path:
    """An ImageFolder tree of learnable synthetic images: stripes whose direction is the class."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            phase = rng.integers(0, 4)
            grid = (
                (np.arange(size)[:, None] + phase) % 4 < 2 if c % 2 == 0 else (np.arange(size)[None, :] + phase) % 4 < 2
            )
            image = np.broadcast_to(grid, (size, size)).astype(np.float64) * 180 + rng.normal(40, 20, (size, size))
            rgb = np.stack([image, image * (0.5 + c / 2), image[::-1]], -1).clip(0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(root / name / f"{i:03d}.png")
    return root


def make_unlabeled_folder(root: Path, n: int = 48) -> Path:
    """A flat folder of synthetic images without labels (for pretraining and prediction)."""
    labeled = make_image_folder(root.parent / f"{root.name}-labeled", n_per_class=n // 2)
    root.mkdir(parents=True)
    for i, f in enumerate(sorted(labeled.rglob("*.png"))):
        f.rename(root / f"{i:03d}.png")
    return root


def parent_paths(run_path) -> list[str]:
    """The resolved parent paths a run's manifest records (stored relative to the run dir)."""
    from fmloop.core.artifacts import RunDir

    run = RunDir(run_path)
    return [str(p.resolve()) for p in run.read_manifest().parent_paths(run.path)]


# Fine-tuned tiny models (for compression, registry and serving tests) -----------------------------

FAST = {"tensorboard": False, "seed": 0, "threads": 1, "log_every": 5, "early_stopping_patience": None}


def finetune_tiny(base, data, out, **train):
    tree = {
        "model": {"name": str(base)},
        "data": {"path": str(data)},
        "train": {"lr": 3e-3, "epochs": 8, **FAST, **train},
    }
    from fmloop.core.config import load_config
    from fmloop.train.config import FinetuneConfig
    from fmloop.train.finetune import run as finetune

    return finetune(load_config(FinetuneConfig, overrides=tree), out)


@pytest.fixture(scope="session")
def text_run(tiny_base, sentiment_dir, tmp_path_factory) -> Path:
    return finetune_tiny(tiny_base, sentiment_dir, tmp_path_factory.mktemp("text") / "run").path


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh fmloop home (tracking store, registry files, cache) for one test."""
    monkeypatch.setenv("FMLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    import fmloop.registry

    fmloop.registry._resolved.clear()
    return tmp_path / "home"


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("images") / "tree", n_per_class=16)


@pytest.fixture(scope="session")
def image_run(image_dir, tmp_path_factory) -> Path:
    return finetune_tiny("cnn-small", image_dir, tmp_path_factory.mktemp("image") / "run", epochs=2, batch_size=8).path


# Token classification (tagged sentences, a tiny tagger) ---------------------------------------------

PEOPLE = [["anna"], ["tom", "smith"], ["maria", "lopez"], ["jack"]]
PLACES = [["paris"], ["new", "york"], ["rome"], ["london"]]
FILLER = ["the", "film", "was", "good", "and", "we", "saw", "it", "with", "in", "today"]


def tagged_sentence(rng: random.Random) -> list[tuple[str, str]]:
    """Filler words around a person and a place: the tag is decided by the word itself."""
    person, place = rng.choice(PEOPLE), rng.choice(PLACES)
    words = [(w, "O") for w in rng.sample(FILLER, rng.randint(0, 3))]
    words += [(w, ("B-" if i == 0 else "I-") + "PER") for i, w in enumerate(person)]
    words += [(w, "O") for w in rng.sample(FILLER, rng.randint(1, 3))]
    words += [(w, ("B-" if i == 0 else "I-") + "LOC") for i, w in enumerate(place)]
    return words + [(w, "O") for w in rng.sample(FILLER, rng.randint(0, 2))]


def write_conll(path, n: int, seed: int) -> None:
    rng = random.Random(seed)
    sentences = ["\n".join(f"{w}\t{t}" for w, t in tagged_sentence(rng)) for _ in range(n)]
    path.write_text("\n\n".join(sentences) + "\n")


@pytest.fixture(scope="session")
def tagged_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tagged")
    write_conll(folder / "train.conll", 160, seed=1)
    write_conll(folder / "dev.conll", 100, seed=2)
    write_conll(folder / "test.conll", 40, seed=3)
    return folder


def finetune_tokens(base, data, out, strategy="full", **train):
    from fmloop.core.config import load_config
    from fmloop.train.config import FinetuneConfig
    from fmloop.train.finetune import run as finetune

    tree = {
        "task": "tokens",
        "strategy": strategy,
        "model": {"name": str(base)},
        "data": {"path": str(data)},
        "train": {"lr": 3e-3, "epochs": 6, **FAST, **train},
    }
    return finetune(load_config(FinetuneConfig, overrides=tree), out)


@pytest.fixture(scope="session")
def token_run(tiny_base, tagged_dir, tmp_path_factory):
    return finetune_tokens(tiny_base, tagged_dir, tmp_path_factory.mktemp("tokens") / "run").path
