"""redun objects -> the provenance API's specs, and stored values -> redun objects.

Values are hashed and serialized only through the backend's TypeRegistry, so the ids are
redun's own; Files and Tasks carry their subtype; a call's arguments carry the call nodes they
came from (upstream), found in redun's expression graph.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from redun.expression import Expression, SchedulerExpression, TaskExpression
from redun.file import File as RedunFile
from redun.handle import Handle
from redun.task import Task as RedunTask
from redun.utils import iter_nested_value
from redun.value import InvalidValueError, TypeRegistry

from objstore.backend import MISSING, ArgSpec, HandleSpec, Provenance, ValueSpec
from objstore.errors import ValueTooLarge
from objstore.model.value import file_subtype, task_subtype
from objstore.redun.errors import ObjstoreValueTooLarge


class RedunValues:
    def __init__(self, registry: TypeRegistry, max_value_size: int, prov: Callable[[], Provenance]):
        self.registry = registry
        self.max_value_size = max_value_size
        self._prov = prov
        self._stored_tasks: set[str] = set()  # bounded by the number of distinct tasks

    def forget(self) -> None:
        self._stored_tasks.clear()

    @staticmethod
    def subtype(value: Any) -> dict | None:
        if isinstance(value, RedunFile):
            return file_subtype(value.path)
        if isinstance(value, RedunTask):
            return task_subtype(value.name, value.namespace, value.source)
        return None

    def _too_large(self, value: Any, size: int) -> ObjstoreValueTooLarge:
        text = repr(value)
        text = text if len(text) < 80 else text[:77] + "..."
        return ObjstoreValueTooLarge(
            f"Value {text} is too large (> {self.max_value_size}) to store in the objstore repository. "
            "Increase the `max_value_size` setting to store larger values."
        )

    # -- values -------------------------------------------------------------------------------

    def record(self, value: Any, data: bytes | None = None) -> str:
        """Record a value (and its subvalues); its value hash."""
        if data is None and isinstance(value, RedunTask):
            # Every job start records its task: once stored, a task hash is all it takes (a
            # Task's value hash is its task hash; serializing it again would be the cost).
            task_hash = value.hash
            if task_hash in self._stored_tasks and not self._prov().core.needs_rewrite(task_hash):
                return task_hash
            recorded = self._record(value, None)
            self._stored_tasks.add(recorded)
            return recorded
        return self._record(value, data)

    def _spec(self, value: Any, data: bytes, value_hash: str) -> ValueSpec:
        registry = self.registry
        return ValueSpec(
            value_hash,
            registry.get_type_name(type(value)),
            registry.get_serialization_format(value),
            data,
            self.subtype(value),
        )

    def _record(self, value: Any, data: bytes | None) -> str:
        registry = self.registry
        value_interface = registry.get_value(value)
        if data is None:
            data = value_interface.serialize()
        if len(data) > self.max_value_size:
            raise self._too_large(value, len(data))
        value_hash = value_interface.get_hash(data=data)
        prov = self._prov()
        if prov.core.has(value_hash):
            return value_hash
        spec = ValueSpec(
            value_hash,
            registry.get_type_name(type(value)),
            value_interface.get_serialization_format(),
            data,
            self.subtype(value),
        )
        subvalues = []
        for sub in value_interface.iter_subvalues():
            sub_data = registry.serialize(sub)
            if len(sub_data) > self.max_value_size:
                raise self._too_large(sub, len(sub_data))
            subvalues.append(self._spec(sub, sub_data, registry.get_hash(sub, data=sub_data)))
        try:
            prov.values.record_value(spec, subvalues)
        except ValueTooLarge as exc:
            raise ObjstoreValueTooLarge(str(exc)) from None
        return value_hash

    def load(self, value_hash: str) -> tuple[Any, bool]:
        """(value, True), or (None, False) when absent or not loadable."""
        stored = self._prov().values.get_value(value_hash)
        if stored is MISSING:
            return None, False
        try:
            return self.registry.deserialize(stored.type, stored.data), True
        except InvalidValueError:
            return None, False

    # -- arguments and handles ----------------------------------------------------------------

    def _upstreams(self, expr_arg: Any) -> Iterator[str]:
        for value in iter_nested_value(expr_arg):
            if isinstance(value, TaskExpression) and not isinstance(value, SchedulerExpression):
                if value.call_hash:
                    yield value.call_hash
            elif isinstance(value, Expression):
                yield from self._upstreams(value._upstreams)

    def _arg(self, value: Any, expr: Any, *, position: int | None = None, key: str | None = None) -> ArgSpec:
        return ArgSpec(self.record(value), position=position, key=key, upstream=tuple(set(self._upstreams(expr))))

    def arg_specs(self, expr_args: tuple, eval_args: tuple) -> list[ArgSpec]:
        """A call's arguments: positional, then keywords present in both forms (by name), then
        keywords only the evaluated form has (as redun's db backend orders them)."""
        eval_pos, eval_kwargs = eval_args
        expr_pos, expr_kwargs = expr_args
        specs = [self._arg(v, e, position=i) for i, (e, v) in enumerate(zip(expr_pos, eval_pos))]
        for key in sorted(set(eval_kwargs) & set(expr_kwargs)):
            specs.append(self._arg(eval_kwargs[key], expr_kwargs[key], key=key))
        for key in eval_kwargs:
            if key not in expr_kwargs:
                specs.append(self._arg(eval_kwargs[key], eval_kwargs[key], key=key))
        return specs

    def handle_spec(self, handle: Handle) -> HandleSpec:
        info = handle.__handle__
        return HandleSpec(info.hash, info.fullname, info.key, self.record(handle))

    def advance_specs(self, handles: list[Handle], child: Handle) -> tuple[list[HandleSpec], HandleSpec, list[HandleSpec]]:
        """(parents, child, ancestors) of an advance: the ancestors are the fork parents not yet
        recorded (each marked recorded here, as redun's backend marks them)."""
        ancestors = []
        queue = [h.__handle__.fork_parent for h in handles if h.__handle__.fork_parent and not h.__handle__.is_recorded]
        while queue:
            handle = queue.pop()
            ancestors.append(self.handle_spec(handle))
            handle.__handle__.is_recorded = True
            if handle.__handle__.fork_parent:
                queue.append(handle.__handle__.fork_parent)
        child_spec = self.handle_spec(child)
        return [self.handle_spec(h) for h in handles], child_spec, ancestors

    @staticmethod
    def mark_recorded(handles: list[Handle]) -> None:
        for handle in handles:
            handle.__handle__.is_recorded = True


__all__ = ["RedunValues"]
