import pytest

from fmloop.core.config import load_config, parse_duration, parse_overrides
from fmloop.core.errors import ConfigError
from fmloop.train.pretrain import PretrainConfig


def test_dotted_overrides_are_typed_and_nested():
    tree = parse_overrides(["--train.lr=3e-4", "model.name=bert-tiny", "--train.deterministic=true"])
    cfg = load_config(PretrainConfig, overrides=tree)
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.name == "bert-tiny"
    assert cfg.train.deterministic is True


def test_yaml_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 0.01\n  batch_size: 16\nobjective: clm\n")
    cfg = load_config(PretrainConfig, path, ["--train.lr=0.002"])
    assert (cfg.train.lr, cfg.train.batch_size, cfg.objective) == (0.002, 16, "clm")


def test_error_names_field_range_and_value():
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, overrides=["--train.lr=-1"])
    assert str(err.value) == "The 'train.lr' parameter of pretrain must be > 0. Got -1 instead."


def test_literal_error_lists_choices():
    with pytest.raises(
        ConfigError, match="'objective' parameter of pretrain must be one of 'mlm', 'clm', 'mae' or 'simclr'"
    ):
        load_config(PretrainConfig, overrides={"objective": "mmm"})


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError) as err:
        load_config(PretrainConfig, overrides=["--train.lrr=0.1"])
    assert "no parameter 'train.lrr'" in str(err.value)
    assert "Did you mean 'train.lr'" in str(err.value)


def test_override_without_value_is_rejected():
    with pytest.raises(ConfigError, match="has no value"):
        parse_overrides(["--train.lr"])


def test_resolved_config_has_every_default():
    resolved = load_config(PretrainConfig).resolved()
    assert resolved["train"]["seq_len"] == 128 and resolved["data"]["validation_fraction"] == 0.05


@pytest.mark.parametrize(
    "text,seconds", [("90s", 90), ("30m", 1800), ("1h30m", 5400), ("45", 45), ("2h", 7200), ("1d", 86400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_is_a_config_error():
    with pytest.raises(ConfigError, match="train.max_time"):
        load_config(PretrainConfig, overrides=["--train.max_time=soon"])
