"""Typer options made from the parameters that job specs declare (core.params.param).

``@options_from(job=PrecursorJob, run=RunOptions, ray=RayOptions)`` replaces a command's
``job``, ``run`` and ``ray`` arguments by one option per declared field (nested specs listed
flat), with the field's default, help, unit and constraint, and builds the specs from the
values the user gave. A default, a help text or a check is written once, on the field. The
decorator is also the one place that names a parameter by its option: a
:class:`~core.errors.BadParameter` raised while the command runs is reported as
``--option: message``.
"""

from __future__ import annotations

import functools
import inspect
import typing
from dataclasses import dataclass, replace
from typing import Annotated, Any, Callable, Sequence

import typer

from core.errors import BadInput, BadParameter
from core.params import Param, declared


@dataclass(frozen=True)
class Option:
    """One CLI option of a spec field. ``path``: field names from the spec down (nested
    specs); ``name``: the Python parameter name Typer passes it as."""

    path: tuple[str, ...]
    flag: str
    name: str
    kind: Any
    default: Any
    declaration: Param


def _kind(hint: Any, declaration: Param, default: Any) -> Any:
    """The type Typer parses: text for values a spec parses (lists, ranges, objectives)."""
    import types
    import typing

    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    optional = type(None) in typing.get_args(hint)
    base = args[0] if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1 else hint
    if declaration.parse is not None or typing.get_origin(base) is tuple:
        base = str
    return base | None if optional or default is None else base


def _text(value: Any) -> Any:
    """A default as the CLI writes it: tuples comma-separated."""
    if isinstance(value, tuple):
        return ",".join(f"{item:g}" if isinstance(item, float) else str(item) for item in value)
    return value


def _options(spec_class: type, defaults: Any, only: Sequence[str] | None, taken: set[str],
             path: tuple[str, ...] = ()) -> list[Option]:
    found = []
    for f, declaration, hint in declared(spec_class):
        if only is not None and f.name not in only:
            continue
        default = getattr(defaults, f.name) if defaults is not None else f.default
        if declaration.nested:
            found += _options(type(default), default, None, taken, (*path, f.name))
            continue
        flag = declaration.option or f"--{f.name.replace('_', '-')}"
        if flag in taken and path:
            flag = f"--{path[-1]}-{f.name.replace('_', '-')}"
        taken.add(flag)
        found.append(Option((*path, f.name), flag, flag[2:].replace("-", "_"), _kind(hint, declaration, default),
                            _text(default), declaration))
    return found


def _parameter(option: Option) -> inspect.Parameter:
    help_text = option.declaration.help
    constraint = option.declaration.describe()
    if constraint:
        help_text += f" [{constraint}]"
    info = typer.Option(option.flag, help=help_text, rich_help_panel=option.declaration.panel,
                        show_default=option.default is not None)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=option.default,
                             annotation=Annotated[option.kind, info])


def _build(spec_class: type, options: list[Option], values: dict[tuple[str, ...], Any], depth: int = 0):
    """The spec from the option values; nested specs are built from their own options."""
    own = {o.path[depth]: values[o.path] for o in options if len(o.path) == depth + 1}
    nested_names = {o.path[depth] for o in options if len(o.path) > depth + 1}
    for name in nested_names:
        inner = [o for o in options if len(o.path) > depth + 1 and o.path[depth] == name]
        default = spec_class.__dataclass_fields__[name].default
        own[name] = _build_nested(default, inner, values, depth + 1)
    return spec_class(**own)


def _build_nested(default: Any, options: list[Option], values: dict, depth: int):
    changes = {o.path[depth]: values[o.path] for o in options}
    return replace(default, **changes)


def options_from(**groups: type | tuple[type, Sequence[str]]) -> Callable:
    """Decorate a command whose keyword arguments ``name: SpecClass`` become options (see the
    module docstring). ``name=(SpecClass, ("out", "fresh"))`` exposes only those fields."""

    def decorate(command: Callable) -> Callable:
        taken: set[str] = set()
        plans = []
        for group, target in groups.items():
            spec_class, only = target if isinstance(target, tuple) else (target, None)
            plans.append((group, spec_class, _options(spec_class, None, only, taken)))
        signature = inspect.signature(command)
        flags = {name: f"--{name.replace('_', '-')}" for name in signature.parameters if name not in groups}
        for _, _, options in plans:
            for option in options:
                flags.setdefault(option.path[-1], option.flag)

        @functools.wraps(command)
        def run_command(*args, **kwargs):
            try:
                for group, spec_class, options in plans:
                    values = {option.path: kwargs.pop(option.name) for option in options}
                    kwargs[group] = _build(spec_class, options, values)
                return command(*args, **kwargs)
            except BadParameter as error:
                flag = flags.get(error.parameter)
                raise BadInput(f"{flag}: {error.message}" if flag else str(error)) from None

        hints = typing.get_type_hints(command, include_extras=True)  # strings under `from __future__ import annotations`
        kept = [p.replace(annotation=hints.get(name, p.annotation)) for name, p in signature.parameters.items()
                if name not in groups]
        added = [_parameter(option) for _, _, options in plans for option in options]
        run_command.__signature__ = signature.replace(parameters=kept + added)
        run_command.__annotations__ = {p.name: p.annotation for p in kept + added}
        return run_command

    return decorate


def global_data(ctx: typer.Context) -> str:
    """The global ``--data`` option (see cli/app.py)."""
    return ctx.find_root().params.get("data") or "mnist-5k"

