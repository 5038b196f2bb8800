"""How far can a frozen base go? Logistic regression on each layer's mean-pooled features.

    .venv/bin/python bench/probe_ceiling.py --model MINILM [--data ../shared/datasets/text/sst2]

`--strategy linear-probe` trains one linear layer on the last layer's mean-pooled output of a
frozen base. This asks whether a better linear head could do much more: for every hidden layer
(0 = the embedding output), and for all layers concatenated, scikit-learn's logistic regression on
standardised features, fit to convergence, with C swept and the best C picked on the validation
split itself. Picking C on the split it is scored on flatters every row, so the table is an upper
bound on what any linear head on those frozen features reaches.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
C_GRID = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)


def read(folder: Path, split: str) -> tuple[list[str], np.ndarray]:
    with open(folder / f"{split}.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = sorted({r["label"] for r in rows})
    return [r["text"] for r in rows], np.array([labels.index(r["label"]) for r in rows])


def layer_features(model_dir: str, texts: list[str], max_length: int = 80) -> np.ndarray:
    """(rows, layers + 1, width): the mask-weighted mean of every hidden state."""
    import torch
    from transformers import AutoModel

    from fmloop.data.tokenizer import load_tokenizer
    from fmloop.models.pooled import mean_pool

    tokenizer, model = load_tokenizer(model_dir), AutoModel.from_pretrained(model_dir).eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), 64):
            enc = tokenizer(
                texts[i : i + 64], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            states = model(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], output_hidden_states=True
            ).hidden_states
            out.append(torch.stack([mean_pool(h, enc["attention_mask"]) for h in states], 1).numpy())
    return np.concatenate(out)


def best_accuracy(train: np.ndarray, y: np.ndarray, val: np.ndarray, yv: np.ndarray) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train)
    a, b = scaler.transform(train), scaler.transform(val)
    scores = {C: float((LogisticRegression(max_iter=3000, C=C).fit(a, y).predict(b) == yv).mean()) for C in C_GRID}
    C = max(scores, key=scores.get)
    return scores[C], C


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a Hugging Face encoder folder")
    parser.add_argument(
        "--data",
        type=Path,
        default=ROOT.parent / "shared" / "datasets" / "text" / "sst2",
        help="a folder with train.csv and validation.csv (text,label)",
    )
    args = parser.parse_args()
    start = time.time()
    (texts, y), (vtexts, yv) = read(args.data, "train"), read(args.data, "validation")
    train, val = layer_features(args.model, texts), layer_features(args.model, vtexts)
    print(f"features of {len(texts) + len(vtexts)} sentences in {time.time() - start:.0f}s\n")
    print("| features | best validation accuracy | at C |\n|---|---|---|")
    for layer in range(train.shape[1]):
        acc, C = best_accuracy(train[:, layer], y, val[:, layer], yv)
        print(f"| layer {layer}{' (embeddings)' if layer == 0 else ''} | {acc:.4f} | {C:g} |", flush=True)
    acc, C = best_accuracy(train.reshape(len(train), -1), y, val.reshape(len(val), -1), yv)
    print(f"| all {train.shape[1]} concatenated | {acc:.4f} | {C:g} |")


if __name__ == "__main__":
    main()
