"""Text -> token ids -> batches for language-model pretraining.

Masked LM: every document becomes one or more chunks of at most `seq_len` tokens (long documents
are split, not truncated, so no text is wasted); batches group chunks of similar length and pad
only to the longest in the micro-batch (length-bucketed dynamic padding).

Causal LM: documents are joined with an end-of-text token and cut into full `seq_len` blocks
(sequence packing): no padding at all.

Token ids live in the Arrow table `datasets` wrote (memory-mapped); `TokenStore` reads its flat
value and offset buffers as numpy views, so a batch is a couple of slices, not a Python loop over
rows.

Randomness is a pure function of (seed, epoch, example index): masking and order do not depend on
how many processes share the batch or where a run was resumed, which is what makes resume exact
and DDP equal to a single process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from fmloop.core.errors import DataError, ModelError


def pad_width(longest: int, multiple: int) -> int:
    """Padded batch width. GPUs want multiples of 8 (tensor-core tiles); on a CPU every padding
    token is wasted work (12% of a step for 25-token sentences), so the CPU default is 1."""
    return int(-(-longest // multiple) * multiple)


def default_pad_multiple(device_type: str) -> int:
    return 8 if device_type == "cuda" else 1


class TokenStore:
    """Ragged int32 token sequences backed by an Arrow list column."""

    def __init__(self, dataset: Dataset, column: str = "input_ids"):
        table = (
            dataset.with_format("arrow")[:][column]
            if len(dataset)
            else pa.chunked_array([pa.array([], pa.list_(pa.int32()))])
        )
        array = table.combine_chunks() if isinstance(table, pa.ChunkedArray) else table
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        self.offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
        self.values = array.values.to_numpy(zero_copy_only=False)
        self.lengths = np.diff(self.offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def get(self, index: int) -> np.ndarray:
        return self.values[self.offsets[index] : self.offsets[index + 1]]

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())


def _special_ids(tokenizer: PreTrainedTokenizerBase) -> tuple[list[int], list[int]]:
    """Ids to put before and after each chunk (e.g. [CLS] ... [SEP])."""
    probe = "hello"
    with_specials = tokenizer(probe, add_special_tokens=True)["input_ids"]
    plain = tokenizer(probe, add_special_tokens=False)["input_ids"]
    for pos in range(len(with_specials) - len(plain) + 1):
        if with_specials[pos : pos + len(plain)] == plain:
            return with_specials[:pos], with_specials[pos + len(plain) :]
    return [], []


def tokenize_for_mlm(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, seq_len: int) -> TokenStore:
    if tokenizer.mask_token_id is None:
        raise ModelError(
            "Masked-LM pretraining needs a tokenizer with a mask token; this one has none. "
            "Use --objective clm, or a BERT-style tokenizer."
        )
    prefix, suffix = _special_ids(tokenizer)
    body = seq_len - len(prefix) - len(suffix)
    if body < 8:
        raise DataError(
            f"The 'train.seq_len' parameter of pretrain must be >= {len(prefix) + len(suffix) + 8}. Got {seq_len} instead."
        )

    def chunk(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        out = []
        for doc in ids:
            for start in range(0, len(doc), body):
                piece = doc[start : start + body]
                if len(piece) >= 2:  # a lone token teaches nothing
                    out.append(prefix + piece + suffix)
        return {"input_ids": out}

    tokenized = dataset.map(
        chunk,
        batched=True,
        remove_columns=dataset.column_names,
        desc="tokenizing (masked LM)",
        keep_in_memory=len(dataset) < 50_000,
    )
    return TokenStore(tokenized)


def tokenize_for_clm(dataset: Dataset, tokenizer: PreTrainedTokenizerBase, seq_len: int) -> TokenStore:
    eos = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
    if eos is None:
        raise ModelError("Causal-LM pretraining needs an end-of-text (eos) or separator token to join documents.")

    def pack(batch):
        ids = tokenizer(batch["text"], add_special_tokens=False)["input_ids"]
        stream = [t for doc in ids for t in (*doc, eos)]
        n = len(stream) // seq_len
        return {"input_ids": [stream[i * seq_len : (i + 1) * seq_len] for i in range(n)]}

    # Large map batches keep the tail dropped at each batch boundary small (< seq_len per 2,000 docs).
    tokenized = dataset.map(
        pack,
        batched=True,
        batch_size=2000,
        remove_columns=dataset.column_names,
        desc="tokenizing and packing (causal LM)",
        keep_in_memory=len(dataset) < 50_000,
    )
    store = TokenStore(tokenized)
    if len(store) == 0:
        raise DataError(
            f"The corpus is shorter than one block of train.seq_len={seq_len} tokens. "
            f"Add text or lower --train.seq_len."
        )
    return store


# Batch order -----------------------------------------------------------------------------------


def epoch_batches(lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: bool) -> list[np.ndarray]:
    """The global batches of one epoch, as arrays of example indices (partial last batch dropped).

    With `bucket`, a shuffled epoch is cut into windows of 50 batches, each window is sorted by
    length and cut into batches, and the batch order is shuffled again: batches hold similar
    lengths while every epoch still sees a new order.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    n_batches = len(order) // batch_size
    if n_batches == 0:
        return []
    order = order[: n_batches * batch_size]
    if bucket:
        window = batch_size * 50
        pieces = []
        for start in range(0, len(order), window):
            part = order[start : start + window]
            pieces.append(part[np.argsort(lengths[part], kind="stable")])
        order = np.concatenate(pieces)
        batches = order.reshape(n_batches, batch_size)
        batches = batches[rng.permutation(n_batches)]
    else:
        batches = order.reshape(n_batches, batch_size)
    return list(batches)


