"""Masked-LM pretraining throughput: fmloop's loop vs Hugging Face Trainer, same model, data, batch.

    .venv/bin/python bench/pretrain_throughput.py [--model bert-mini] [--steps 40] [--docs 4000]

Both train the same `bert-mini` (same config and initial weights) on the same 128-token chunks of
IMDb unlabeled reviews at batch 32, in the precision fmloop picks for this machine. The peer is
`transformers.Trainer` with `DataCollatorForLanguageModeling` (15% masking, dynamic padding).
Throughput counts real (non-padding) tokens. Model FLOPs utilisation (MFU) is the FLOPs one
training step actually needs (counted with torch's FlopCounterMode on full 128-token sequences)
times tokens/s, over the matmul peak this script measures on this machine for that precision;
the bf16 peak is measured and printed too.

Prints a Markdown block to paste into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fmloop.core.runtime import cpu_supports_bf16, setup_runtime  # noqa: E402
from fmloop.data.sources import load_text_corpus  # noqa: E402
from fmloop.data.text import MaskedLMCollator, tokenize_for_mlm  # noqa: E402
from fmloop.data.tokenizer import train_tokenizer  # noqa: E402
from fmloop.models.presets import PRESETS  # noqa: E402
from fmloop.train.callbacks import Callback  # noqa: E402
from fmloop.train.loop import BatchPlan, Loop, LoopSettings  # noqa: E402
from fmloop.train.objectives.mlm import MaskedLM  # noqa: E402
from fmloop.train.optim import build_optimizer, build_scheduler  # noqa: E402

WARMUP = 5


def matmul_peak(dtype: torch.dtype, n: int, seconds: float = 3.0) -> float:
    """Best GFLOP/s of an n x n x n matmul, over about `seconds`."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def step_flops(model, batch) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    objective = MaskedLM(model)
    with FlopCounterMode(display=False) as counter:
        out = objective(batch)
        (out["loss_sum"] / out["count"]).backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


class Stopwatch(Callback):
    def on_step_end(self, loop, logs):
        if loop.state.step == WARMUP:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def run_fmloop(model, store, tok, steps, batch, runtime) -> float:
    collate = MaskedLMCollator(store, tok, seed=0)
    opt = build_optimizer(model, 1e-3, 0.01, (0.9, 0.98))
    sched = build_scheduler(opt, 0, steps, "constant")
    watch = Stopwatch()
    loop = Loop(
        objective=MaskedLM(model),
        model=model,
        train=BatchPlan(store.lengths, batch, collate, seed=0),
        evaluate=None,
        optimizer=opt,
        scheduler=sched,
        runtime=runtime,
        settings=LoopSettings(total_steps=steps, eval_every=0, checkpoint_every=0),
        callbacks=[watch],
    )
    loop.run()
    return watch.end - watch.start


def run_hf_trainer(model, store, tok, steps, batch, precision) -> float:
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainerCallback, TrainingArguments

    ds = Dataset.from_dict({"input_ids": [store.get(i).tolist() for i in range(len(store))]})

    class Watch(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == WARMUP:
                self.start = time.perf_counter()
            self.end = time.perf_counter()

    watch = Watch()
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=batch,
            max_steps=steps,
            learning_rate=1e-3,
            weight_decay=0.01,
            adam_beta2=0.98,
            lr_scheduler_type="constant",
            logging_steps=10**6,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            dataloader_num_workers=0,
            seed=0,
            disable_tqdm=True,
            bf16=precision == "bf16",
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=ds,
            data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=0.15),
            callbacks=[watch],
        )
        trainer.train()
    return watch.end - watch.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="bert-mini")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--data", default=str(ROOT.parent / "shared/datasets/text/imdb/unsup.jsonl.gz"))
    args = parser.parse_args()

    runtime = setup_runtime(precision="auto", seed=0)
    corpus = load_text_corpus(args.data, max_docs=args.docs, seed=0)
    tok = train_tokenizer(corpus.splits["train"]["text"], "wordpiece", 8192)
    store = tokenize_for_mlm(corpus.splits["train"], tok, 128)
    mean_len = float(store.lengths.mean())
    preset = PRESETS.get(args.model)

    def fresh_model():
        torch.manual_seed(0)
        return preset.build(int(np.ceil(len(tok) / 8) * 8), tok, 128, None, {})

    full = np.flatnonzero(store.lengths == 128)[: args.batch]
    flops_per_token = step_flops(fresh_model(), MaskedLMCollator(store, tok, 0)(full, 0)) / (len(full) * 128)

    fp32_peak = matmul_peak(torch.float32, 2048)
    bf16_peak = matmul_peak(torch.bfloat16, 2048 if cpu_supports_bf16() else 256, seconds=2.0)
    peak = bf16_peak if runtime.precision == "bf16" else fp32_peak

    measured = args.steps - WARMUP
    tokens = measured * args.batch * mean_len
    ours = tokens / run_fmloop(fresh_model(), store, tok, args.steps, args.batch, runtime)
    with runtime.autocast():
        peer = tokens / run_hf_trainer(fresh_model(), store, tok, args.steps, args.batch, runtime.precision)
    mfu = ours * flops_per_token / (peak * 1e9)

    cpu = platform.processor() or platform.machine()
    print(f"""
### Masked-LM pretraining throughput ({datetime.date.today()})

`{" ".join([Path(sys.executable).name, "bench/pretrain_throughput.py", *sys.argv[1:]])}`, {args.model}, seq 128,
batch {args.batch}, {measured} timed steps after {WARMUP} warm-up, {os.cpu_count()} cores ({cpu}), torch {torch.__version__},
precision {runtime.precision} (native CPU bf16: {cpu_supports_bf16()}).

| measure | value |
|---|---|
| matmul peak fp32 / bf16 (GFLOP/s) | {fp32_peak:.0f} / {bf16_peak:.1f} |
| training FLOPs per token (counted) | {flops_per_token / 1e6:.1f} M |
| fmloop tokens/s | {ours:,.0f} |
| HF Trainer + DataCollatorForLanguageModeling tokens/s | {peer:,.0f} |
| **ratio fmloop / Trainer** | **{ours / peer:.2f}x** |
| **MFU vs {runtime.precision} matmul peak** | **{mfu:.0%}** |
""")


if __name__ == "__main__":
    main()
