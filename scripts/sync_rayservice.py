"""Regenerate the RayService's `serveConfigV2` from serve_config.yaml (`make manifests`).

serve_config.yaml is the one place deployment options live; manifests/rayservice.yaml embeds
it as a YAML block string, with the few values a pod needs changed (CLUSTER_OVERRIDES). Only
that block is rewritten: the rest of the manifest, comments included, stays as it is.

    python scripts/sync_rayservice.py          # rewrite the block
    python scripts/sync_rayservice.py --check  # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SERVE_CONFIG = REPO / "serve_config.yaml"
RAYSERVICE = REPO / "manifests" / "rayservice.yaml"

# serve_config.yaml binds the proxy to 127.0.0.1 so that a local `serve run` exposes nothing
# beyond the machine. In a pod the proxy must listen on the pod's IP: KubeRay's serve Service
# and its readiness probes reach it there.
CLUSTER_OVERRIDES: dict[str, Any] = {"http_options": {"host": "0.0.0.0"}}

_BLOCK_KEY = re.compile(r"^(?P<indent> *)serveConfigV2: *\|[-+]?\s*$")


def cluster_serve_config(config: dict[str, Any]) -> dict[str, Any]:
    """serve_config.yaml's content as the RayService runs it: CLUSTER_OVERRIDES merged in."""

    def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
        merged = copy.deepcopy(base)
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged

    return merge(config, CLUSTER_OVERRIDES)


def render_serve_config(config: dict[str, Any]) -> str:
    """The block's text (unindented): stable output, keys in serve_config.yaml's order."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=100)


def replace_block(manifest: str, block: str) -> str:
    """`manifest` with the body of its `serveConfigV2: |` block replaced by `block`."""
    lines = manifest.splitlines(keepends=True)
    keys = [i for i, line in enumerate(lines) if _BLOCK_KEY.match(line.rstrip("\n"))]
    if len(keys) != 1:
        raise ValueError("the RayService manifest needs exactly one `serveConfigV2: |` block")
    start = keys[0]
    key_indent = len(lines[start]) - len(lines[start].lstrip(" "))
    end = start + 1
    # The block runs while lines are blank or indented deeper than its key.
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip(" ")) > key_indent
    ):
        end += 1
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # trailing blank lines belong to what follows
    pad = " " * (key_indent + 2)
    body = [f"{pad}{text}\n" if text else "\n" for text in block.splitlines()]
    return "".join(lines[: start + 1] + body + lines[end:])


def synced_manifest(manifest: str, serve_config: str) -> str:
    """The RayService manifest text with serveConfigV2 regenerated from serve_config.yaml."""
    config = yaml.safe_load(serve_config)
    return replace_block(manifest, render_serve_config(cluster_serve_config(config)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the block is stale")
    args = parser.parse_args(argv)
    current = RAYSERVICE.read_text()
    wanted = synced_manifest(current, SERVE_CONFIG.read_text())
    relative = RAYSERVICE.relative_to(REPO)
    if current == wanted:
        print(f"{relative}: serveConfigV2 matches serve_config.yaml")
        return 0
    if args.check:
        print(f"{relative}: serveConfigV2 is stale; run `make manifests`", file=sys.stderr)
        return 1
    RAYSERVICE.write_text(wanted)
    print(f"{relative}: serveConfigV2 regenerated from serve_config.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
