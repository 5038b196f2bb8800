"""Inputs as the model reads them: texts checked before the tokenizer sees them, images decoded from
base64 with PIL and resized to the model's size; each problem a 413 or 422 naming the input."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from fmloop.feedback.schema import image_digest
from fmloop.serve.config import ServeConfig
from fmloop.serve.guards import ApiError, check_text
from fmloop.serve.model import Served


class ImageInput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_base64: str = Field(description="the image file's bytes (PNG, JPEG, ...), base64-encoded")


def decode_inputs(
    inputs: list, served: Served, config: ServeConfig
) -> tuple[list, list[int], list[str], dict[str, bytes]]:
    """(values for the model, lengths for batching, what the store keeps as each input, the image
    files' bytes by digest) with 413/422 for bad input."""
    if len(inputs) > config.max_inputs:
        raise ApiError(413, f"inputs: {len(inputs)} items, over the limit of {config.max_inputs} per request")
    if served.modality == "image":
        return decode_images(inputs, served)
    values = []
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise ApiError(422, f"inputs.{i}: this model reads text; send a string")
        if not item.strip():
            raise ApiError(422, f"inputs.{i}: empty text")
        if len(item) > config.max_text_chars:
            raise ApiError(422, f"inputs.{i}: {len(item)} characters, over the limit of {config.max_text_chars}")
        values.append(check_text(item, f"inputs.{i}"))
    return values, [len(v) for v in values], values, {}


def decode_images(inputs: list, served: Served) -> tuple[list, list[int], list[str], dict[str, bytes]]:
    from PIL import Image, UnidentifiedImageError

    values, kept, files = [], [], {}
    for i, item in enumerate(inputs):
        if not isinstance(item, ImageInput):
            raise ApiError(422, f"inputs.{i}: this model reads images; send {{'image_base64': ...}}")
        try:
            raw = base64.b64decode(item.image_base64, validate=True)
            with Image.open(io.BytesIO(raw)) as image:
                image.load()
                side, channels = served.image_shape
                mode, size = ("L" if channels == 1 else "RGB"), (side, side)
                pixels = np.asarray(image.convert(mode).resize(size), dtype=np.uint8)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"inputs.{i}.image_base64: not valid base64") from None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError):
            raise ApiError(422, f"inputs.{i}.image_base64: not an image file PIL can read") from None
        values.append(pixels if pixels.ndim == 3 else pixels[..., None])
        kept.append(image_digest(raw))
        files[kept[-1]] = raw
    return values, [0] * len(values), kept, files
