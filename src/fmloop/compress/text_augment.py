"""Word-substitution augmentation of the training texts for distillation (TinyBERT's recipe).

A small labeled set is too little for a small student to learn the teacher's function from; more
text close to it, labeled by the teacher, is what makes distillation work (Jiao et al. 2020 grew
each GLUE training set about 20-fold this way). Each variant of a text swaps every word, with
probability `p`, for one of its `k` nearest words in the teacher's own token-embedding table
(cosine), so no extra model or word list is needed. Only words that are one whole token of the
teacher's vocabulary are swapped, for words of the same kind (alphabetic, not a word piece).
A swap may change the meaning ("good" and "bad" are neighbours): that is fine, because the teacher
labels every variant, and its soft targets, not the original label, are what the student learns.
"""

from __future__ import annotations

import re

import numpy as np
import torch

_SPLIT = re.compile(r"(\W+)")


def _normalise(tokenizer, word: str) -> str:
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    return normalizer.normalize_str(word) if normalizer is not None else word


def _whole_words(vocab: dict[str, int]) -> np.ndarray:
    """Ids of vocabulary entries that are whole alphabetic words of two or more letters."""
    return np.array(sorted(i for token, i in vocab.items() if len(token) > 1 and token.isalpha()), np.int64)


def neighbours(
    embeddings: torch.Tensor, queries: np.ndarray, candidates: np.ndarray, k: int, block: int = 2048
) -> np.ndarray:
    """For each query id, the `k` candidate ids with the most similar embedding (itself excluded):
    (len(queries), k)."""
    table = torch.nn.functional.normalize(embeddings.detach().float().cpu(), dim=-1)
    cand = table[torch.from_numpy(candidates)]
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        q = torch.from_numpy(queries[start : start + block])
        sims = table[q] @ cand.T
        sims[torch.from_numpy(candidates)[None, :] == q[:, None]] = -2.0  # not the word itself
        out[start : start + len(q)] = candidates[sims.topk(k, dim=1).indices.numpy()]
    return out


def augment_texts(
    texts: list[str], tokenizer, embeddings: torch.Tensor, n: int, p: float = 0.4, k: int = 15, seed: int = 0
) -> list[str]:
    """Up to `n` variants of every text (variants identical to their text or to one another are
    dropped), in text order."""
    if n <= 0 or not texts:
        return []
    vocab = tokenizer.get_vocab()
    candidates = _whole_words(vocab)
    allowed = set(candidates.tolist())
    pieces = [_SPLIT.split(text) for text in texts]
    ids: dict[str, int] = {}
    for parts in pieces:
        for word in parts[::2]:
            if word and word not in ids:
                ids[word] = vocab.get(_normalise(tokenizer, word), -1)
    known = {w: i for w, i in ids.items() if i in allowed}
    if not known or len(candidates) <= k:
        return []
    query = np.array(sorted(set(known.values())), np.int64)
    near = neighbours(embeddings, query, candidates, k)
    # the k substitutes of each known word, as strings, looked up once rather than per swap
    substitutes = {int(i): tokenizer.convert_ids_to_tokens(near[r].tolist()) for r, i in enumerate(query)}
    rng = np.random.default_rng([seed, 29])
    out: list[str] = []
    for text, parts in zip(texts, pieces):
        slots = [j for j in range(0, len(parts), 2) if parts[j] in known]
        if not slots:
            continue
        seen = {text}
        for _ in range(n):
            variant = list(parts)
            for j in slots:
                if rng.random() < p:
                    word = substitutes[known[parts[j]]][rng.integers(k)]
                    variant[j] = word.capitalize() if parts[j][:1].isupper() else word
            joined = "".join(variant)
            if joined not in seen:
                seen.add(joined)
                out.append(joined)
    return out