def split_micro(batch: np.ndarray, rank: int, world_size: int, accum: int) -> list[np.ndarray]:
    """This rank's micro-batches of a global batch: slice k = a * world_size + rank for accumulation step a."""
    parts = np.array_split(batch, world_size * accum)
    return [parts[a * world_size + rank] for a in range(accum)]


# Collation -------------------------------------------------------------------------------------


@dataclass
class MaskedLMCollator:
    """Dynamic padding + BERT masking: 15% of non-special tokens; of those 80% [MASK], 10% random, 10% kept."""

    store: TokenStore
    tokenizer: PreTrainedTokenizerBase
    seed: int
    mlm_probability: float = 0.15
    pad_multiple: int = 1

    def __post_init__(self):
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.mask_id = self.tokenizer.mask_token_id
        self.vocab_size = len(self.tokenizer)
        self.special = np.array(sorted(set(self.tokenizer.all_special_ids)), dtype=np.int64)

    def __call__(self, indices: np.ndarray, epoch: int) -> dict[str, torch.Tensor]:
        lengths = self.store.lengths[indices]
        width = pad_width(lengths.max(), self.pad_multiple)
        input_ids = np.full((len(indices), width), self.pad_id, dtype=np.int64)
        labels = np.full((len(indices), width), -100, dtype=np.int64)
        attention = np.zeros((len(indices), width), dtype=np.int64)
        for row, (index, n) in enumerate(zip(indices, lengths)):
            ids = self.store.get(index).astype(np.int64)
            rng = np.random.default_rng([self.seed, epoch + 1, int(index)])
            draw = rng.random((3, n))
            maskable = ~np.isin(ids, self.special)
            chosen = (draw[0] < self.mlm_probability) & maskable
            if not chosen.any() and maskable.any():  # every example teaches something
                chosen[np.flatnonzero(maskable)[int(draw[1, 0] * maskable.sum()) % maskable.sum()]] = True
            labels[row, :n] = np.where(chosen, ids, -100)
            replaced = ids.copy()
            to_mask = chosen & (draw[1] < 0.8)
            to_random = chosen & ~to_mask & (draw[2] < 0.5)
            replaced[to_mask] = self.mask_id
            replaced[to_random] = (draw[2][to_random] * 2 * self.vocab_size).astype(np.int64) % self.vocab_size
            input_ids[row, :n] = replaced
            attention[row, :n] = 1
        return {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention),
            "labels": torch.from_numpy(labels),
            "n_targets": int((labels != -100).sum()),
            "n_tokens": int(lengths.sum()),
        }


@dataclass
class CausalLMCollator:
    """Packed blocks: inputs are the block, targets the block shifted by one (done in the objective)."""

    store: TokenStore

    def __call__(self, indices: np.ndarray, epoch: int) -> dict[str, torch.Tensor]:
        block = np.stack([self.store.get(i) for i in indices]).astype(np.int64)
        return {
            "input_ids": torch.from_numpy(block),
            "n_targets": int(block.shape[0] * (block.shape[1] - 1)),
            "n_tokens": int(block.size),
        }
