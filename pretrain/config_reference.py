"""The reference of every training config key, for ``--help`` and the README, read from the declarations.

Types as annotated, defaults as the dataclasses hold them (one column per noise preset), descriptions and
allowed values from each field's ``setting(...)`` (``data_prep.settings``): the same declaration that
validates the value, so the reference cannot drift from the checks.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from data_prep.errors import UserError
from data_prep.noise import PRESETS, NoiseConfig
from data_prep.settings import describe
from pretrain.config import Config, NoiseSection

BEGIN, END = "<!-- CONFIG:BEGIN -->", "<!-- CONFIG:END -->"

INTRO = [
    "<!-- Generated from the declarations in pretrain/config.py and data_prep/noise/config.py by "
    "`python -m pretrain.config_doc --write README.md`: edit those files, not this block. -->",
    "",
    "A run has {count} config sections: {names}. The defaults below are "
    "those of the dataclasses in `pretrain/config.py`. The YAML file given with `--config` "
    "(`configs/bart-4-768.yaml`, `configs/tiny.yaml`, ...) overrides them, and any key can be overridden "
    "on the command line with `--section.key VALUE` or `--section.key=VALUE` (e.g. `--train.lr 1e-4`), "
    "which wins over the file. `null` sets an optional key to None. A value outside what a key allows "
    "(its description ends with that) fails when the config is loaded. `python -m pretrain --help` lists "
    "every key.",
]

NOISE_INTRO = (
    "`noise.preset` picks the base values (one default column per preset of `PRESETS` in "
    "`data_prep/noise/config.py`); every other `noise.*` key overrides one of them. The docstring of "
    "`data_prep/noise/__init__.py` gives the exact semantics (`data_prep/noise/reference.py` spells them "
    "out as code); `python -m data_prep noise DIR` prints noised examples."
)


def config_value(value: Any) -> str:
    """``value`` spelled as in a YAML config or on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def field_doc(f: dataclasses.Field) -> str:
    """The description of a field, then what its values must be (a list known only at run time is left to
    the description)."""
    doc, choices, rule = describe(f)
    if choices:
        allowed = f"one of {', '.join(config_value(c) for c in choices)}"
    elif rule is not None and isinstance(rule.must, str):
        allowed = rule.must.removeprefix("must be ")
    else:
        return doc
    return f"{doc}; {allowed}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in [header, ["---"] * len(header), *rows]
    ]


def section_rows(section: str, cls: type) -> list[list[str]]:
    """key, type, default, description of every field of a section dataclass."""
    defaults = cls()
    return [
        [f"`{section}.{f.name}`", f"`{f.type}`", f"`{config_value(getattr(defaults, f.name))}`", field_doc(f)]
        for f in dataclasses.fields(cls)
    ]


def noise_rows() -> list[list[str]]:
    """key, type, one default per preset, description: ``noise.preset``, then the ``NoiseConfig`` fields."""
    presets = [NoiseConfig.from_preset(name) for name in PRESETS]
    preset = next(f for f in dataclasses.fields(NoiseConfig) if f.name == "preset")
    rows = [["`noise.preset`", f"`{preset.type}`", *(f"`{name}`" for name in PRESETS), field_doc(preset)]]
    for f in dataclasses.fields(NoiseConfig):
        if f.name != "preset":
            defaults = [f"`{config_value(getattr(p, f.name))}`" for p in presets]
            rows.append([f"`noise.{f.name}`", f"`{f.type}`", *defaults, field_doc(f)])
    return rows


def render() -> str:
    """The whole Markdown reference, ending with a newline."""
    names = [f"`{f.name}`" for f in dataclasses.fields(Config)]
    sections = ", ".join(names[:-1]) + f" and {names[-1]}"
    lines = [line.format(count=len(names), names=sections) for line in INTRO]
    for section, cls in typing.get_type_hints(Config).items():
        lines += ["", f"### `{section}`", ""]
        if cls is NoiseSection:
            header = ["key", "type", *(f"default (`{name}`)" for name in PRESETS), "description"]
            lines += [NOISE_INTRO, "", *_table(header, noise_rows())]
        else:
            lines += _table(["key", "type", "default", "description"], section_rows(section, cls))
    return "\n".join(lines) + "\n"


def help_lines() -> list[str]:
    """``python -m pretrain --help``: every key with its type, default(s) and description, one per line."""
    rows = []
    for section, cls in typing.get_type_hints(Config).items():
        if cls is NoiseSection:
            for key, tp, *defaults, doc in noise_rows():
                if key == "`noise.preset`":  # its row holds each preset's own name
                    defaults = [f"`{NoiseSection().preset}`"]
                shown = (
                    defaults[0]
                    if len(set(defaults)) == 1
                    else ", ".join(f"{name} {d}" for name, d in zip(PRESETS, defaults, strict=True))
                )
                rows.append((key, tp, shown, doc))
        else:
            rows += [tuple(row) for row in section_rows(section, cls)]
    width = max(len(key) for key, *_ in rows)
    lines = []
    for key, tp, default, doc in rows:
        head = f"  --{key.strip('`'):<{width}}  {tp.strip('`')} = {default.replace('`', '')}"
        lines.append(f"{head}\n  {'':<{width + 2}}  {doc}" if doc else head)
    return lines


def replace_block(text: str, block: str, path: object) -> str:
    """``text`` with the lines between its BEGIN and END marker lines replaced by ``block``."""
    lines = text.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    if stripped.count(BEGIN) != 1 or stripped.count(END) != 1 or stripped.index(BEGIN) > stripped.index(END):
        raise UserError(f"{path} needs one '{BEGIN}' line followed by one '{END}' line")
    begin, end = stripped.index(BEGIN), stripped.index(END)
    return "".join(lines[: begin + 1]) + "\n" + block + "\n" + "".join(lines[end:])
