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
# Planes 15 and 16 (the supplementary private use areas): code points no script uses, for the
# stand-ins of _wordpiece_vocab
PRIVATE_USE = 0xF0000
PRIVATE_USE_SIZE = 0x20000 - 2


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
    normalizer = normalizers.BertNormalizer(lowercase=True, clean_text=True, strip_accents=None)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    vocab = _wordpiece_vocab(texts, vocab_size, min_frequency, specials, normalizer, pre_tokenizer)
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def _wordpiece_vocab(texts, vocab_size, min_frequency, specials, normalizer, pre_tokenizer) -> dict[str, int]:
    """WordPiece's vocabulary learned as tokenizers' WordPieceTrainer learns it (BPE merges, then
    `##` before the pieces that continue a word), but the same on every run.

    WordPieceTrainer numbers the `##` pieces in hash-map order, and those numbers break ties
    between equally frequent merges, so two runs on the same text learn different vocabularies
    (huggingface/tokenizers#1794) and a seeded pretraining cannot be repeated. Here every
    character is spelled as a private-use stand-in, one for a word's first character and another
    for the same character inside a word, so plain BPE, which numbers its alphabet in sorted
    order, learns the same merges every time; the stand-ins are translated back afterwards.
    """
    back: dict[str, str] = {}  # stand-in -> the character, with "##" when it continues a word
    first: dict[str, str] = {}
    inside: dict[str, str] = {}
    spelled: dict[str, str] = {}

    def stand_in(table: dict[str, str], char: str, prefix: str) -> str:
        code = table.get(char)
        if code is None:
            if len(back) >= PRIVATE_USE_SIZE:
                raise ValueError(f"more than {PRIVATE_USE_SIZE} distinct characters to train a WordPiece vocabulary on")
            code = table[char] = chr(PRIVATE_USE + len(back))
            back[code] = prefix + char
        return code

    def spell(word: str) -> str:
        out = spelled.get(word)
        if out is None:
            out = stand_in(first, word[0], "") + "".join(stand_in(inside, c, "##") for c in word[1:])
            spelled[word] = out
        return out

    def documents() -> Iterator[str]:
        for text in texts:
            words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
            yield " ".join(spell(word) for word, _ in words)

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=specials, show_progress=False
    )
    bpe.train_from_iterator(documents(), trainer=trainer)
    vocab = {}
    for token, i in sorted(bpe.get_vocab().items(), key=lambda item: item[1]):
        if token in specials:
            vocab[token] = i
        else:  # the first stand-in says whether the piece starts a word; the rest lose their "##"
            vocab[back[token[0]] + "".join(back[c].removeprefix("##") for c in token[1:])] = i
    return vocab


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
