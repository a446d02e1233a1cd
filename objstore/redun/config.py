"""Where the redun adapter's settings come from: redun.ini's [backend] section, then the
environment variables objstore's CLI reads too (one configuration source for both).

    [backend]
    objstore_url = s3://bucket/repo        # or: db_uri = objstore+s3://bucket/repo
    objstore_index_dir = …                 # else $OBJSTORE_INDEX_DIR, else objstore.repo.default_index_dir(url)
    objstore_storage_options = {"endpoint_url": "…"}   # JSON; else $OBJSTORE_STORAGE_OPTIONS
    objstore_durable = true                # fsync every flush, flush at every job end
    objstore_create = true                 # create the repository if it does not exist
                                           # (default: only `objstore init` creates one)
    objstore_value_store_options = {"endpoint_url": "…"}  # JSON: of its value store (format 2.1);
                                           # else $OBJSTORE_VALUE_STORE_OPTIONS
    objstore_pack_cache_bytes = 536870912  # bound of the local cache of whole packs (remote
                                           # repositories; default 512 MiB; 0: none)

This module reads the environment because redun, not objstore's CLI, starts the processes that
use it (`redun run`, redun's CLI, the SQLAlchemy dialect behind an ``objstore+`` db_uri).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from objstore.errors import ObjstoreError

URL_KEY = "objstore_url"
URI_PREFIX = "objstore+"
DEFAULT_DIRNAME = ".objstore"
STORAGE_OPTIONS_KEY = "objstore_storage_options"
STORAGE_OPTIONS_ENV = "OBJSTORE_STORAGE_OPTIONS"
VALUE_STORE_OPTIONS_KEY = "objstore_value_store_options"
VALUE_STORE_OPTIONS_ENV = "OBJSTORE_VALUE_STORE_OPTIONS"
INDEX_DIR_KEY = "objstore_index_dir"
INDEX_DIR_ENV = "OBJSTORE_INDEX_DIR"


class ConfigError(ObjstoreError, ValueError):
    """A setting that cannot be used (bad JSON, not an object)."""


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def from_uri(db_uri: str) -> str:
    """The repository URL in an ``objstore+`` db_uri: ``objstore+file://localhost/abs/path`` (the
    spelling redun's URI handling keeps intact) is ``/abs/path``; ``objstore+s3://b/r`` is
    ``s3://b/r``. A query string (``?index_dir=…``) is not part of the URL."""
    url = db_uri[len(URI_PREFIX) :] if db_uri.startswith(URI_PREFIX) else db_uri
    url = url.split("?", 1)[0]
    for local in ("file://localhost/", "file:///"):
        if url.startswith(local):
            return "/" + url[len(local) :]
    return url


def to_uri(url: str, index_dir: str | None = None) -> str:
    """The ``objstore+`` db_uri naming a repository URL (what `objstore init --redun` writes)."""
    uri = URI_PREFIX + ("file://localhost" + os.path.abspath(url) if "://" not in url else url)
    return uri + (f"?index_dir={index_dir}" if index_dir else "")


def uri_index_dir(db_uri: str) -> str | None:
    found = parse_qs(urlsplit(db_uri).query).get("index_dir")
    return found[0] if found else None


def resolve_url(url: str | None, config: Any) -> str:
    """The repository URL: explicit, then [backend] objstore_url, then an objstore+ db_uri,
    then ``.objstore/`` next to the redun config dir; with no config at all a fresh in-memory
    repository (as redun falls back to sqlite :memory:)."""
    if url:
        return from_uri(url) if url.startswith(URI_PREFIX) else url
    config = config or {}
    if config.get(URL_KEY):
        return config[URL_KEY]
    db_uri = config.get("db_uri") or ""
    if db_uri.startswith(URI_PREFIX):
        return from_uri(db_uri)
    config_dir = config.get("config_dir")
    if config_dir:
        return os.path.join(os.path.dirname(os.path.abspath(config_dir)), DEFAULT_DIRNAME)
    return f"memory://objstore-{uuid.uuid4().hex}"


def json_object(text: str, where: str) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON: {exc}") from None
    if not isinstance(found, dict):
        raise ConfigError(f"{where} must be a JSON object")
    return found


def _options(config: Any, key: str, env_name: str, environ: Mapping[str, str] | None) -> dict[str, Any] | None:
    config = config or {}
    raw = config.get(key)
    if raw:
        return raw if isinstance(raw, dict) else json_object(str(raw), f"[backend] {key}")
    env = os.environ if environ is None else environ
    if env.get(env_name):
        return json_object(env[env_name], f"${env_name}")
    return None


def storage_options(config: Any, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """fsspec options: [backend] objstore_storage_options (JSON), else $OBJSTORE_STORAGE_OPTIONS."""
    return _options(config, STORAGE_OPTIONS_KEY, STORAGE_OPTIONS_ENV, environ)


def value_store_options(config: Any, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The value store's fsspec options: [backend] objstore_value_store_options (JSON), else
    $OBJSTORE_VALUE_STORE_OPTIONS (as the CLI); None: the repository's own when both are the
    same kind of storage."""
    return _options(config, VALUE_STORE_OPTIONS_KEY, VALUE_STORE_OPTIONS_ENV, environ)


def index_dir(config: Any, environ: Mapping[str, str] | None = None) -> str | None:
    """[backend] objstore_index_dir, else an ``?index_dir=`` in an objstore+ db_uri, else
    $OBJSTORE_INDEX_DIR; None: the default for the URL (objstore.repo.default_index_dir)."""
    config = config or {}
    if config.get(INDEX_DIR_KEY):
        return str(config[INDEX_DIR_KEY])
    db_uri = str(config.get("db_uri") or "")
    if db_uri.startswith(URI_PREFIX) and uri_index_dir(db_uri):
        return uri_index_dir(db_uri)
    env = os.environ if environ is None else environ
    return env.get(INDEX_DIR_ENV) or None


__all__ = [
    "URL_KEY", "URI_PREFIX", "DEFAULT_DIRNAME", "ConfigError", "truthy", "resolve_url", "from_uri",
    "to_uri", "uri_index_dir", "json_object", "storage_options", "value_store_options", "index_dir",
]
