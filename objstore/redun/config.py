"""Where the redun adapter's settings come from: redun.ini's [backend] section.

    [backend]
    objstore_url = s3://bucket/repo        # or: db_uri = objstore+s3://bucket/repo
    objstore_index_dir = …                 # default: objstore.repo.default_index_dir(url)
    objstore_durable = true                # fsync every flush, flush at every job end
    objstore_create = true                 # create the repository if it does not exist
                                           # (default: only `objstore init` creates one)
    objstore_storage_options = {"endpoint_url": …}        # JSON: fsspec options of the repository
    objstore_value_store_options = {"endpoint_url": …}    # JSON: of its value store (format 2.1)
"""

from __future__ import annotations

import os
import uuid
from typing import Any

URL_KEY = "objstore_url"
URI_PREFIX = "objstore+"
DEFAULT_DIRNAME = ".objstore"


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def resolve_url(url: str | None, config: Any) -> str:
    """The repository URL: explicit, then [backend] objstore_url, then an objstore+ db_uri,
    then ``.objstore/`` next to the redun config dir; with no config at all a fresh in-memory
    repository (as redun falls back to sqlite :memory:)."""
    if url:
        return url[len(URI_PREFIX) :] if url.startswith(URI_PREFIX) else url
    config = config or {}
    if config.get(URL_KEY):
        return config[URL_KEY]
    db_uri = config.get("db_uri") or ""
    if db_uri.startswith(URI_PREFIX):
        return db_uri[len(URI_PREFIX) :]
    config_dir = config.get("config_dir")
    if config_dir:
        return os.path.join(os.path.dirname(os.path.abspath(config_dir)), DEFAULT_DIRNAME)
    return f"memory://objstore-{uuid.uuid4().hex}"


__all__ = ["URL_KEY", "URI_PREFIX", "DEFAULT_DIRNAME", "truthy", "resolve_url"]
