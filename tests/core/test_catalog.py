import pytest

from fmloop.core.catalog import Catalog
from fmloop.core.errors import ModelError
from fmloop.models.presets import PRESETS


def test_unknown_name_lists_valid_ones_and_suggests():
    with pytest.raises(ModelError) as err:
        PRESETS.get("bert-mni")
    message = str(err.value)
    assert "Did you mean 'bert-mini'" in message
    for name in ("bert-tiny", "bert-mini", "bert-small", "gpt2-nano", "gpt2-mini"):
        assert name in message


def test_double_registration_is_refused():
    cat = Catalog("thing")
    cat.register("a")(object())
    with pytest.raises(ValueError):
        cat.register("a")(object())
