"""The app factory uvicorn imports in each worker process: the settings travel in the environment
(FMLOOP_SERVE_CONFIG, written by `fmloop serve`), so every worker builds the same server."""

from __future__ import annotations

import json
import os

from fastapi import FastAPI

from fmloop.core.config import build_config
from fmloop.serve.app import create_app
from fmloop.serve.config import ServeConfig


def app_from_environment() -> FastAPI:
    return create_app(build_config(ServeConfig, json.loads(os.environ["FMLOOP_SERVE_CONFIG"])))
