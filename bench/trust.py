"""The trust checks on a real model: how faithful its explanations are, what temperature scaling
does to its calibration, and how long one explanation takes.

    .venv/bin/python bench/trust.py RUN_OR_MODEL --data ../shared/datasets/text/sst2 [--n 500] [--fit-rows 100]

    faithfulness   explanations of `--n` test sentences (fmloop.trust.explain), then the deletion
                   test against random words (fmloop.trust.faithfulness)
    calibration    the model's raw logits on the validation split fit a temperature
                   (fmloop.models.calibration.calibrate, what fine-tuning now runs at its end);
                   ECE and accuracy on the test split before and after
    latency        one sentence explained, median of 20 (the model loaded once; threads as set)

The model is read as fmloop.load reads it, but its own temperature (if any) is set aside, so the
before/after is measured from the raw logits.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import numpy as np

from fmloop.core.machine import cpu_name
from fmloop.data.labeled import load_labeled
from fmloop.models.calibration import calibrate
from fmloop.models.loading import load
from fmloop.tasks.metrics import expected_calibration_error, softmax
from fmloop.trust.explain import explain_texts
from fmloop.trust.faithfulness import deletion_curve, describe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data", required=True, help="labeled data with validation and test splits")
    parser.add_argument("--n", type=int, default=500, help="test sentences in the deletion test")
    parser.add_argument("--out", default="bench/results/trust.json")
    parser.add_argument(
        "--fit-rows", type=int, default=0, help="fit the temperature on this many validation rows (seeded; 0: all)"
    )
    args = parser.parse_args()
    model = load(args.model, device="cpu")
    model._temperature = 1.0  # measure from the raw logits
    data = load_labeled(args.data, labels=model.labels, hold_out=False)
    val, test = data.splits["validation"], data.splits["test"]
    result = {"model": args.model, "data": args.data, "cpu": cpu_name(), "date": datetime.date.today().isoformat()}

    raw_val = model.logits(list(val["text"]))
    raw_test = model.logits(list(test["text"]))
    y_val, y_test = np.asarray(val["label"]), np.asarray(test["label"])
    if args.fit_rows:
        pick = np.random.default_rng(0).permutation(len(y_val))[: args.fit_rows]
        raw_val, y_val = raw_val[pick], y_val[pick]
    fitted = calibrate(raw_val, y_val, f"validation split ({len(y_val)} rows)")
    t = fitted["temperature"]
    ece_before = expected_calibration_error(y_test, softmax(raw_test))[0]
    ece_after = expected_calibration_error(y_test, softmax(raw_test / t))[0]
    result["calibration"] = {
        **fitted,
        "test_rows": len(y_test),
        "test_ece_before": round(ece_before, 6),
        "test_ece_after": round(ece_after, 6),
        "test_accuracy_before": float((raw_test.argmax(-1) == y_test).mean()),
        "test_accuracy_after": float(((raw_test / t).argmax(-1) == y_test).mean()),
    }
    print(
        f"calibration: T = {t:.3f}; test ECE {ece_before:.4f} -> {ece_after:.4f} "
        f"({ece_after / ece_before:.2f}x); accuracy {result['calibration']['test_accuracy_before']:.4f} -> "
        f"{result['calibration']['test_accuracy_after']:.4f}"
    )

    if args.n:  # --n 0: calibration only
        explain_part(model, t, list(test["text"])[: args.n], result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} ({result['cpu']})")


def explain_part(model, temperature: float, texts: list[str], result: dict) -> None:
    model._temperature = temperature  # explanations explain the served (calibrated) confidence
    start = time.perf_counter()
    explained = explain_texts(model, texts)
    explain_s = time.perf_counter() - start
    curve = deletion_curve(model, texts, explained)
    result["faithfulness"] = {**curve, "explain_s": round(explain_s, 1)}
    print(describe(curve))

    one = texts[0]
    explain_texts(model, [one])  # warm
    times = []
    for sentence in texts[1:21]:
        start = time.perf_counter()
        explain_texts(model, [sentence])
        times.append(time.perf_counter() - start)
    result["latency_s"] = {"median": round(statistics.median(times), 3), "max": round(max(times), 3), "n": len(times)}
    print(f"one sentence explained: median {statistics.median(times):.3f} s, max {max(times):.3f} s over {len(times)}")
    deltas = [e.convergence_delta for e in explained if e.convergence_delta is not None]
    if deltas:
        result["convergence_delta"] = {"median": float(np.median(deltas)), "max": float(np.max(deltas))}


if __name__ == "__main__":
    main()
