"""Ref names: git's check-ref-format rules, so a name is always a safe relative path."""

from __future__ import annotations

from .errors import InvalidRefName

# git forbids these anywhere: space, ~ ^ : ? * [ \ (plus control characters, below).
_FORBIDDEN = frozenset(" ~^:?*[\\")


def check_ref_name(name: str) -> str:
    """Return `name` if it is a valid ref name, else raise InvalidRefName.

    git's rules, with one-level names allowed (``git check-ref-format --allow-onelevel``):
    '/'-separated components; none empty (no leading or trailing '/', no '//'); none
    starting with '.' (so no '.' / '..' components: a name can never leave its root);
    none ending with '.lock' (the lock-file suffix); no '..'; no control characters,
    space, ``~ ^ : ? * [ \\``; no '@{'; not '@'; not ending with '.'.
    """
    if not isinstance(name, str):
        raise InvalidRefName(f"ref name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidRefName("ref name is empty")
    if name == "@":
        raise InvalidRefName("ref name '@' is reserved")
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or ch in _FORBIDDEN:
            raise InvalidRefName(f"ref name {name!r} contains forbidden character {ch!r}")
    if ".." in name:
        raise InvalidRefName(f"ref name {name!r} contains '..'")
    if "@{" in name:
        raise InvalidRefName(f"ref name {name!r} contains '@{{'")
    if name.endswith("."):
        raise InvalidRefName(f"ref name {name!r} ends with '.'")
    for component in name.split("/"):
        if not component:
            raise InvalidRefName(f"ref name {name!r} has an empty component (leading, trailing or double '/')")
        if component.startswith("."):
            raise InvalidRefName(f"ref name {name!r} has a component starting with '.'")
        if component.endswith(".lock"):
            raise InvalidRefName(f"ref name {name!r} has a component ending with '.lock'")
    return name


def is_ref_name(name: str) -> bool:
    try:
        check_ref_name(name)
    except InvalidRefName:
        return False
    return True
