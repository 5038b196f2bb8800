"""Token classification models at inference: words in, a tag per word and entity spans out.

A model reads words, not characters: training data comes as words (CoNLL, JSONL tokens), and a
raw text is split into words first (`split_words`: runs of letters and digits, with inner hyphens
and dots kept, a leading apostrophe starting a word of its own as in "It 's", and every other
non-space character a word). Each word is cut into word pieces; the model's tag for a word is the
one it gives the word's first piece (the convention of BERT's paper and of Hugging Face's recipe),
and the loss reads first pieces only. Words past the model's reading (max_length pieces) get no
piece: they are tagged O.

`score_words` is the one scoring path (`word_logits` runs it with PyTorch, the ONNX format with
ONNX Runtime): validation during fine-tuning, `fmloop evaluate`, `fmloop predict`, export parity
and the server all go through it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from fmloop.data.reading import Reading
from fmloop.data.text import pad_width
from fmloop.models.inference import InferenceModel, inference_device, text_reading
from fmloop.tasks import get_task
from fmloop.tasks.tokens import IGNORE, entity_types

_WORD = re.compile(r"\w+(?:[-.]\w+)*|'\w+|\S")
OUTSIDE_LOGIT = 20.0  # the O logit of a word past the reading (others 0): tagged O, probability ~1


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """The words of a raw text and their character offsets [start, end)."""
    found = list(_WORD.finditer(text))
    return [m.group() for m in found], [m.span() for m in found]


def encode_words(tokenizer, sentences: list[list[str]], reading: Reading, tags: list[list[int]] | None = None):
    """Word pieces of pre-split sentences (cut at the reading's length): a list of (ids, first piece
    index of each word, or -1 for a word past the cut), and with `tags`, per-piece targets (the
    word's tag on its first piece, IGNORE elsewhere)."""
    enc = tokenizer(
        [list(s) for s in sentences], is_split_into_words=True, truncation=True, max_length=reading.max_length
    )
    rows = []
    for i, sent in enumerate(sentences):
        first = np.full(len(sent), -1, dtype=np.int64)
        for position, word in enumerate(enc.word_ids(i)):
            if word is not None and first[word] < 0:
                first[word] = position
        ids = np.asarray(enc["input_ids"][i], dtype=np.int64)
        if tags is None:
            rows.append((ids, first))
            continue
        targets = np.full(len(ids), IGNORE, dtype=np.int64)
        kept = first >= 0
        targets[first[kept]] = np.asarray(tags[i], dtype=np.int64)[kept]
        rows.append((ids, first, targets))
    return rows


def pad_pieces(rows: list, pad_id: int, multiple: int = 1) -> dict[str, np.ndarray]:
    """input_ids + attention_mask (int64, padded to the longest row, rounded up to `multiple`) from
    encode_words' rows."""
    width = pad_width(max(len(r[0]) for r in rows), multiple)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row[0])], mask[i, : len(row[0])] = row[0], 1
    return {"input_ids": ids, "attention_mask": mask}


def score_words(
    run_pieces,
    tokenizer,
    sentences: list[list[str]],
    reading: Reading,
    n_tags: int,
    batch_size: int = 64,
    progress=None,
    outside: int = 0,
) -> np.ndarray:
    """(N, longest sentence in words, K) float32 logits, NaN past each sentence's end, in input
    order, from `run_pieces(feeds) -> (B, T, K) piece logits` (PyTorch or ONNX Runtime); a word
    past the reading gets the `outside` tag (the id of O)."""
    out = np.full((len(sentences), max((len(s) for s in sentences), default=0), n_tags), np.nan, dtype=np.float32)
    order = np.argsort([len(s) for s in sentences], kind="stable")
    pad = tokenizer.pad_token_id or 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        rows = encode_words(tokenizer, [sentences[i] for i in idx], reading)
        logits = run_pieces(pad_pieces(rows, pad))
        for r, (i, (_, first)) in enumerate(zip(idx, rows)):
            kept = first >= 0
            words = out[i, : len(first)]
            words[kept] = logits[r, first[kept]]
            words[~kept] = 0.0
            words[~kept, outside] = OUTSIDE_LOGIT
        if progress is not None:
            progress(len(idx))
    return out


@torch.no_grad()
def word_logits(
    model: torch.nn.Module,
    tokenizer,
    sentences: list[list[str]],
    reading: Reading,
    device: torch.device,
    batch_size: int = 64,
    progress=None,
    outside: int = 0,
) -> np.ndarray:
    """`score_words` with a PyTorch token model (in fp32, as served)."""
    was_training = model.training
    model.eval()

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        tensors = {k: torch.from_numpy(v).to(device) for k, v in feeds.items()}
        return model(**tensors).logits.float().cpu().numpy()

    try:
        return score_words(run, tokenizer, sentences, reading, model.config.num_labels, batch_size, progress, outside)
    finally:
        model.train(was_training)


