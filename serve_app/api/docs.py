"""The `/docs` page: the OpenAPI document rendered server-side into plain HTML.

No scripts, fonts or styles from a CDN: the service is meant to run offline, and the page
must read the same there.
"""

from __future__ import annotations

import json
import re
import shlex
from html import escape
from typing import Any

BASE_URL = "http://127.0.0.1:8000"
_METHODS = ("get", "post", "put", "patch", "delete")
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #222; line-height: 1.45; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; margin-top: 2.5rem; }
.method { font-family: monospace; font-weight: bold; padding: .1rem .4rem; border-radius: 3px;
          background: #e8eef7; }
code, pre { font-family: ui-monospace, monospace; font-size: .9em; }
pre { background: #f5f5f5; padding: .6rem; overflow-x: auto; white-space: pre-wrap; }
table { border-collapse: collapse; margin: .4rem 0 1rem; }
th, td { border: 1px solid #ddd; padding: .25rem .5rem; text-align: left; vertical-align: top; }
"""


def _text(markdown: str) -> str:
    """Escaped text, with `code` spans as <code>."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", escape(markdown))


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/components/schemas/"):
        return document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return schema


def _type_of(document: dict[str, Any], schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[1]
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    kind = schema.get("type", "any")
    kind = " | ".join(kind) if isinstance(kind, list) else kind
    if schema.get("format") == "binary":
        return "file"
    if schema.get("contentEncoding") == "base64":
        return "string (base64)"
    return kind


def _example(schema: dict[str, Any]) -> Any:
    if schema.get("examples"):
        return schema["examples"][0]
    if "default" in schema:
        return schema["default"]
    return None


def _fields_table(document: dict[str, Any], schema: dict[str, Any]) -> str:
    schema = _resolve(document, schema)
    required = set(schema.get("required", []))
    rows = [
        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            escape(name),
            escape(_type_of(document, field)),
            "yes" if name in required else "",
            _text(field.get("description", "")),
        )
        for name, field in schema.get("properties", {}).items()
    ]
    if not rows:
        return ""
    head = "<tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _url(path: str, operation: dict[str, Any]) -> str:
    query = []
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            value = parameter.get("example", parameter["name"].upper())
            path = path.replace("{" + parameter["name"] + "}", str(value))
        elif parameter["in"] == "query" and "example" in parameter:
            query.append(f"{parameter['name']}={parameter['example']}")
    return BASE_URL + path + ("?" + "&".join(query) if query else "")


def curl_examples(path: str, method: str, operation: dict[str, Any]) -> list[str]:
    """Example command lines for one operation: multipart, and JSON where it differs."""
    url = _url(path, operation)
    start = "curl" if method == "get" else f"curl -X {method.upper()}"
    content = operation.get("requestBody", {}).get("content", {})
    if not content:
        return [f"{start} {url}"]
    examples = []
    form = content.get("multipart/form-data", {}).get("schema", {})
    if form:
        parts = []
        for name, field in form.get("properties", {}).items():
            if field.get("format") == "binary":
                parts.append(f"-F {name}=@{name}.jpg")
            elif name in form.get("required", []) or _example(field) is not None:
                parts.append("-F " + shlex.quote(f"{name}={_example(field)}"))
        examples.append(" ".join([start, url, *parts]))
    properties = content["application/json"]["schema"].get("properties", {})
    body: dict[str, Any] = {}
    images = []
    for name, field in properties.items():
        if field.get("contentEncoding") == "base64":
            images.append(name)
            body[name] = f"@@{name}@@"
        elif _example(field) is not None:
            body[name] = _example(field)
    if images:
        # Piped, not in argv: one argument may hold at most 128 kB on Linux.
        text = json.dumps(body)
        pieces = []
        for name in images:
            before, text = text.split(f'"@@{name}@@"', 1)
            pieces += [f"printf %s {shlex.quote(before + chr(34))}", f"base64 -w0 {name}.jpg"]
            text = '"' + text
        pieces.append(f"printf %s {shlex.quote(text)}")
        examples.append(
            f"({'; '.join(pieces)}) | {start} {url} "
            "-H 'Content-Type: application/json' --data-binary @-"
        )
    else:
        data = shlex.quote(json.dumps(body))
        examples.append(f"{start} {url} -H 'Content-Type: application/json' -d {data}")
    return examples


def _operation_html(document: dict[str, Any], path: str, method: str, op: dict) -> str:
    anchor = op["operationId"]
    html = [
        f'<h2 id="{escape(anchor)}"><span class="method">{method.upper()}</span> '
        f"<code>{escape(path)}</code></h2>",
        f"<p>{escape(op.get('summary', ''))}</p>",
    ]
    if op.get("description"):
        html.append(f"<p>{_text(op['description'])}</p>")
    parameters = op.get("parameters", [])
    if parameters:
        rows = "".join(
            f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
            f"<td>{escape(_type_of(document, p.get('schema', {})))}</td>"
            f"<td>{_text(p.get('description', ''))}</td></tr>"
            for p in parameters
        )
        html.append(
            "<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>type</th>"
            f"<th>description</th></tr>{rows}</table>"
        )
    content = op.get("requestBody", {}).get("content", {})
    for media_type, body in content.items():
        table = _fields_table(document, body["schema"])
        if table:
            html.append(f"<h3>Body: <code>{escape(media_type)}</code></h3>{table}")
    html.append("<h3>Responses</h3><table>")
    for status, response in op["responses"].items():
        html.append(
            f"<tr><td><code>{escape(status)}</code></td>"
            f"<td>{_text(response.get('description', ''))}</td></tr>"
        )
    html.append("</table><h3>Example</h3>")
    html.extend(f"<pre>{escape(line)}</pre>" for line in curl_examples(path, method, op))
    return "\n".join(html)


def render_docs(document: dict[str, Any]) -> str:
    """The whole reference page, self-contained."""
    info = document["info"]
    operations = [
        (path, method, item[method])
        for path, item in document["paths"].items()
        for method in _METHODS
        if method in item
    ]
    toc = "".join(
        f'<li><a href="#{escape(op["operationId"])}"><code>{method.upper()} '
        f"{escape(path)}</code></a> — {escape(op.get('summary', ''))}</li>"
        for path, method, op in operations
    )
    sections = "\n".join(_operation_html(document, *entry) for entry in operations)
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(info['title'])}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{escape(info['title'])} v{escape(info['version'])}</h1>"
        f"<p>{_text(info.get('description', ''))}</p>"
        '<p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a>.</p>'
        f"<ul>{toc}</ul>{sections}</body></html>\n"
    )
