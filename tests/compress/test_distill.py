"""Distillation: the soft-target loss, a student that learns from the teacher, and early errors."""

import json

import pytest
import torch

from fmloop.compress.config import DistillConfig
from fmloop.compress.distill import Distillation
from fmloop.compress.distill import run as distill
from fmloop.core.config import load_config
from fmloop.core.errors import ConfigError, DataError, ModelError
from tests.conftest import FAST, make_sentiment, parent_paths, write_csv


class _Fixed(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.out = torch.nn.Parameter(logits.clone())

    def forward(self, **_):
        return type("Out", (), {"logits": self.out})()


def test_soft_loss_is_zero_when_the_student_matches_and_pulls_towards_the_teacher():
    teacher = torch.tensor([[2.0, -1.0], [-0.5, 1.5]])
    batch = {
        "input_ids": torch.zeros(2, 3, dtype=torch.long),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
        "labels": torch.tensor([0, 1]),
        "teacher_logits": teacher,
    }
    same = Distillation(_Fixed(teacher), "classification", temperature=2.0, alpha=1.0)
    assert same(batch)["loss_sum"].item() == pytest.approx(0.0, abs=1e-6)
    student = _Fixed(torch.zeros(2, 2))
    loss = Distillation(student, "classification", temperature=2.0, alpha=1.0)(batch)["loss_sum"]
    loss.backward()
    assert loss.item() > 0 and (student.out.grad.sign() == -teacher.sign()).all()  # descent moves towards the teacher


def _distill(teacher, data, out, student="bert-tiny", **sections):
    tree = {
        "teacher": [str(teacher)],
        "model": {"name": student},
        "data": {"path": str(data)},
        "train": {"lr": 3e-3, "epochs": 6, **FAST},
    }
    for key, value in sections.items():
        tree[key] = {**tree.get(key, {}), **value}
    return distill(load_config(DistillConfig, overrides=tree), out)


def test_a_preset_student_learns_from_the_teacher(text_run, sentiment_dir, tmp_path):
    unlabeled = tmp_path / "unlabeled.csv"
    write_csv(unlabeled, [{"text": r["text"]} for r in make_sentiment(80, seed=9)])
    run = _distill(text_run, sentiment_dir, tmp_path / "student", distill={"unlabeled": str(unlabeled)})
    manifest = run.read_manifest()
    assert manifest["kind"] == "distill" and parent_paths(run.path) == [str((text_run / "model").resolve())]
    assert manifest["data_summary"]["rows"]["train"] == 240 + 80  # teacher-labeled rows joined in
    assert manifest["data_summary"]["teacher_train_accuracy"] > 0.9
    assert manifest["metrics"]["test_accuracy"] > 0.85
    assert json.loads((run.path / "metrics.json").read_text())["metrics"]["accuracy"] > 0.85


def test_augmented_variants_join_the_training_rows(pooled_run, sentiment_dir, tmp_path):
    # a mean-pooling teacher (like sentence-embedding checkpoints) wraps its encoder: its embeddings are found
    run = _distill(pooled_run, sentiment_dir, tmp_path / "student", distill={"augment": 2, "augment_p": 0.2})
    rows = run.read_manifest()["data_summary"]["rows"]
    assert 240 + 200 < rows["train"] <= 240 * 3 and rows["validation"] == 100  # variants of train rows only
    # a 200-token vocabulary has few true neighbours, so variants are noisy: the student must still learn
    assert run.read_manifest()["metrics"]["test_accuracy"] > 0.75


def test_labels_that_differ_from_the_teacher_are_refused(text_run, tmp_path):
    write_csv(tmp_path / "colours.csv", [{"text": f"row {i}", "label": ["red", "green"][i % 2]} for i in range(40)])
    with pytest.raises(DataError, match="The teacher predicts"):
        _distill(text_run, tmp_path / "colours.csv", tmp_path / "student")
    assert not (tmp_path / "student" / "model").exists()


def test_a_student_too_small_for_the_teachers_vocabulary_is_refused(text_run, sentiment_dir, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(
            {
                "model_type": "bert",
                "vocab_size": 50,
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 1,
                "intermediate_size": 16,
            }
        )
    )
    with pytest.raises(ModelError, match="token embeddings"):
        _distill(text_run, sentiment_dir, tmp_path / "student", student=str(folder))


def test_a_teacher_is_required(sentiment_dir, tmp_path):
    with pytest.raises(ConfigError, match="teacher"):
        distill(
            load_config(
                DistillConfig, overrides={"model": {"name": "bert-tiny"}, "data": {"path": str(sentiment_dir)}}
            ),
            tmp_path / "student",
        )


def test_image_teacher_distils_into_a_preset(image_run, image_dir, tmp_path):
    run = _distill(
        image_run,
        image_dir,
        tmp_path / "student",
        student="cnn-small",
        train={"epochs": 1, "batch_size": 8, "lr": 2e-3},
    )
    manifest = run.read_manifest()
    assert manifest["kind"] == "distill" and manifest["labels"] == ["horizontal", "vertical"]
    assert (run.model_dir / "preprocessor_config.json").exists()


def test_student_embeddings_keep_the_teachers_geometry():
    from fmloop.compress.distill import init_embeddings_from

    torch.manual_seed(0)
    teacher, student = torch.nn.Module(), torch.nn.Module()
    teacher.get_input_embeddings = lambda: teacher_emb
    student.get_input_embeddings = lambda: student_emb
    teacher_emb = torch.nn.Embedding(50, 32)
    teacher_emb.weight.data = torch.randn(50, 6) @ torch.randn(6, 32)  # rank 6 < the student's 16
    student_emb = torch.nn.Embedding(50, 16)
    student_emb.weight.data.normal_(0, 0.02)
    assert init_embeddings_from(student, teacher)
    gram = lambda w: (w - w.mean(0)) @ (w - w.mean(0)).T
    t, s = gram(teacher_emb.weight).flatten(), gram(student_emb.weight).flatten()
    assert torch.corrcoef(torch.stack([t, s]))[0, 1] > 0.999  # same distances, new width
    assert student_emb.weight.std().item() == pytest.approx(0.02, rel=0.1)


def test_layer_map_pairs_layers_at_the_same_relative_depth():
    from fmloop.compress.distill import layer_map

    assert layer_map(2, 6) == [3, 6] and layer_map(3, 12) == [4, 8, 12] and layer_map(4, 4) == [1, 2, 3, 4]


def test_hidden_loss_is_zero_for_matching_states_and_trains_the_projection():
    from fmloop.compress.distill import mean_pool

    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    states = (torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    same = Distillation(_Fixed(torch.zeros(2, 2)), "classification", 2.0, 1.0, hidden_weight=1.0, widths=(1, 4, 4))
    assert same.hidden_loss(states, mask, mean_pool(states[1], mask)[:, None]).item() == pytest.approx(0, abs=1e-6)
    wide = Distillation(_Fixed(torch.zeros(2, 2)), "classification", 2.0, 1.0, hidden_weight=1.0, widths=(1, 4, 6))
    loss = wide.hidden_loss(states, mask, torch.randn(2, 1, 6))
    loss.backward()
    assert loss.item() > 0 and wide.projections[0].weight.grad.abs().sum() > 0


def test_hidden_state_matching_through_a_projection(pooled_run, sentiment_dir, tmp_path):
    from fmloop.models.loading import load

    unlabeled = tmp_path / "unlabeled.csv"
    write_csv(unlabeled, [{"text": r["text"]} for r in make_sentiment(60, seed=9)])
    run = _distill(
        pooled_run, sentiment_dir, tmp_path / "student", distill={"hidden_weight": 1.0, "unlabeled": str(unlabeled)}
    )  # student 128 wide, teacher 32
    manifest = run.read_manifest()
    assert manifest["data_summary"]["hidden_matching"]["teacher_layers"] == [1, 2]
    assert manifest["metrics"]["test_accuracy"] > 0.85
    student = load(run.path).model
    assert not any("projection" in name for name, _ in student.named_parameters())  # not saved with the student


def test_hidden_state_matching_needs_a_pytorch_text_teacher(image_run, image_dir, tmp_path):
    with pytest.raises(ConfigError, match="hidden_weight"):
        _distill(image_run, image_dir, tmp_path / "student", student="cnn-small", distill={"hidden_weight": 1.0})
    assert not (tmp_path / "student").exists()


def test_augmentation_needs_one_pytorch_text_teacher(text_run, pooled_run, sentiment_dir, tmp_path):
    with pytest.raises(ConfigError, match="--distill.augment needs one PyTorch text teacher"):
        distill(
            load_config(
                DistillConfig,
                overrides={
                    "teacher": [str(text_run), str(pooled_run)],
                    "model": {"name": "bert-tiny"},
                    "data": {"path": str(sentiment_dir)},
                    "distill": {"augment": 2},
                },
            ),
            tmp_path / "student",
        )
    assert not (tmp_path / "student").exists()
