from transformers import AutoTokenizer

from fmloop.data.tokenizer import train_tokenizer
from tests.conftest import make_corpus


def test_wordpiece_round_trips_through_autotokenizer(tmp_path):
    tok = train_tokenizer(make_corpus(200), "wordpiece", vocab_size=150, min_frequency=1)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    ids = again("The cat sees the river.")["input_ids"]
    assert ids[0] == again.cls_token_id and ids[-1] == again.sep_token_id
    assert again.mask_token == "[MASK]" and again.pad_token == "[PAD]"
    assert again.decode(ids, skip_special_tokens=True) == "the cat sees the river."
    assert len(again) <= 150


def test_byte_bpe_has_no_unknowns_and_an_eos(tmp_path):
    tok = train_tokenizer(make_corpus(200), "bpe", vocab_size=300, min_frequency=1)
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "Ünïcödé never seen ✓"
    assert again.decode(again(text)["input_ids"]) == text
    assert again.eos_token == "<|endoftext|>" and again.pad_token_id == again.eos_token_id
