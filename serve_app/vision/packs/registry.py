"""The registry of model packs: name -> pack class, each with a version string."""

from __future__ import annotations

from collections.abc import Callable

from serve_app.config import Settings
from serve_app.errors import InvalidParameter
from serve_app.vision.packs.base import ModelPack, PackInfo
from serve_app.vision.packs.dlib_r29 import DlibR29Pack
from serve_app.vision.packs.insightface_packs import INSIGHTFACE_PACKS

PACKS: dict[str, type[ModelPack]] = {cls.name: cls for cls in (DlibR29Pack, *INSIGHTFACE_PACKS)}
DEFAULT_PACK = DlibR29Pack.name


def pack_class(name: str) -> type[ModelPack]:
    """The pack class registered under `name`; a clear error listing the known ones if none."""
    try:
        return PACKS[name]
    except KeyError:
        known = ", ".join(sorted(PACKS))
        raise InvalidParameter(f"unknown model pack {name!r}; known packs: {known}") from None


def load_pack(settings: Settings, name: str | None = None) -> ModelPack:
    """Instantiate a prepared pack (default: settings.model_pack)."""
    return pack_class(name or settings.model_pack)(settings)


def ready_pack(
    settings: Settings, name: str | None = None, on_prepare: Callable[[str], None] | None = None
) -> ModelPack:
    """Load a pack, preparing an offline one first if needed (a one-off, never per request);
    `on_prepare` hears what is being prepared."""
    cls = pack_class(name or settings.model_pack)
    if not cls.is_prepared(settings.model_dir) and cls.offline:
        if on_prepare is not None:
            on_prepare(f"preparing model pack {cls.name} in {settings.model_dir} (once)…")
        cls.prepare(settings.model_dir)
    return cls(settings)


def list_packs(settings: Settings) -> list[PackInfo]:
    return [cls.info(settings.model_dir) for cls in PACKS.values()]


__all__ = [
    "DEFAULT_PACK",
    "PACKS",
    "ModelPack",
    "PackInfo",
    "list_packs",
    "load_pack",
    "ready_pack",
    "pack_class",
]
