"""Self-contained HTML reports: plots embedded as PNG data URIs (one file to open or mail), one
style sheet and one table helper for every report fmloop writes."""

from __future__ import annotations

import base64
import html
import io
import json


def figure_to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def png_file_data_uri(path) -> str:
    """A PNG file on disk as a data URI, to embed in a self-contained page."""
    with open(path, "rb") as fh:
        return "data:image/png;base64," + base64.b64encode(fh.read()).decode()


def html_table(mapping: dict) -> str:
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(format_value(v))}</td></tr>" for k, v in mapping.items()
    )
    return f"<table>{rows}</table>"


def format_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


CSS = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ddd;padding:4px 10px;text-align:left}
th{background:#f5f5f5;font-weight:600}img{max-width:100%}pre{background:#f7f7f7;padding:1em;overflow:auto}"""
