"""Active learning choices, and a Label Studio round trip: suggest -> annotate -> import."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from fmloop.core.errors import ConfigError
from fmloop.label.active import choose, k_center_greedy
from tests.conftest import make_sentiment, run_cli, write_csv


def test_uncertainty_strategies_pick_the_least_sure_rows():
    probs = np.array([[0.99, 0.01], [0.55, 0.45], [0.8, 0.2], [0.5, 0.5]])
    assert choose("margin", probs, None, 2) == [3, 1]
    assert choose("entropy", probs, None, 2) == [3, 1]
    with pytest.raises(ConfigError, match="strategy"):
        choose("loudest", probs, None, 2)


def test_k_center_covers_the_clusters_before_repeating_one():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], dtype=float)
    feats = np.concatenate([c + rng.normal(0, 0.1, (25, 2)) for c in centres])
    picks = k_center_greedy(feats, 4, seed=1)
    assert sorted(set(int(p) // 25 for p in picks)) == [0, 1, 2, 3]
    labeled = feats[:25]  # cluster 0 already labeled
    assert all(int(p) // 25 != 0 for p in k_center_greedy(feats, 3, labeled))


def test_label_studio_round_trip(tmp_path, tiny_base, sentiment_dir):
    from tests.conftest import finetune_tiny

    run = finetune_tiny(tiny_base, sentiment_dir, tmp_path / "run", epochs=4)
    import csv

    known = {
        r["text"]
        for split in ("train", "validation", "test")
        for r in csv.DictReader(open(sentiment_dir / f"{split}.csv"))
    }
    pool = sorted({r["text"] for r in make_sentiment(60, seed=21)} - known)  # distinct, in no split yet
    write_csv(tmp_path / "pool.csv", [{"text": t} for t in pool])
    result = run_cli(
        "label",
        "suggest",
        "--model",
        str(run.path),
        "--pool",
        str(tmp_path / "pool.csv"),
        "--n",
        "5",
        "--strategy",
        "hybrid",
        "--labeled",
        str(sentiment_dir),
        "--out",
        str(tmp_path / "tasks"),
    )
    assert result.returncode == 0, result.stderr
    tasks = json.loads((tmp_path / "tasks" / "tasks.json").read_text())
    assert len(tasks) == 5 and tasks[0]["predictions"][0]["result"][0]["value"]["choices"][0] in (
        "negative",
        "positive",
    )
    assert '<Choice value="positive"/>' in (tmp_path / "tasks" / "label_config.xml").read_text()
    # What Label Studio exports after annotation (hand-written): two good tasks, one disagreement,
    # one label outside the classes, one task that was never suggested.
    done = []
    for t, choice in zip(tasks[:4], [["positive"], ["negative"], ["positive", "negative"], ["neutral"]]):
        done.append(
            {
                **t,
                "annotations": [
                    {
                        "was_cancelled": False,
                        "result": [
                            {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [c]}}
                        ],
                    }
                    for c in choice
                ],
            }
        )
    done.append(
        {
            "id": 999,
            "data": {"text": "an unknown task"},
            "annotations": [{"result": [{"value": {"choices": ["positive"]}}]}],
        }
    )
    (tmp_path / "export.json").write_text(json.dumps(done))
    result = run_cli(
        "label",
        "import",
        str(tmp_path / "export.json"),
        "--into",
        str(sentiment_dir),
        "--tasks",
        str(tmp_path / "tasks" / "tasks.json"),
        "--out",
        str(tmp_path / "merged"),
    )
    assert result.returncode == 0, result.stderr
    train = pq.read_table(tmp_path / "merged" / "train.parquet").to_pydict()
    assert len(train["text"]) == 240 + 2 and train["text"][-2:] == [tasks[0]["data"]["text"], tasks[1]["data"]["text"]]
    assert train["label"][-2:] == ["positive", "negative"]
    conflicts = [json.loads(line) for line in (tmp_path / "merged" / "conflicts.jsonl").read_text().splitlines()]
    assert sorted(c["reason"].split(":")[0].split(" ")[0] for c in conflicts) == ["annotators", "label", "task"]
    assert len(pq.read_table(tmp_path / "merged" / "validation.parquet")) == 100


def test_k_center_never_picks_a_row_twice_even_on_identical_features():
    from fmloop.label.active import k_center_greedy

    same = np.ones((20, 4))
    assert len(set(k_center_greedy(same, 5))) == 5
    assert len(set(k_center_greedy(same, 5, start=np.ones((3, 4))))) == 5
