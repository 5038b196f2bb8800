"""Why a model answered what it did: one score per word of a text, per pixel of an image.

Methods, by what the model lets us compute (both from captum):

    integrated gradients   PyTorch fp32 models (full, mean-pooled, LoRA, the embedding classifier):
                           captum's LayerIntegratedGradients on the input embeddings, from a
                           baseline where every token but the special ones is padding, summed over
                           the embedding and over each word's pieces. Its completeness check (the
                           scores add up to the change of the output from the baseline) is reported
                           as the convergence delta; 50 steps, then 200 or 800 while it is over 5%
                           of that change (sharp models need more).
    ablation               models without gradients (ONNX, int8, ensembles): captum's
                           FeatureAblation, each word removed in turn (images: captum's Occlusion,
                           a grey patch slid over the image).

The explained output is the model's served confidence in `target` (its answer by default): the
calibrated probability for classification, the label's probability for multi-label, the score for
regression. Scores are on that scale: +0.30 means the word raised the answer's probability by about
0.30. Words are the whitespace-separated pieces of the text, so a page can shade exactly what the
user wrote; words the model never read (past its window) score 0 and are marked so.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from fmloop.core.errors import DataError
from fmloop.models.inference import ImageModel, InferenceModel, TextModel
from fmloop.tasks import get_task

WORD = re.compile(r"\S+")
STEPS = 50  # integration steps, raised 4x and 16x while the scores do not add up (see _until_complete)
MAX_BATCH = 100  # interpolated inputs per forward pass


@dataclass
class Explanation:
    target: str | None  # the label explained (None: a regression score)
    output: float  # the model's confidence in `target` (or score) on the whole input
    method: str
    words: list[dict] = field(default_factory=list)  # {"word", "start", "end", "score", "read"}
    heatmap: list[list[float]] | None = None  # images: (H, W) attribution summed over channels
    convergence_delta: float | None = None  # integrated gradients: sum(scores) - (F(x) - F(baseline))

    def as_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def word_spans(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in WORD.finditer(text)]


def has_gradients(model: InferenceModel) -> bool:
    """True for PyTorch fp32 models; int8 layers (torch.ao quantized) have no backward pass."""
    if not isinstance(model, (TextModel, ImageModel)):
        return False
    return not any("quantized" in type(m).__module__ for m in model.model.modules())


def _target_index(model: InferenceModel, target: str | None, logits: np.ndarray) -> int | None:
    if model.task == "regression":
        return None
    if target is None:
        return int(np.argmax(logits))
    if target not in model.labels:
        raise DataError(f"target {target!r} is not one of the model's labels ({', '.join(model.labels)}).")
    return model.labels.index(target)


def _served_output(task: str, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """The model's served outputs from its raw logits, differentiably: (N, K) probabilities, or (N,) scores."""
    if task == "classification":
        return torch.softmax(logits / temperature, -1)
    if task == "multilabel":
        return torch.sigmoid(logits)
    return logits[:, 0]


def _served_numpy(model: InferenceModel, logits: np.ndarray) -> np.ndarray:
    """(N, K) probabilities or (N,) scores from `model.logits` (already calibrated)."""
    if model.task == "regression":
        return logits[:, 0]
    return get_task(model.task).probabilities(logits)


# Text ----------------------------------------------------------------------------------------------


def explain_texts(
    model: InferenceModel, texts: list[str], target: str | None = None, steps: int = STEPS
) -> list[Explanation]:
    """One Explanation per text, of `target` (default: each text's own answer)."""
    if model.modality != "text":
        raise DataError("this model reads images: explain an image file or folder instead of text.")
    logits = model.logits(list(texts)) if texts else np.zeros((0, 1))
    if has_gradients(model):
        return [_integrated_gradients(model, t, _target_index(model, target, z), steps) for t, z in zip(texts, logits)]
    return [_word_ablation(model, t, _target_index(model, target, z)) for t, z in zip(texts, logits)]


