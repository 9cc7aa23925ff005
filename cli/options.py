"""Parsers for option values (maps, levels, ranges); each raises BadInput with one line."""

from __future__ import annotations

from core.errors import BadInput
from core.model import CONV_LAYERS


def check_layer(layer: str) -> int:
    """The number of maps of a conv layer name."""
    if layer not in CONV_LAYERS:
        raise BadInput(f"unknown layer {layer!r}: choose one of {', '.join(CONV_LAYERS)}")
    return CONV_LAYERS[layer]


def parse_maps(text: str, layer: str) -> tuple[int, ...]:
    """'all', ranges and lists ('0-15', '3,7,56', '0-3,9') -> sorted unique map ids."""
    n_maps = check_layer(layer)
    text = text.strip().lower()
    if text == "all":
        return tuple(range(n_maps))
    maps: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            low, high = (int(value) for value in part.split("-", 1)) if "-" in part else (int(part), int(part))
        except ValueError:
            raise BadInput(f"--maps: cannot read {part!r} (use all, 0-15 or 3,7,56)") from None
        if low > high:
            raise BadInput(f"--maps: range {part!r} runs backwards")
        maps.update(range(low, high + 1))
    out_of_range = sorted(m for m in maps if not 0 <= m < n_maps)
    if out_of_range:
        raise BadInput(f"--maps: map {out_of_range[0]} is out of range: {layer} has maps 0-{n_maps - 1}")
    if not maps:
        raise BadInput("--maps: no map selected")
    return tuple(sorted(maps))


def parse_floats(text: str, option: str) -> tuple[float, ...]:
    """'0.2,0.5,0.8' -> (0.2, 0.5, 0.8)."""
    try:
        values = tuple(float(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise BadInput(f"{option}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise BadInput(f"{option}: no values given")
    return values


def parse_int_range(text: str, option: str) -> tuple[int, ...]:
    """'10:170:10' (start:stop:step, stop included) or '40,70,90' -> sorted unique ints."""
    text = text.strip()
    try:
        if ":" in text:
            parts = [int(value) for value in text.split(":")]
            start, stop, step = (parts + [1])[:3] if len(parts) in (2, 3) else (0, 0, 0)
            values = tuple(range(start, stop + 1, step)) if step > 0 else ()
            if len(parts) not in (2, 3) or step <= 0:
                raise BadInput(f"{option}: {text!r} must be start:stop or start:stop:step with a positive step")
        else:
            values = tuple(sorted({int(value) for value in text.split(",") if value.strip()}))
    except BadInput:
        raise
    except ValueError:
        raise BadInput(f"{option}: cannot read {text!r} (use start:stop:step or a,b,c)") from None
    if not values:
        raise BadInput(f"{option}: the range {text!r} is empty")
    return values


def parse_objective(text: str) -> tuple:
    """'conv3:56=1.0,conv3:12=0.5,conv2=0.2' -> dream objective terms (core.dream.Term).

    Each comma-separated term is LAYER[:MAP][=WEIGHT]: no map = the whole layer (the weight
    spread equally over its maps), no weight = 1. A term may not repeat; not every weight may
    be 0.
    """
    import math

    from core.dream import Term

    terms: list[Term] = []
    seen: set[tuple[str, int | None]] = set()
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise BadInput(f"--objective: cannot read {text!r} (use e.g. 'conv3:56=1.0,conv3:12=0.5,conv2=0.2')")
    for part in parts:
        target, has_weight, weight_text = part.partition("=")
        layer, has_map, map_text = target.strip().partition(":")
        layer = layer.strip()
        try:
            weight = float(weight_text) if has_weight else 1.0
            map_id = int(map_text) if has_map else None
        except ValueError:
            raise BadInput(f"--objective: cannot read the term {part!r} (use LAYER[:MAP][=WEIGHT], e.g. conv3:56=1.0)") from None
        if not math.isfinite(weight):
            raise BadInput(f"--objective: the weight of {part!r} is not a finite number")
        if layer not in CONV_LAYERS:
            raise BadInput(f"--objective: unknown layer {layer!r} in {part!r}: choose one of {', '.join(CONV_LAYERS)}")
        n_maps = CONV_LAYERS[layer]
        if map_id is not None and not 0 <= map_id < n_maps:
            raise BadInput(f"--objective: map {map_id} is out of range: {layer} has maps 0-{n_maps - 1}")
        if (layer, map_id) in seen:
            raise BadInput(f"--objective: {target.strip()} appears twice")
        seen.add((layer, map_id))
        terms.append(Term(layer, map_id, weight))
    if all(term.weight == 0 for term in terms):
        raise BadInput("--objective: all weights are 0; give at least one term a non-zero weight")
    return tuple(terms)
