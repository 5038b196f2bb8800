"""The engine `auto` serves with: every candidate built on the tiny model, checked against the
PyTorch model and timed; the checks' thresholds; what the machine's CPU flags offer."""

import numpy as np
import pytest

from fmloop.models.formats.onnx import OnnxModel
from fmloop.models.loading import load, resolve
from fmloop.serve import backends
from fmloop.serve.backends import Candidate, _check, choose, cpu_has_int8_dot, default_offer


@pytest.fixture(scope="module")
def tiny(text_run):
    folder = resolve(str(text_run))
    return load(folder, device="cpu"), folder


def test_auto_checks_and_times_every_candidate_and_serves_the_fastest_that_agrees(tiny):
    model, folder = tiny
    # bf16 and int8 are offered here whatever this CPU has: their logic is what is tested
    choice = choose(model, folder, "auto", 1, offer=["torch", "torch-bf16", "onnx", "onnx-int8"])
    assert set(choice.candidates) == {"torch", "torch-bf16", "onnx", "onnx-int8"}
    assert choice.candidates["onnx"]["passed"] and choice.candidates["onnx"]["max_prob_diff"] <= 1e-3
    timed = {name: c for name, c in choice.candidates.items() if c["passed"]}
    assert choice.backend == min(timed, key=lambda name: timed[name]["ms"])
    assert choice.describe()["name"] == choice.backend and "parity" in choice.reason
    probes = backends.probe_inputs(model)
    expected = model.predict(probes[:8])
    assert [p["label"] for p in choice.model.predict(probes[:8])] == [p["label"] for p in expected]


def test_asked_for_engines_and_ready_made_onnx_folders_are_served_as_they_are(tiny):
    model, folder = tiny
    assert choose(model, folder, "torch", 1).model is model
    onnx = choose(model, folder, "onnx", 1)
    assert isinstance(onnx.model, OnnxModel) and onnx.backend == "onnx"
    again = choose(onnx.model, onnx.model.folder, "auto", 1)
    assert again.model is onnx.model and "already" in again.reason


def _candidate(name, reference, probs):
    candidate = Candidate(name, model=None)
    _check(candidate, reference, probs, "classification")
    return candidate


def test_parity_thresholds_fp32_exact_reduced_precision_nearly():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet([1, 1], size=200).astype(np.float32)
    assert _candidate("onnx", reference, reference + 5e-4).passed
    assert not _candidate("onnx", reference, reference + 5e-3).passed
    flipped = reference.copy()
    confident = np.flatnonzero(np.abs(reference[:, 0] - 0.5) > 0.2)
    flipped[confident[:2]] = flipped[confident[:2], ::-1]  # 2 of 200 decisions differ: 99% agree
    assert _candidate("onnx-int8", reference, flipped).agreement == 0.99
    assert _candidate("onnx-int8", reference, flipped).passed
    flipped[confident[2:6]] = flipped[confident[2:6], ::-1]  # 6 of 200: 97%
    assert not _candidate("onnx-int8", reference, flipped).passed


CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 {extra}\nbogomips\t: 4000\n"


def test_int8_and_bf16_are_offered_only_where_the_hardware_has_them(tiny, monkeypatch):
    model, _ = tiny
    assert not cpu_has_int8_dot(CPUINFO.format(extra="fma"))  # AVX2 only (Zen 2, Zen 3)
    assert cpu_has_int8_dot(CPUINFO.format(extra="avx512f avx512_vnni"))  # Zen 4, Ice Lake
    assert cpu_has_int8_dot(CPUINFO.format(extra="amx_bf16 amx_int8"))  # Sapphire Rapids
    monkeypatch.setattr(backends, "cpu_has_int8_dot", lambda: False)
    monkeypatch.setattr(backends, "bf16_native", lambda device: False)
    assert default_offer(model) == ["torch", "onnx"]
    monkeypatch.setattr(backends, "cpu_has_int8_dot", lambda: True)
    monkeypatch.setattr(backends, "bf16_native", lambda device: True)
    assert default_offer(model) == ["torch", "torch-bf16", "onnx", "onnx-int8"]