def as_words(inputs) -> tuple[list[list[str]], list[list[tuple[int, int]] | None], list[str]]:
    """(words, character offsets or None, text) per input: a raw text is split into words; a list
    of words is taken as it is (offsets into the words joined by spaces)."""
    words, offsets, texts = [], [], []
    for item in inputs:
        if isinstance(item, str):
            w, o = split_words(item)
            words.append(w)
            offsets.append(o)
            texts.append(item)
        else:
            w = [str(x) for x in item]
            starts = np.cumsum([0] + [len(x) + 1 for x in w[:-1]]).tolist()
            words.append(w)
            offsets.append([(s, s + len(x)) for s, x in zip(starts, w)])
            texts.append(" ".join(w))
    return words, offsets, texts


def spans(decoded: list[dict], words, offsets, texts) -> list[dict]:
    """The task's decoding with each entity's characters: {"entities": [{"label", "start", "end",
    "text", "score"}], "words", "tags"}."""
    out = []
    for answer, w, o, text in zip(decoded, words, offsets, texts):
        entities = []
        for e in answer["entities"]:
            start, end = o[e["first"]][0], o[e["last"]][1]
            entities.append(
                {"label": e["label"], "start": start, "end": end, "text": text[start:end], "score": e["score"]}
            )
        out.append({"entities": entities, "words": w, "tags": answer["tags"]})
    return out


def predict_entities(model: InferenceModel, inputs, batch_size: int = 64, progress=None) -> list[dict]:
    """What `predict` answers for a token model (PyTorch or ONNX): entities with characters."""
    words, offsets, texts = as_words(list(inputs))
    decoded = get_task("tokens").decode(model.logits(words, batch_size, progress), model.labels)
    return spans(decoded, words, offsets, texts)


def entity_tags(entities: list[tuple[str, int, int]], text: str, labels: list[str]) -> list[str]:
    """The tags of `text`'s words (as split_words cuts it) that mark `entities` ((type, start, end)
    character spans), in the model's scheme (BIOES where its tags have S-/E-, else IOB2). A span
    covers every word it overlaps. ValueError, naming the entity, for a type the model does not tag,
    a span outside the text or over no word, and two entities on one word."""
    words, offsets = split_words(text)
    tags = ["O"] * len(words)
    bioes = any(t[:2] in ("S-", "E-") for t in labels)
    types = entity_types(labels)
    for i, (kind, start, end) in enumerate(entities):
        if kind not in types:
            raise ValueError(f"label.{i}: {kind!r} is not an entity type of the model ({', '.join(types)})")
        if not 0 <= start < end <= len(text):
            raise ValueError(f"label.{i}: characters {start}..{end} are not a span of the {len(text)}-character input")
        covered = [j for j, (a, b) in enumerate(offsets) if a < end and b > start]
        if not covered:
            raise ValueError(f"label.{i}: characters {start}..{end} hold no word of the input")
        if any(tags[j] != "O" for j in covered):
            raise ValueError(f"label.{i}: {text[start:end]!r} overlaps another entity; send each word in one entity")
        for k, j in enumerate(covered):
            last = k == len(covered) - 1
            prefix = "B" if k == 0 else "I"
            if bioes and last:
                prefix = "S" if k == 0 else "E"
            tags[j] = f"{prefix}-{kind}"
    missing = next((t for t in tags if t not in labels), None)
    if missing is not None:
        raise ValueError(f"label: the model has no tag {missing!r} (its tags: {', '.join(labels)})")
    return tags


def stored_entities(entities: list[tuple[str, int, int]], text: str, labels: list[str]) -> str:
    """The form the feedback store keeps a text's entities in (tasks/catalog.py): its words' tags."""
    tags = entity_tags(entities, text, labels)
    return get_task("tokens").stored([labels.index(t) for t in tags], labels)


def outside_id(labels: list[str]) -> int:
    return labels.index("O") if "O" in labels else 0


class TokenModel(InferenceModel):
    """A fine-tuned PyTorch token classifier: `predict(["Ada Lovelace lived in London"])` ->
    entities with character offsets. Inputs are raw texts or lists of words."""

    task = "tokens"

    def __init__(self, model: torch.nn.Module, tokenizer, folder: Path, device: str | torch.device = "cpu"):
        self.device = inference_device(device)
        self.model, self.tokenizer, self.folder = model.to(self.device), tokenizer, folder
        self.labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
        self.reading = text_reading(model.config)
        self.outside = outside_id(self.labels)

    def encode(self, inputs) -> dict[str, np.ndarray]:
        """The word pieces the model reads (for export traces)."""
        rows = encode_words(self.tokenizer, as_words(inputs)[0], self.reading)
        return pad_pieces(rows, self.tokenizer.pad_token_id or 0)

    def raw_logits(self, inputs, batch_size: int = 64, progress=None) -> np.ndarray:
        words, _, _ = as_words(inputs)
        return word_logits(
            self.model, self.tokenizer, words, self.reading, self.device, batch_size, progress, self.outside
        )
