"""redun adapter: ObjstoreBackend and the ``[scheduler] setup_scheduler`` hook.

redun.ini::

    [backend]
    objstore_url = s3://bucket/repo        # or: db_uri = objstore+s3://bucket/repo

    [scheduler]
    setup_scheduler = objstore.redun::setup_scheduler

The names below are imported on first use, so ``objstore.redun.config`` (the settings, which
objstore's CLI reads too) is usable without importing redun.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from objstore.redun.backend import ObjstoreBackend
    from objstore.redun.config import resolve_url
    from objstore.redun.errors import ObjstoreRedunError, ObjstoreValueTooLarge

__all__ = ["ObjstoreBackend", "ObjstoreRedunError", "ObjstoreValueTooLarge", "setup_scheduler", "resolve_url"]

_LAZY = {
    "ObjstoreBackend": "objstore.redun.backend",
    "resolve_url": "objstore.redun.config",
    "ObjstoreRedunError": "objstore.redun.errors",
    "ObjstoreValueTooLarge": "objstore.redun.errors",
}

_BACKEND_OPTIONS = {
    "url",
    "storage_options",
    "index_dir",
    "durable",
    "max_value_size",
    "flush_interval",
    "flush_every",
    "create",
    "type_registry",
    "repo",
    "logger",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(module), name)


def setup_scheduler(config: Any = None, **kwargs: Any):
    """A Scheduler on an ObjstoreBackend; the repository comes from the [backend] section.

    Keyword arguments naming ObjstoreBackend options go to the backend, the rest to Scheduler.
    """
    from redun import Scheduler
    from redun.config import Config

    from objstore.redun.backend import ObjstoreBackend

    if config is None:
        config = Config()
    elif isinstance(config, dict):
        config = Config(config)
    backend_config = config.get("backend") or {}
    backend_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in _BACKEND_OPTIONS}
    backend = ObjstoreBackend(config=backend_config, **backend_kwargs)
    return Scheduler(config=config, backend=backend, **kwargs)
