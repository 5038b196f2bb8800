"""Drills that measure the promotion gate: its false-promotion rate where the challenger is no
better, its power where it is, and what labelling only the disagreements saves.

    .venv/bin/python bench/gate_drills.py                                  # synthetic scores
    .venv/bin/python bench/gate_drills.py --scores RUN/scores.json          # a retrain's stored scores

Every replay runs the whole procedure the gate runs (fmloop.feedback.drills): `--rounds`
successive challengers with alpha spent across them, a look after every `--look-every` labels, up
to `--budget` labels each. A/A swaps each stored disagreement's outcome with probability 1/2 (the
two models exactly as good); shuffled permutes the challenger's answers across the inputs. The
power curve uses synthetic disagreements at the stored (or given) disagreement rate, labelled
either where the two disagree (the shadow audit) or uniformly over all inputs.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np

from fmloop.core.machine import cpu_name
from fmloop.feedback import drills


def synthetic_scores(n: int, champion_accuracy: float, disagreement: float, seed: int = 0):
    """Labels and two models' answers: the champion right `champion_accuracy` of the time, the
    challenger differing from it on `disagreement` of the inputs (two classes)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    champion = np.where(rng.random(n) < champion_accuracy, y, 1 - y)
    challenger = np.where(rng.random(n) < disagreement, 1 - champion, champion)
    return y, champion, challenger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scores", help="a retrain run's scores.json (default: synthetic scores)")
    parser.add_argument("--disagreement", type=float, default=0.25, help="synthetic / power curve: disagreement rate")
    parser.add_argument("--replays", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=int, default=600, help="labels per challenger (the gate's max_labels)")
    parser.add_argument("--look-every", type=int, default=25)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()
    settings = dict(replays=args.replays, rounds=args.rounds, budget=args.budget, look_every=args.look_every,
                    alpha=args.alpha)  # fmt: skip
    if args.scores:
        stored = json.loads(open(args.scores).read())["target"]
        y, champion, challenger = (np.asarray(stored[k]) for k in ("y", "champion", "challenger"))
        # the stream's disagreement rate is the retrain's (its labels were drawn where the two disagree)
        decision = Path(args.scores).with_name("decision.json")
        rate = json.loads(decision.read_text())["disagreement_rate"] if decision.exists() else args.disagreement
        source = f"{args.scores} ({len(y)} labels)"
    else:
        y, champion, challenger = synthetic_scores(2000, 0.82, args.disagreement)
        rate, source = args.disagreement, f"synthetic: champion 0.82, disagreement {args.disagreement}"
    steps = drills.outcomes(y, champion, challenger)
    decisive = steps[steps != 0]
    print(f"{datetime.date.today()} on {cpu_name()}; scores: {source}; settings {settings}\n")
    print("| drill | replays | promoted | false-promotion rate [95%] |")
    print("|---|---|---|---|")
    for result in (
        drills.run("A/A (outcomes swapped at random)", drills.aa_draw(decisive), **settings),
        drills.run("shuffled challenger", drills.shuffled_draw(y, champion, challenger), **settings),
    ):
        low, high = result.interval
        print(f"| {result.name} | {result.replays} | {result.promoted} | {result.rate:.4f} [{low:.4f}, {high:.4f}] |")
    print(f"\nPower (first challenger's alpha spent as in round 1 of {args.rounds}), disagreement rate {rate:.3f}:\n")
    print(
        "| true gain (points) | win rate on disagreements | shadow audit: promoted within budget, median labels "
        "| uniform audit: promoted within budget, median labels | labels, shadow / uniform |"
    )
    print("|---|---|---|---|---|")
    one = settings | {"rounds": 1, "replays": max(200, args.replays // 5)}
    for gain in (0.0, 0.01, 0.02, 0.03, 0.04, 0.06):
        win = 0.5 + gain / (2 * rate)
        if win > 1:
            continue
        shadow = drills.run("shadow", drills.synthetic_draw(win), **one)
        uniform = drills.run("uniform", drills.synthetic_draw(win, rate), **one | {"budget": int(args.budget / rate)})
        ratio = (
            f"{shadow.median_labels / uniform.median_labels:.2f}"
            if shadow.median_labels and uniform.median_labels
            else "-"
        )
        print(
            f"| {100 * gain:+.0f} | {win:.3f} | {shadow.rate:.2f}, {shadow.median_labels or '-'} | "
            f"{uniform.rate:.2f}, {uniform.median_labels or '-'} | {ratio} |"
        )


if __name__ == "__main__":
    main()
