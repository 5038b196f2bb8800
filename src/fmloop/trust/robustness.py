"""Does the answer survive what real inputs look like? A seeded perturbation suite.

Text (invariance tests: the right answer does not change):
    typos         a keyboard neighbour swapped in, or a letter dropped, in about one word in ten
    casing        all lower case; all upper case
    punctuation   punctuation removed; "!!" and "..." added
    whitespace    doubled spaces, a tab or newline between some words
    numbers       each number replaced by another (texts with digits only)
    names         a first name replaced by another (texts naming someone from a list only)
Text, directional (labels named positive and negative only): a clearly positive clause appended
must not lower the positive probability, a negative one the negative probability.
Images, at three graded severities each: gaussian noise, blur, brightness, contrast, JPEG quality.

Each perturbation reports accuracy on the perturbed inputs (the unchanged ones keep their answer)
with a 95% bootstrap interval, and the invariance rate: the share of changed inputs whose answer
held, with its interval. Small enough to write here; the libraries that do this (nlpaug,
imgaug) drag in their own model downloads or are no longer kept.
"""

from __future__ import annotations

import io
import re
import string

import numpy as np

from fmloop.models.inference import InferenceModel
from fmloop.tasks import get_task
from fmloop.tasks.bootstrap import mean_interval

KEYBOARD = ["qwertyuiop", "asdfghjkl", "zxcvbnm"]
NAMES = (
    "james mary john patricia robert jennifer michael linda william elizabeth david barbara richard susan "
    "joseph jessica thomas sarah charles karen daniel nancy matthew lisa anthony betty mark margaret paul "
    "sandra steven ashley andrew kimberly kevin emily brian donna george michelle edward carol ronald amanda"
).split()
NAME = re.compile(r"\b(" + "|".join(NAMES) + r")\b", re.IGNORECASE)
NUMBER = re.compile(r"\d+")
MIN_CHANGED = 30
DIRECTIONAL = {"positive": " i loved it .", "negative": " i hated it ."}


def _neighbours() -> dict[str, str]:
    out = {}
    for r, row in enumerate(KEYBOARD):
        for c, ch in enumerate(row):
            near = [row[c - 1] if c else "", row[c + 1] if c + 1 < len(row) else ""]
            near += [KEYBOARD[r2][c] for r2 in (r - 1, r + 1) if 0 <= r2 < len(KEYBOARD) and c < len(KEYBOARD[r2])]
            out[ch] = "".join(near)
    return out


NEIGHBOURS = _neighbours()


def _per_word(text: str, rng: np.random.Generator, change, share: float = 0.1) -> str:
    words = text.split(" ")
    candidates = [i for i, w in enumerate(words) if sum(ch.isalpha() for ch in w) >= 3]
    if not candidates:
        return text
    k = max(1, int(round(share * len(candidates))))
    for i in rng.choice(candidates, min(k, len(candidates)), replace=False):
        words[i] = change(words[i], rng)
    return " ".join(words)


def _swap_neighbour(word: str, rng) -> str:
    spots = [i for i, ch in enumerate(word) if ch.lower() in NEIGHBOURS]
    if not spots:
        return word
    i = int(rng.choice(spots))
    near = NEIGHBOURS[word[i].lower()]
    new = near[int(rng.integers(len(near)))]
    return word[:i] + (new.upper() if word[i].isupper() else new) + word[i + 1 :]


def _drop_letter(word: str, rng) -> str:
    spots = [i for i, ch in enumerate(word) if ch.isalpha()]
    i = int(rng.choice(spots))
    return word[:i] + word[i + 1 :]


def _other_number(match: re.Match, rng) -> str:
    value = int(match.group())
    new = value
    while new == value:
        new = int(rng.integers(0, max(10, value * 2 + 1)))
    return str(new)


def _other_name(match: re.Match, rng) -> str:
    old = match.group()
    new = NAMES[int(rng.integers(len(NAMES)))]
    while new == old.lower():
        new = NAMES[int(rng.integers(len(NAMES)))]
    return new.capitalize() if old[0].isupper() else new


def _extra_punctuation(text: str, rng) -> str:
    return re.sub(r"([.!?])", r"\1!!", text) if re.search(r"[.!?]", text) else text + " ..."


def _whitespace(text: str, rng) -> str:
    words = text.split(" ")
    return "".join(w + (rng.choice(["  ", "\t", "\n", " "]) if i < len(words) - 1 else "") for i, w in enumerate(words))


TEXT_PERTURBATIONS = {
    "typo: keyboard neighbour": lambda t, rng: _per_word(t, rng, _swap_neighbour),
    "typo: dropped letter": lambda t, rng: _per_word(t, rng, _drop_letter),
    "lower case": lambda t, rng: t.lower(),
    "upper case": lambda t, rng: t.upper(),
    "no punctuation": lambda t, rng: (
        re.sub(r"\s+", " ", t.translate(str.maketrans("", "", string.punctuation))).strip() or t
    ),
    "extra punctuation": _extra_punctuation,
    "whitespace noise": _whitespace,
    "numbers swapped": lambda t, rng: NUMBER.sub(lambda m: _other_number(m, rng), t),
    "names swapped": lambda t, rng: NAME.sub(lambda m: _other_name(m, rng), t),
}


