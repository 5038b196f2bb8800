import numpy as np
import pytest
from datasets import Dataset

from fmloop.data.text import (
    CausalLMCollator,
    MaskedLMCollator,
    epoch_batches,
    split_micro,
    tokenize_for_clm,
    tokenize_for_mlm,
)
from fmloop.data.tokenizer import train_tokenizer
from tests.conftest import make_corpus


@pytest.fixture(scope="module")
def wordpiece():
    return train_tokenizer(make_corpus(300), "wordpiece", vocab_size=150, min_frequency=1)


def test_long_documents_are_chunked_not_truncated(wordpiece):
    doc = " ".join(make_corpus(30))
    n_plain = len(wordpiece(doc, add_special_tokens=False)["input_ids"])
    store = tokenize_for_mlm(Dataset.from_dict({"text": [doc]}), wordpiece, seq_len=32)
    assert store.lengths.max() <= 32
    assert store.n_tokens == n_plain + 2 * len(store)  # every token kept, [CLS]/[SEP] per chunk
    assert all(store.get(i)[0] == wordpiece.cls_token_id for i in range(len(store)))


def test_masking_rates_and_specials(wordpiece):
    store = tokenize_for_mlm(Dataset.from_dict({"text": make_corpus(400)}), wordpiece, seq_len=64)
    collate = MaskedLMCollator(store, wordpiece, seed=0, pad_multiple=8)
    batch = collate(np.arange(len(store)), epoch=0)
    ids, labels, attn = batch["input_ids"].numpy(), batch["labels"].numpy(), batch["attention_mask"].numpy()
    real = attn.astype(bool)
    chosen = labels != -100
    originals = np.zeros_like(ids)
    for row, idx in enumerate(range(len(store))):
        originals[row, : store.lengths[idx]] = store.get(idx)
    special = np.isin(originals, wordpiece.all_special_ids)
    assert not (chosen & special).any()  # [CLS]/[SEP]/[PAD] never masked
    rate = chosen.sum() / (real & ~special).sum()
    assert 0.13 < rate < 0.19
    masked = (ids == wordpiece.mask_token_id) & chosen
    kept = (ids == originals) & chosen
    assert 0.75 < masked.sum() / chosen.sum() < 0.85
    assert 0.06 < kept.sum() / chosen.sum() < 0.16  # 10% kept (+ random draws equal to the original)
    assert (ids[~real] == wordpiece.pad_token_id).all() and batch["input_ids"].shape[1] % 8 == 0


def test_masks_depend_only_on_example_and_epoch(wordpiece):
    store = tokenize_for_mlm(Dataset.from_dict({"text": make_corpus(50)}), wordpiece, seq_len=64)
    collate = MaskedLMCollator(store, wordpiece, seed=0)
    whole = collate(np.array([3, 7, 9]), epoch=2)["labels"]
    alone = collate(np.array([7]), epoch=2)["labels"]
    n = store.lengths[7]
    assert (whole[1, :n] == alone[0, :n]).all()
    assert not (collate(np.array([7]), epoch=3)["labels"][0, :n] == alone[0, :n]).all()


def test_causal_packing_fills_blocks():
    tok = train_tokenizer(make_corpus(300), "bpe", vocab_size=300, min_frequency=1)
    docs = make_corpus(200)
    store = tokenize_for_clm(Dataset.from_dict({"text": docs}), tok, seq_len=16)
    total = sum(len(tok(d)["input_ids"]) + 1 for d in docs)
    assert (store.lengths == 16).all() and len(store) == total // 16
    batch = CausalLMCollator(store)(np.arange(4), epoch=0)
    assert batch["input_ids"].shape == (4, 16) and batch["n_targets"] == 4 * 15
    assert (store.values == tok.eos_token_id).sum() > 0


def test_bucketing_groups_lengths_and_is_seeded():
    lengths = np.random.default_rng(0).integers(5, 128, size=4000)
    bucketed = epoch_batches(lengths, 32, seed=1, epoch=0, bucket=True)
    plain = epoch_batches(lengths, 32, seed=1, epoch=0, bucket=False)
    waste = lambda bs: sum(lengths[b].max() * len(b) - lengths[b].sum() for b in bs)
    assert waste(bucketed) < 0.2 * waste(plain)
    assert all((a == b).all() for a, b in zip(bucketed, epoch_batches(lengths, 32, seed=1, epoch=0, bucket=True)))
    assert not all((a == b).all() for a, b in zip(bucketed, epoch_batches(lengths, 32, seed=1, epoch=1, bucket=True)))
    assert len(np.unique(np.concatenate(bucketed))) == 4000 // 32 * 32


def test_micro_batches_partition_the_global_batch():
    batch = np.arange(10)
    parts = [p for rank in range(2) for p in split_micro(batch, rank, world_size=2, accum=2)]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))
