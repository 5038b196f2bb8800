"""Train a tokenizer on the corpus, or reuse a model's own.

WordPiece (BERT-style, lowercased) suits masked LM; byte-level BPE (GPT-2-style, no unknown
tokens) suits causal LM. Both are saved as standard fast tokenizers that
`AutoTokenizer.from_pretrained` loads anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from fmloop.core.errors import ModelError

EOS = "<|endoftext|>"


def _batches(texts: Iterable[str], size: int = 1000) -> Iterator[list[str]]:
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def train_wordpiece(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, strip_accents=None)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def train_byte_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_batches(texts), trainer=trainer)
    # GPT-2 has no padding token; reusing end-of-text keeps the vocabulary unchanged.
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS, pad_token=EOS)


def train_tokenizer(
    texts: Iterable[str], kind: str, vocab_size: int, min_frequency: int = 2
) -> PreTrainedTokenizerFast:
    if kind == "wordpiece":
        return train_wordpiece(texts, vocab_size, min_frequency)
    if kind == "bpe":
        return train_byte_bpe(texts, vocab_size, min_frequency)
    raise ValueError(f"unknown tokenizer kind {kind!r}")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """A tokenizer from a local folder (or hub id), with a clear error when there is none."""
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"Could not load a tokenizer from {path} ({reason}). A model folder needs its tokenizer files "
            f"(tokenizer.json or vocab.txt); pass --tokenizer.path=FOLDER to use another one."
        ) from None
    if not tok.is_fast:
        raise ModelError(f"The tokenizer in {path} is not a fast tokenizer; fmloop needs tokenizer.json.")
    return tok