def text_robustness(
    model: InferenceModel, texts: list[str], y: np.ndarray, seed: int = 0, batch_size: int = 64
) -> dict:
    """{perturbations: [...], directional: [...], summary} for a single-label classifier on labeled texts."""
    rng = np.random.default_rng(seed)
    clean = model.logits(list(texts), batch_size)
    clean_pred = clean.argmax(-1)
    rows = []
    for name, perturb in TEXT_PERTURBATIONS.items():
        changed = [perturb(t, rng) for t in texts]
        moved = np.array([a != b for a, b in zip(changed, texts)])
        pred = clean_pred.copy()
        if moved.any():
            idx = np.flatnonzero(moved)
            pred[idx] = model.logits([changed[i] for i in idx], batch_size).argmax(-1)
        rows.append(_row(name, pred, clean_pred, y, moved, rng))
    directional = _directional(model, texts, clean, rng, batch_size)
    return {"perturbations": rows, "directional": directional, "summary": summarize(rows, clean_pred, y)}


def _row(name: str, pred, clean_pred, y, moved, rng) -> dict:
    held = (pred == clean_pred)[moved].astype(float)
    correct = (pred == y).astype(float)
    return {
        "name": name,
        "changed": int(moved.sum()),
        "accuracy": round(float(correct.mean()), 6),
        "accuracy_95": mean_interval(correct, rng),
        "invariance": round(float(held.mean()), 6) if len(held) else None,
        "invariance_95": mean_interval(held, rng) if len(held) else None,
    }


def summarize(rows: list[dict], clean_pred: np.ndarray, y: np.ndarray) -> dict:
    """What the gate reads: clean accuracy, the mean accuracy under the perturbations that changed
    inputs, and the lowest invariance rate (with its perturbation)."""
    live = [r for r in rows if r["changed"]]
    # an invariance rate on a handful of changed inputs is noise: the worst is named among the rest
    sized = [r for r in live if r["changed"] >= MIN_CHANGED] or live
    worst = min(sized, key=lambda r: r["invariance"], default=None)
    return {
        "clean_accuracy": round(float((clean_pred == y).mean()), 6),
        "perturbed_accuracy": round(float(np.mean([r["accuracy"] for r in live])), 6) if live else None,
        "worst_invariance": worst["invariance"] if worst else None,
        "worst_perturbation": worst["name"] if worst else None,
    }


def accuracy_lost(summary: dict) -> float:
    """Clean accuracy minus the mean accuracy under the perturbations: how brittle a model is,
    apart from how accurate it is."""
    if summary["perturbed_accuracy"] is None:
        return 0.0
    return round(summary["clean_accuracy"] - summary["perturbed_accuracy"], 6)


def _directional(model: InferenceModel, texts, clean_logits, rng, batch_size) -> list[dict]:
    """Appending a clearly positive (negative) clause must not lower P(positive) (P(negative))."""
    labels = model.labels or []
    if not set(DIRECTIONAL) <= set(labels):
        return []
    probs = get_task(model.task).probabilities(clean_logits)
    out = []
    for label, clause in DIRECTIONAL.items():
        k = labels.index(label)
        moved = get_task(model.task).probabilities(model.logits([t + clause for t in texts], batch_size))
        held = (moved[:, k] >= probs[:, k] - 1e-4).astype(float)
        out.append(
            {
                "name": f"append {clause.strip()!r}: P({label}) does not fall",
                "rate": round(float(held.mean()), 6),
                "rate_95": mean_interval(held, rng),
                "n": len(texts),
            }
        )
    return out


# Images --------------------------------------------------------------------------------------------

SEVERITIES = (1, 2, 3)


def _noise(img, s, rng):
    return np.clip(img + rng.normal(0, (8, 16, 32)[s - 1], img.shape), 0, 255)


def _blur(img, s, rng):
    from PIL import ImageFilter

    return np.asarray(_pil(img).filter(ImageFilter.GaussianBlur((0.5, 1.0, 2.0)[s - 1])), dtype=np.float64).reshape(
        img.shape
    )


def _brightness(img, s, rng):
    return np.clip(img * (0.8, 0.6, 0.4)[s - 1], 0, 255)


def _contrast(img, s, rng):
    mean = img.mean()
    return np.clip(mean + (img - mean) * (0.7, 0.5, 0.3)[s - 1], 0, 255)


def _jpeg(img, s, rng):
    from PIL import Image

    buf = io.BytesIO()
    _pil(img).save(buf, format="JPEG", quality=(50, 20, 8)[s - 1])
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float64).reshape(img.shape)


def _pil(img):
    from PIL import Image

    arr = img.astype(np.uint8)
    return Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)


IMAGE_PERTURBATIONS = {"noise": _noise, "blur": _blur, "brightness": _brightness, "contrast": _contrast, "jpeg": _jpeg}


def image_robustness(model: InferenceModel, pixels: np.ndarray, y: np.ndarray, seed: int = 0) -> dict:
    """The image suite: every perturbation at every severity on uint8 images (N, H, W, C)."""
    rng = np.random.default_rng(seed)
    clean_pred = model.logits(pixels).argmax(-1)
    rows = []
    for name, perturb in IMAGE_PERTURBATIONS.items():
        for s in SEVERITIES:
            changed = np.stack([perturb(img.astype(np.float64), s, rng) for img in pixels]).round().astype(np.uint8)
            pred = model.logits(changed).argmax(-1)
            rows.append(_row(f"{name} (severity {s})", pred, clean_pred, y, np.ones(len(y), dtype=bool), rng))
    return {"perturbations": rows, "directional": [], "summary": summarize(rows, clean_pred, y)}


def robustness(model: InferenceModel, inputs, y: np.ndarray, seed: int = 0) -> dict | None:
    """The suite for the model's modality; None for tasks other than single-label classification."""
    if model.task != "classification":
        return None
    if model.modality == "image":
        return image_robustness(model, inputs, y, seed)
    return text_robustness(model, list(inputs), y, seed)
