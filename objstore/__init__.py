"""objstore: a git-internals-style, content-addressed provenance and cache store."""

__version__ = "0.1.0"
