"""LazyConfig overrides that refuse a key the config does not have.

detectron2's ``LazyConfig.apply_overrides`` creates any key it is given, so a typo such as
``train.max_itr=3`` is accepted silently and the run goes on with ``train.max_iter`` unchanged.
:func:`apply_overrides` checks every ``KEY=VALUE`` first: the key must exist in the config, or
name an argument that the ``LazyCall`` target it sits under accepts (``model.dn_number=20`` on a
DAB-DETR config that does not list ``dn_number``). Otherwise :class:`ConfigKeyError` names the
override and the closest existing key.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Iterable, List, Optional, Sequence, Set, Tuple

from omegaconf import DictConfig, ListConfig

__all__ = ["ConfigKeyError", "apply_overrides", "check_overrides", "config_keys"]


class ConfigKeyError(KeyError):
    """An override names a key that is neither in the config nor an argument of its target."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def config_keys(node, prefix: str = "") -> List[str]:
    """Every dotted key of a config (lists by index), depth first."""
    keys = []
    items = node.items() if isinstance(node, DictConfig) else enumerate(node) if isinstance(node, ListConfig) else ()
    for k, v in items:
        if k == "_target_":
            continue
        key = f"{prefix}{k}"
        keys.append(key)
        if isinstance(v, (DictConfig, ListConfig)):
            keys.extend(config_keys(v, key + "."))
    return keys


def _target_arguments(target) -> Optional[Set[str]]:
    """The keyword arguments ``target`` accepts, or None for any (a function with **kwargs).
    For a class, the ``__init__`` arguments of every class in its MRO (a subclass's **kwargs
    forward to its bases)."""
    from detectron2.utils.registry import locate

    obj = locate(target) if isinstance(target, str) else target
    if obj is None:
        return set()
    if inspect.isclass(obj):
        names = set()
        for cls in obj.__mro__:
            if "__init__" in cls.__dict__ and cls is not object:
                try:
                    params = inspect.signature(cls.__dict__["__init__"]).parameters.values()
                except (TypeError, ValueError):
                    continue
                names |= {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        return names - {"self"}
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params if p.kind != p.VAR_POSITIONAL}


def _problem(cfg, key: str) -> Optional[Tuple[str, bool, List[str]]]:
    """Why ``key`` cannot be overridden, whether a near key may be meant, and keys the config
    does not hold but could take (the arguments of the target that the key would go to); None
    if it can."""
    node, parts = cfg, key.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        if isinstance(node, DictConfig):
            if part in node:
                node = node[part]
                continue
            if i == len(parts) - 1 and "_target_" in node:
                accepted = _target_arguments(node["_target_"])
                if accepted is None or part in accepted:
                    return None
                target = node["_target_"]
                name = target if isinstance(target, str) else getattr(target, "__qualname__", str(target))
                prefix = ".".join(parts[:i])
                return (f"{here!r} is not in the config, and {name} takes no argument {part!r}", True,
                        [f"{prefix}.{a}" if prefix else a for a in sorted(accepted)])
            return f"{here!r} is not in the config", True, []
        if isinstance(node, ListConfig):
            if part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            return f"{here!r}: {'.'.join(parts[:i])} is a list of {len(node)} items", False, []
        parent = ".".join(parts[:i])
        return f"{parent!r} is {node!r}, not a group of keys, so {here!r} does not exist", False, []
    return None


def check_overrides(cfg, overrides: Sequence[str]) -> None:
    """Raise :class:`ConfigKeyError` for the first override whose key the config cannot take."""
    keys: Optional[List[str]] = None
    for o in overrides:
        if "=" not in o:
            raise ConfigKeyError(f"override {o!r} is not KEY=VALUE")
        key = o.split("=", 1)[0].strip()
        found = _problem(cfg, key)
        if found is None:
            continue
        problem, suggest, arguments = found
        if not suggest:
            raise ConfigKeyError(f"unknown config key in override {o!r}: {problem}")
        keys = keys if keys is not None else config_keys(cfg)
        # A key's own prefix ("model" for "model.foo") is no suggestion.
        candidates = [k for k in keys if not key.startswith(k + ".")] + [a for a in arguments if a not in keys]
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigKeyError(f"unknown config key in override {o!r}: {problem}{hint}")


def apply_overrides(cfg, overrides: Iterable[str]):
    """``LazyConfig.apply_overrides`` after :func:`check_overrides`; ``KEY=None`` sets None
    (as ``KEY=null`` does), e.g. ``model.logit_loss=None`` for the LCMD-only ablation."""
    from detectron2.config import LazyConfig

    # detectron2 parses values with Hydra's grammar, where None is spelled null and "None" is
    # the string 'None' (which then reaches a constructor as a str): take Python's spelling too.
    overrides = [o.split("=", 1)[0] + "=null" if "=" in o and o.split("=", 1)[1].strip() == "None" else o
                 for o in (overrides or [])]
    check_overrides(cfg, overrides)
    return LazyConfig.apply_overrides(cfg, overrides)
