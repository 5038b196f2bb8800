"""The Open Inference Protocol (v2, as KServe, Triton and MLServer speak it) beside fmloop's /v1, so
clients written for those servers work unchanged. Predictions made here go through the same batcher
and are stored like /v1's (their ids come back as the `prediction_id` output, for feedback).

    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/NAME, /v2/models/NAME/ready        (also under /versions/VERSION)
    POST /v2/models/NAME/infer                         (also under /versions/VERSION)

An infer request carries one input tensor of datatype BYTES and shape [N] or [N, 1]: the texts, or
for an image model each image file base64-encoded. The answer's outputs: `label` (BYTES [N]),
`probabilities` (FP32 [N, classes], classification and multi-label), `labels` (BYTES [N], a JSON list
per row, multi-label), `score` (FP32 [N], regression), `entities` (BYTES [N], a JSON list of
{label, start, end, text, score} per row, token classification) and `prediction_id` (BYTES [N]).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fmloop.serve.guards import ApiError
from fmloop.serve.identity import Identity
from fmloop.serve.inputs import ImageInput, decode_inputs
from fmloop.serve.model import Served
from fmloop.serve.state import ServerState, caller, server

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
State = Annotated[ServerState, Depends(server)]


class InferTensor(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] | None = None


class RequestedOutput(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[InferTensor] = Field(min_length=1, max_length=1, description="one BYTES tensor of shape [N] or [N, 1]")
    outputs: list[RequestedOutput] | None = Field(None, description="which outputs to return (default: all)")


@router.get("/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/health/ready")
async def ready(state: State) -> JSONResponse:
    is_ready = state.ready and state.holder.current is not None
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


@router.get("/models/{name}")
@router.get("/models/{name}/versions/{version}")
async def metadata(name: str, state: State, version: str | None = None) -> dict:
    served = _served(state, name, version)
    outputs = [{"name": "prediction_id", "datatype": "BYTES", "shape": [-1]}]
    if served.task == "regression":
        outputs.append({"name": "score", "datatype": "FP32", "shape": [-1]})
    elif served.task == "tokens":
        outputs.append({"name": "entities", "datatype": "BYTES", "shape": [-1]})
    else:
        n = len(served.labels or [])
        outputs.append({"name": "probabilities", "datatype": "FP32", "shape": [-1, n]})
        outputs.append(
            {"name": "labels" if served.task == "multilabel" else "label", "datatype": "BYTES", "shape": [-1]}
        )
    return {
        "name": served.name,
        "versions": [str(served.version)],
        "platform": f"fmloop-{served.modality}-{served.task}",
        "inputs": [{"name": "input", "datatype": "BYTES", "shape": [-1]}],
        "outputs": outputs,
        "parameters": {"labels": served.labels},
    }


@router.get("/models/{name}/ready")
@router.get("/models/{name}/versions/{version}/ready")
async def model_ready(name: str, state: State, version: str | None = None) -> dict:
    _served(state, name, version)
    return {"name": name, "ready": True}


@router.post("/models/{name}/infer")
@router.post("/models/{name}/versions/{version}/infer")
async def infer(
    name: str,
    body: InferRequest,
    request: Request,
    state: State,
    identity: Annotated[Identity | None, Depends(caller)],
    version: str | None = None,
) -> dict:
    served = _served(state, name, version)
    tensor = body.inputs[0]
    texts = _texts(tensor)
    inputs = [ImageInput(image_base64=t) for t in texts] if served.modality == "image" else texts
    values, lengths, stored, images = decode_inputs(inputs, served, state.config)
    user = identity.name if identity else None
    used, preds, ids = await state.predict(request, values, lengths, stored, user, images)
    outputs = _outputs(used, preds, ids)
    if body.outputs:
        wanted = [o.name for o in body.outputs]
        unknown = [w for w in wanted if w not in {o["name"] for o in outputs}]
        if unknown:
            raise ApiError(
                422, f"outputs: {unknown[0]!r} is not an output; this model has {[o['name'] for o in outputs]}"
            )
        outputs = [o for o in outputs if o["name"] in wanted]
    answer = {"model_name": used.name, "model_version": str(used.version), "outputs": outputs}
    if body.id is not None:
        answer["id"] = body.id
    return answer


def _served(state: ServerState, name: str, version: str | None) -> Served:
    served = state.current()
    if name != served.name:
        raise ApiError(404, f"model {name!r} is not served here; this server serves {served.name!r}")
    if version is not None and version != str(served.version):
        raise ApiError(404, f"{name} version {version} is not served here; version {served.version} is")
    return served


def _texts(tensor: InferTensor) -> list[str]:
    """The strings of a BYTES tensor of shape [N] or [N, 1], or 422 naming what is wrong."""
    where = f"inputs.0 ({tensor.name})"
    if tensor.datatype != "BYTES":
        raise ApiError(422, f"{where}: datatype {tensor.datatype!r}; send BYTES (texts, or base64 image files)")
    if not (len(tensor.shape) == 1 or (len(tensor.shape) == 2 and tensor.shape[1] == 1)):
        raise ApiError(422, f"{where}: shape {tensor.shape}; send [N] or [N, 1]")
    data = [row[0] if isinstance(row, list) and len(row) == 1 else row for row in tensor.data]
    if not data:
        raise ApiError(422, f"{where}: no data; send at least one input")
    if len(data) != tensor.shape[0]:
        raise ApiError(422, f"{where}: shape says {tensor.shape[0]} items, data holds {len(data)}")
    for i, item in enumerate(data):
        if not isinstance(item, str):
            raise ApiError(422, f"{where}.data.{i}: send a string")
    return data


def _outputs(served: Served, preds: list[dict], ids: list[str]) -> list[dict]:
    n = len(preds)
    outputs = [{"name": "prediction_id", "datatype": "BYTES", "shape": [n], "data": ids}]
    if served.task == "regression":
        outputs.append({"name": "score", "datatype": "FP32", "shape": [n], "data": [p["score"] for p in preds]})
        return outputs
    if served.task == "tokens":
        outputs.append(
            {"name": "entities", "datatype": "BYTES", "shape": [n], "data": [json.dumps(p["entities"]) for p in preds]}
        )
        return outputs
    labels = served.labels or []
    probabilities = [[p["probabilities"][label] for label in labels] for p in preds]
    outputs.append({"name": "probabilities", "datatype": "FP32", "shape": [n, len(labels)],
                    "data": [x for row in probabilities for x in row]})  # fmt: skip
    if served.task == "multilabel":
        outputs.append(
            {"name": "labels", "datatype": "BYTES", "shape": [n], "data": [json.dumps(p["labels"]) for p in preds]}
        )
    else:
        outputs.append({"name": "label", "datatype": "BYTES", "shape": [n], "data": [p["label"] for p in preds]})
    return outputs