def _pieces(model: TextModel, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of `text` as the model reads it (its window and truncation)."""
    tok = model.tokenizer
    enc = tok(text, truncation=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], [tuple(o) for o in enc["offset_mapping"]]
    keep = model.reading.cut(list(range(len(ids))), bool(ids) and ids[-1] in set(tok.all_special_ids))
    return [ids[i] for i in keep], [offsets[i] for i in keep]


def _to_words(text: str, offsets: list[tuple[int, int]], token_scores: np.ndarray) -> list[dict]:
    spans = word_spans(text)
    starts = np.array([s for s, _ in spans])
    scores, read = np.zeros(len(spans)), np.zeros(len(spans), dtype=bool)
    for (s, e), score in zip(offsets, token_scores):
        if e <= s or not len(spans):
            continue  # special tokens
        w = int(np.searchsorted(starts, s, side="right") - 1)
        if w >= 0:
            scores[w] += score
            read[w] = True
    return [
        {"word": text[s:e], "start": s, "end": e, "score": round(float(v), 6), "read": bool(r)}
        for (s, e), v, r in zip(spans, scores, read)
    ]


def _integrated_gradients(model: TextModel, text: str, target: int | None, steps: int) -> Explanation:
    from captum.attr import LayerIntegratedGradients

    net = model.model
    ids, offsets = _pieces(model, text)
    special = set(model.tokenizer.all_special_ids)
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    device = model.device
    input_ids = torch.tensor([ids], device=device)
    baseline = torch.tensor([[i if i in special else pad for i in ids]], device=device)
    mask = torch.ones_like(input_ids)

    def forward(input_ids, attention_mask):
        return _served_output(
            model.task, net(input_ids=input_ids, attention_mask=attention_mask).logits, model.temperature
        )

    was_training = net.training
    net.eval()
    try:
        ig = LayerIntegratedGradients(forward, net.get_input_embeddings())
        with torch.no_grad():
            out = forward(input_ids, mask)[0]
            change = float((out if target is None else out[target]) - _pick(forward(baseline, mask)[0], target))
        attributions, delta, steps = _until_complete(
            ig, input_ids, baseline, target, change, steps, additional_forward_args=(mask,)
        )
    finally:
        net.train(was_training)
    token_scores = attributions.sum(-1)[0].detach().float().cpu().numpy()
    return Explanation(
        target=None if target is None else model.labels[target],
        output=float(out if target is None else out[target]),
        method=f"integrated gradients ({steps} steps, padding baseline)",
        words=_to_words(text, offsets, token_scores),
        convergence_delta=float(delta.abs().max()),
    )


def _pick(out: torch.Tensor, target: int | None) -> torch.Tensor:
    return out if target is None else out[target]


def _until_complete(method, inputs, baseline, target, change: float, steps: int, **kwargs):
    """(attributions, delta, steps used): `method` (captum's integrated gradients) at `steps`, then 4x
    and 16x as many while the scores do not add up to the output's `change` within 5% of it (or
    0.005 absolute). A sharp model (a near-step output along the path) needs more than a smooth one."""
    for n in (steps, steps * 4, steps * 16):
        attributions, delta = method.attribute(
            inputs,
            baselines=baseline,
            target=target,
            n_steps=n,
            internal_batch_size=min(n, MAX_BATCH),
            return_convergence_delta=True,
            **kwargs,
        )
        if float(delta.abs().max()) <= max(0.05 * abs(change), 0.005):
            break
    return attributions, delta, n


def without_words(text: str, spans: list[tuple[int, int]], drop: set[int]) -> str:
    """`text` with the words at indices `drop` removed (the rest joined by single spaces)."""
    return " ".join(text[s:e] for i, (s, e) in enumerate(spans) if i not in drop)


def _word_ablation(model: InferenceModel, text: str, target: int | None) -> Explanation:
    from captum.attr import FeatureAblation

    spans = word_spans(text)

    def forward(present: torch.Tensor) -> torch.Tensor:
        variants = [without_words(text, spans, set(np.flatnonzero(row.numpy() < 0.5))) for row in present]
        return torch.from_numpy(_served_numpy(model, model.logits(variants))).float()

    present = torch.ones(1, max(len(spans), 1))
    output = float(forward(present)[0] if target is None else forward(present)[0, target])
    scores = (
        FeatureAblation(forward)
        .attribute(present, baselines=0.0, target=target, perturbations_per_eval=len(spans))[0]
        .numpy()
        if spans
        else np.zeros(0)
    )
    return Explanation(
        target=None if target is None else model.labels[target],
        output=output,
        method="ablation (each word removed in turn)",
        words=[
            {"word": text[s:e], "start": s, "end": e, "score": round(float(v), 6), "read": True}
            for (s, e), v in zip(spans, scores)
        ],
    )


def explain_one(model: InferenceModel, value, target: str | None = None) -> Explanation:
    """One text, or one uint8 image (H, W, C), explained."""
    if model.modality == "image":
        return explain_images(model, np.asarray(value)[None], target)[0]
    return explain_texts(model, [value], target)[0]


# Images --------------------------------------------------------------------------------------------


def explain_images(model: InferenceModel, pixels: np.ndarray, target: str | None = None) -> list[Explanation]:
    """One Explanation per uint8 image (N, H, W, C) with an (H, W) heatmap."""
    logits = model.logits(pixels)
    out = []
    for image, z in zip(pixels, logits):
        index = _target_index(model, target, z)
        if has_gradients(model):
            out.append(_image_gradients(model, image, index))
        else:
            out.append(_image_occlusion(model, image, index))
    return out


def _image_gradients(model: ImageModel, image: np.ndarray, target: int, steps: int = STEPS) -> Explanation:
    from captum.attr import IntegratedGradients

    from fmloop.data.augment import normalize, to_float

    net = model.model
    x = normalize(to_float(torch.from_numpy(image[None])), model.mean, model.std).to(model.device)
    black = normalize(to_float(torch.zeros_like(torch.from_numpy(image[None]))), model.mean, model.std).to(model.device)

    def forward(pixel_values):
        return _served_output(model.task, net(pixel_values=pixel_values).logits, model.temperature)

    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            output = float(forward(x)[0, target])
            change = output - float(forward(black)[0, target])
        attributions, delta, steps = _until_complete(IntegratedGradients(forward), x, black, target, change, steps)
    finally:
        net.train(was_training)
    heat = attributions[0].sum(0).detach().float().cpu().numpy()  # (C, H, W) -> (H, W)
    return Explanation(
        target=model.labels[target],
        output=output,
        method=f"integrated gradients ({steps} steps, black baseline)",
        heatmap=np.round(heat, 6).tolist(),
        convergence_delta=float(delta.abs().max()),
    )


def _image_occlusion(model: InferenceModel, image: np.ndarray, target: int) -> Explanation:
    from captum.attr import Occlusion

    h, w, c = image.shape
    window = (max(2, h // 8), max(2, w // 8), c)

    def forward(pixels: torch.Tensor) -> torch.Tensor:
        batch = pixels.round().clamp(0, 255).to(torch.uint8).numpy()
        return torch.from_numpy(_served_numpy(model, model.logits(batch))).float()

    x = torch.from_numpy(image[None].astype(np.float32))
    heat = Occlusion(forward).attribute(
        x,
        sliding_window_shapes=window,
        strides=(max(1, window[0] // 2), max(1, window[1] // 2), c),
        baselines=128.0,
        target=target,
        perturbations_per_eval=64,
    )[0]
    return Explanation(
        target=model.labels[target],
        output=float(forward(x)[0, target]),
        method=f"occlusion ({window[0]}x{window[1]} grey patch)",
        heatmap=np.round(heat.sum(-1).numpy(), 6).tolist(),
    )
