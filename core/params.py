"""Parameters declared once: default, help, unit and constraints on the dataclass field.

A job spec (or a core settings class) declares each parameter with :func:`param`; its
``__post_init__`` calls :func:`check_params`, which turns text into values (``"0-15"`` →
map ids, ``"0.2,0.5,0.8"`` → floats) and checks every constraint, raising
:class:`~core.errors.BadParameter` in the parameter's own name. The CLI builds its options
from the same declarations (``cli/spec.py``), so a default or a constraint is written once,
as scikit-learn's ``_parameter_constraints`` are.
"""

from __future__ import annotations

import math
import os
import sys
import types
import typing
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from core.errors import BadParameter

INT32_MAX = 2**31 - 1  # every integer parameter reaches TensorFlow or Parquet as int32
NAME_MAX, PATH_MAX = 255, 4096  # bytes in one path component / a whole path (Linux; most file systems)
META = "param"


@dataclass(frozen=True)
class Param:
    """What is known about one parameter besides its default.

    help: one sentence, with the unit. low / high: inclusive bounds (for a tuple, on every
    item); above: an exclusive lower bound. choices: the allowed values. parse: turns the
    CLI's text into the value, ``parse(text, spec)`` (the spec's earlier fields are already
    checked). text: the default as the CLI shows it. option: the CLI flag when it is not
    ``--name-with-dashes``. nested: the field is itself a spec whose parameters the CLI lists
    flat. panel: the ``--help`` section.
    """

    help: str
    low: float | None = None
    high: float | None = None
    above: float | None = None
    choices: tuple | None = None
    parse: Callable[[str, Any], Any] | None = None
    text: str | None = None
    option: str | None = None
    nested: bool = False
    panel: str | None = None

    def describe(self) -> str:
        """The constraint as words for ``--help``: '≥ 1', 'in [0, 1]', 'one of a, b'."""
        if self.choices:
            return "one of " + ", ".join(map(str, self.choices))
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.low is not None and self.high is not None:
            return f"in [{self.low:g}, {self.high:g}]"
        if self.low is not None:
            parts.append(f"≥ {self.low:g}")
        if self.high is not None:
            parts.append(f"≤ {self.high:g}")
        return ", ".join(parts)


def param(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, compare: bool = True,
          **constraints) -> Any:
    """A dataclass field carrying a :class:`Param` (see there for ``constraints``)."""
    return field(default=default, default_factory=default_factory, compare=compare,
                 metadata={META: Param(help=help, **constraints)})


def same_as(spec_class: type, name: str, **changes) -> Any:
    """A field declared like ``spec_class.name`` (its default and Param, with ``changes``):
    a spec that wraps a core settings class re-uses its declarations instead of copying them."""
    original = spec_class.__dataclass_fields__[name]
    declaration = original.metadata[META]
    default = changes.pop("default", original.default)
    fields_of_param = {key: getattr(declaration, key) for key in Param.__dataclass_fields__}
    return field(default=default, metadata={META: Param(**{**fields_of_param, **changes})})


def declared(spec_class: type) -> list[tuple[Field, Param, Any]]:
    """(field, Param, resolved type) of every declared parameter of a dataclass, in order."""
    return [(f, f.metadata[META], _field_type(spec_class, f)) for f in fields(spec_class) if META in f.metadata]


def _field_type(spec_class: type, f: Field) -> Any:
    """The field's annotation as a type (annotations are strings under ``from __future__
    import annotations``; only declared parameters are resolved)."""
    if not isinstance(f.type, str):
        return f.type
    for klass in spec_class.__mro__:
        if f.name in getattr(klass, "__annotations__", {}):
            return eval(f.type, vars(sys.modules[klass.__module__]))  # noqa: S307 (our own annotations)
    raise TypeError(f"cannot resolve the type of {spec_class.__name__}.{f.name}")


def check_params(spec: Any) -> None:
    """Parse text values and check every declared parameter of ``spec`` (a frozen
    dataclass, changed in place): ints are ints that fit int32, floats are finite numbers,
    bounds and choices hold. Raises BadParameter."""
    for f, declaration, hint in declared(type(spec)):
        value = getattr(spec, f.name)
        if isinstance(value, str) and declaration.parse is not None:
            try:
                value = declaration.parse(value, spec)
            except BadParameter:
                raise
            except ValueError as error:
                raise BadParameter(f.name, str(error)) from None
        if declaration.nested or value is None:
            object.__setattr__(spec, f.name, value)
            continue
        value = _checked_value(f.name, value, declaration, _base_type(hint))
        object.__setattr__(spec, f.name, value)


def _base_type(hint: Any) -> Any:
    """int for ``int | None``; tuple for ``tuple[int, ...]``."""
    args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
    return typing.get_origin(hint) or hint


