import copy

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from fmloop.train.cpu_dropout import ATTENTION_NAME, CpuDropout, attention, dropout, install


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_keep_rate_and_scale_match_dropout(p):
    torch.manual_seed(0)
    x = torch.ones(1_000_003)  # not a multiple of 4: the last random word is cut
    y = dropout(x, p)
    dropped = (y == 0).float()
    assert abs(dropped.mean().item() - p) < 0.003
    # every one of the four 16-bit lanes cut from a 64-bit word drops at the same rate
    for lane in range(4):
        assert abs(dropped[lane::4].mean().item() - p) < 0.006
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / (1 - p)), rtol=1e-4)
    assert abs(y.mean().item() - 1.0) < 0.01  # unbiased, like nn.Dropout


def test_gradient_is_the_same_mask():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.2)
    y.sum().backward()
    assert torch.allclose(x.grad, (y / x).detach(), atol=1e-5)


def test_identity_when_not_training_or_p_zero_and_seeded():
    x = torch.randn(10, 10)
    assert dropout(x, 0.3, training=False) is x
    assert dropout(x, 0.0) is x
    torch.manual_seed(5)
    a = dropout(x, 0.3)
    torch.manual_seed(5)
    assert torch.equal(a, dropout(x, 0.3))
    module = CpuDropout(0.3).eval()
    assert module(x) is x


class _Heads(nn.Module):
    def __init__(self, causal: bool, groups: int = 1):
        super().__init__()
        self.is_causal, self.num_key_value_groups = causal, groups


def _tiny_p_same_as_sdpa(module, q, k, v, mask):
    # p below 1/65536 rounds to "keep everything": the explicit path must then equal SDPA's.
    ours, _ = attention(module, q, k, v, mask, dropout=1e-7, scaling=0.3)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, dropout=0.0, scaling=0.3)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, atol=1e-5)


def test_attention_matches_sdpa_with_padding_mask():
    torch.manual_seed(2)
    q, k, v = (torch.randn(3, 4, 7, 8) for _ in range(3))
    padding = torch.tensor([[1] * 7, [1] * 5 + [0] * 2, [1] * 3 + [0] * 4], dtype=torch.bool)
    mask = padding[:, None, None, :].expand(3, 1, 7, 7)  # SDPA's boolean form: True = attend
    _tiny_p_same_as_sdpa(_Heads(causal=False), q, k, v, mask)
    _tiny_p_same_as_sdpa(_Heads(causal=False), q, k, v, None)


def test_attention_matches_sdpa_causal_and_grouped():
    torch.manual_seed(3)
    q = torch.randn(2, 4, 6, 8)
    k, v = torch.randn(2, 2, 6, 8), torch.randn(2, 2, 6, 8)
    _tiny_p_same_as_sdpa(_Heads(causal=True, groups=2), q, k, v, None)


def test_attention_drops_weights_while_training():
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, 2, 5, 4) for _ in range(3))
    v = torch.ones_like(v)  # each output = sum of kept weights / keep rate
    out, _ = attention(_Heads(causal=False), q, k, v, None, dropout=0.5)
    ref, _ = sdpa_attention_forward(_Heads(causal=False), q, k, v, None, dropout=0.0)
    assert not torch.allclose(out, ref)
    assert torch.allclose(ref, torch.ones_like(ref), atol=1e-5)


def _bert():
    torch.manual_seed(0)
    return BertModel(
        BertConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            hidden_dropout_prob=0.1,
            attention_probs_dropout_prob=0.1,
            attn_implementation="sdpa",
        )
    )


def test_install_keeps_eval_outputs_and_what_is_saved(tmp_path):
    model = _bert()
    reference = copy.deepcopy(model).eval()
    assert install(model) > 0
    assert model.config._attn_implementation == ATTENTION_NAME
    assert all(type(m) is not nn.Dropout for m in model.modules())
    ids = torch.randint(0, 100, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    model.eval()
    assert torch.allclose(
        model(input_ids=ids, attention_mask=mask).last_hidden_state,
        reference(input_ids=ids, attention_mask=mask).last_hidden_state,
        atol=1e-5,
    )
    model.train()
    out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    out.sum().backward()
    assert model.embeddings.word_embeddings.weight.grad is not None
    model.save_pretrained(tmp_path)
    assert ATTENTION_NAME not in (tmp_path / "config.json").read_text()
    assert BertModel.from_pretrained(tmp_path).config._attn_implementation != ATTENTION_NAME


def test_install_on_a_causal_model_trains_and_matches_in_eval():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_embd=32, n_layer=2, n_head=4, n_positions=16, attn_implementation="sdpa")
    )
    reference = copy.deepcopy(model).eval()
    assert install(model) > 0
    ids = torch.randint(0, 50, (2, 10))
    model.eval()
    assert torch.allclose(model(input_ids=ids).logits, reference(input_ids=ids).logits, atol=1e-5)
    model.train()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    assert torch.isfinite(loss)


def test_install_without_dropout_changes_nothing():
    model = nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0))
    assert install(model) == 0
