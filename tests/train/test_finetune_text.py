"""Text fine-tuning's preparation: how long a window the base is read with."""

import json
import shutil

from fmloop.train.finetune_text import _model_limit


def test_a_sentence_encoder_is_read_at_its_published_length(tiny_base, tmp_path):
    folder = tmp_path / "encoder"
    shutil.copytree(tiny_base, folder)
    positions = json.loads((folder / "config.json").read_text())["max_position_embeddings"]
    assert _model_limit(str(folder)) == positions  # a plain encoder: its position table
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    assert _model_limit(str(folder)) == 32  # the length its sentence training used
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 10_000}))
    assert _model_limit(str(folder)) == positions  # never past the position table
    assert _model_limit("bert-mini") == 512  # a preset from random weights
