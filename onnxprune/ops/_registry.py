"""The op handler registry.

A handler is a function `handler(ctx: NodeContext) -> None` that states, through `ctx`,
how one node's channels couple: which output axes carry which input channels, which
constant inputs are sliced along which axis, which weights create new channels. A node
whose (domain, op_type, opset) has no handler is a barrier: every channel that touches
it is frozen, with the reason recorded.

    @register("Relu", "Sigmoid")
    def channelwise(ctx): ...

    @register("Split", since=13)   # opset range [since, until)
    def split_13(ctx): ...
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..analysis import NodeContext

Handler = Callable[["NodeContext"], None]


@dataclass(frozen=True)
class _Entry:
    since: int
    until: int
    handler: Handler


_HANDLERS: dict[tuple[str, str], list[_Entry]] = {}
_loaded = False


def register(
    *op_types: str, domain: str = "", since: int = 1, until: int = 10**9
) -> Callable[[Handler], Handler]:
    """Register `handler` for each op type in `domain`, for opsets since <= v < until."""

    def wrap(handler: Handler) -> Handler:
        for op_type in op_types:
            _HANDLERS.setdefault((domain, op_type), []).append(_Entry(since, until, handler))
        return handler

    return wrap


def load_handlers() -> None:
    """Import every handler module of this package (each registers its ops)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    package = __name__.rsplit(".", 1)[0]
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def lookup(domain: str, op_type: str, opset: int) -> Handler | None:
    """The handler for this op at this opset, or None (the node is a barrier)."""
    load_handlers()
    domain = "" if domain == "ai.onnx" else domain
    for entry in _HANDLERS.get((domain, op_type), []):
        if entry.since <= opset < entry.until:
            return entry.handler
    return None


def registered_ops() -> list[str]:
    load_handlers()
    return sorted(f"{d}::{o}" if d else o for d, o in _HANDLERS)