def _checked_value(name: str, value: Any, declaration: Param, kind: Any) -> Any:
    if kind is Path or isinstance(value, Path):
        try:
            return parse_path(str(value))
        except ValueError as error:
            raise BadParameter(name, str(error)) from None
    if kind is tuple:
        items = tuple(value)
        for item in items:
            _check_number(name, item, declaration)
        return items
    if declaration.choices is not None:
        if value not in declaration.choices:
            raise BadParameter(name, f"{value!r} is not {declaration.describe()}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise BadParameter(name, f"expected true or false, got {value!r}")
        return value
    if kind in (int, float):
        number = _number(name, value, kind)
        _check_number(name, number, declaration)
        return number
    return value


def _number(name: str, value: Any, kind: type) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = float(value) if kind is float else int(value)
        except (TypeError, ValueError):
            raise BadParameter(name, f"expected {'a number' if kind is float else 'an integer'}, got {value!r}") from None
    if kind is int and (isinstance(value, float) and not value.is_integer()):
        raise BadParameter(name, f"expected an integer, got {value!r}")
    return int(value) if kind is int else float(value)


def _check_number(name: str, number: Any, declaration: Param) -> None:
    if isinstance(number, float) and not math.isfinite(number):
        raise BadParameter(name, f"must be a finite number, got {number}")
    if isinstance(number, int) and not isinstance(number, bool) and abs(number) > INT32_MAX:
        raise BadParameter(name, f"{number} is too large (at most {INT32_MAX:,})")
    if not isinstance(number, (int, float)):
        return
    if declaration.low is not None and number < declaration.low or (
            declaration.high is not None and number > declaration.high) or (
            declaration.above is not None and number <= declaration.above):
        raise BadParameter(name, f"must be {declaration.describe()}, got {number:g}" if isinstance(number, float)
                           else f"must be {declaration.describe()}, got {number}")


# ----- text forms of the CLI ---------------------------------------------------------------
def parse_path(text: str, spec: Any = None) -> Path:
    """A path as given, refused when no file could have that name: bytes that are not UTF-8
    (Ray, Parquet and JSON need text), a component longer than :data:`NAME_MAX` bytes, the
    whole longer than :data:`PATH_MAX`, a NUL byte. Touches no file. Raises ValueError."""
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"'{as_bytes(text)}' is not valid UTF-8 (rename it, or pick another name)") from None
    if not text or "\0" in text:
        raise ValueError(f"{text!r} is not a path")
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        raise ValueError(f"a name in {_shortened(text)} is {len(longest)} bytes long; "
                         f"file systems allow {NAME_MAX}")
    if len(encoded) >= PATH_MAX:
        raise ValueError(f"{_shortened(text)} is {len(encoded)} bytes long; paths have at most {PATH_MAX - 1}")
    return Path(text)


def as_bytes(text: str) -> str:
    """``text`` from the command line or the file system with each byte that is not UTF-8
    shown as ``\\xff``, as the user typed it."""
    return os.fsencode(text).decode("utf-8", "backslashreplace")


def _shortened(text: str, keep: int = 40) -> str:
    """``text`` quoted, its middle cut when it is long: one readable line."""
    return repr(text) if len(text) <= 2 * keep else repr(f"{text[:keep]}…{text[-keep:]}")


def parse_floats(text: str, spec: Any = None) -> tuple[float, ...]:
    """'0.2,0.5,0.8' -> (0.2, 0.5, 0.8). Raises ValueError (reported by the caller)."""
    try:
        values = tuple(float(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise ValueError("no values given")
    return values


def parse_ints(text: str, spec: Any = None) -> tuple[int, ...]:
    """'70,30' -> (70, 30)."""
    try:
        values = tuple(int(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise ValueError("no values given")
    return values


def parse_selection(text: str, count: int, what: str = "map", owner: str = "the layer") -> tuple[int, ...]:
    """'all', ranges and lists ('0-15', '3,7,56', '0-3,9') of ids in 0..count-1 -> sorted
    unique ids. Raises ValueError with a one-line reason."""
    text = text.strip().lower()
    if text == "all":
        return tuple(range(count))
    chosen: set[int] = set()
    for part in (part.strip() for part in text.split(",")):
        try:
            low, high = (int(value) for value in part.split("-", 1)) if "-" in part else (int(part), int(part))
        except ValueError:
            raise ValueError(f"cannot read {part!r} (use all, 0-15 or 3,7,56)") from None
        if low > high:
            raise ValueError(f"range {part!r} runs backwards")
        if low < 0 or high >= count:
            bad = low if low < 0 else max(low, count)
            raise ValueError(f"{what} {bad} is out of range: {owner} has {what}s 0-{count - 1}")
        chosen.update(range(low, high + 1))
    if not chosen:
        raise ValueError(f"no {what} selected")
    return tuple(sorted(chosen))


def parse_int_range(text: str, limit: int = 10_000) -> tuple[int, ...]:
    """'10:170:10' (start:stop:step, stop included) or '40,70,90' -> sorted unique ints; at
    most ``limit`` values (a range is never built before its size is known)."""
    text = text.strip()
    try:
        return _int_range(text, limit)
    except ValueError as error:
        if "invalid literal" in str(error):
            raise ValueError(f"cannot read {text!r} (use start:stop:step or a,b,c)") from None
        raise


def _int_range(text: str, limit: int) -> tuple[int, ...]:
    if ":" in text:
        parts = [int(value) for value in text.split(":")]
        if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2] <= 0):
            raise ValueError(f"{text!r} must be start:stop or start:stop:step with a positive step")
        start, stop, step = (parts + [1])[:3]
        if stop >= start and (stop - start) // step + 1 > limit:
            raise ValueError(f"{text!r} has more than {limit:,} values")
        values = tuple(range(start, stop + 1, step))
    else:
        values = tuple(sorted({int(value) for value in text.split(",") if value.strip()}))
        if len(values) > limit:
            raise ValueError(f"more than {limit:,} values")
    if not values:
        raise ValueError(f"the range {text!r} is empty")
    return values
