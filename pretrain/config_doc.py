"""``python -m pretrain.config_doc``: print the Markdown reference of every training config key.

The tables are generated from the dataclasses in ``pretrain.config`` and ``data_prep.noise.config``: types as
annotated, defaults as the dataclasses hold them, descriptions from the fields' inline ``#`` comments.
``--write FILE`` puts the reference between the ``<!-- CONFIG:BEGIN -->`` and ``<!-- CONFIG:END -->``
lines of FILE; ``--check FILE`` exits 1 when that block differs from what ``--write`` would put there.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import io
import json
import sys
import tokenize
import typing
from pathlib import Path
from typing import Any

from data_prep.errors import UserError, run_cli
from data_prep.noise import PRESETS, NoiseConfig
from pretrain.config import Config, NoiseSection

BEGIN, END = "<!-- CONFIG:BEGIN -->", "<!-- CONFIG:END -->"

# Descriptions of the NoiseConfig fields that have no inline comment in data_prep/noise/config.py.
NOISE_DESCRIPTIONS = {
    "mask_ratio": "share of the maskable units (tokens, or words with whole_word) put inside chosen spans",
    "geometric_p": "p of the geometric span lengths (span_distribution geometric): p(1-p)^(k-1), k >= 1",
    "poisson_lambda": "lambda of the Poisson span lengths (span_distribution poisson), k >= 0",
    "collapse_masks": "every run of [MASK] the noise made becomes one [MASK] (UER-py's text infilling)",
    "whole_word": "mask whole words: a token and the ## pieces after it are one unit",
    "permute_sentences": "share of each document's sentences shuffled among their own slots",
    "rotate": "probability that a document is rotated to start at a random token",
    "insert_ratio": "[MASK] tokens inserted, as a share of the maskable tokens (never lengthens an example)",
}

INTRO = [
    "<!-- Generated from pretrain/config.py and data_prep/noise/config.py by "
    "`python -m pretrain.config_doc --write README.md`: edit those files, not this block. -->",
    "",
    "A run has {count} config sections: {names}. The defaults below are "
    "those of the dataclasses in `pretrain/config.py`. The YAML file given with `--config` "
    "(`configs/bart-4-768.yaml`, `configs/tiny.yaml`, ...) overrides them, and any key can be overridden "
    "on the command line with `--section.key VALUE` or `--section.key=VALUE` (e.g. `--train.lr 1e-4`), "
    "which wins over the file. `null` sets an optional key to None. `python -m pretrain --help` lists "
    "every key.",
]

NOISE_INTRO = (
    "`noise.preset` picks the base values (one default column per preset of `PRESETS` in "
    "`data_prep/noise/config.py`); every other `noise.*` key overrides one of them. The docstring of "
    "`data_prep/noise/__init__.py` gives the exact semantics (`data_prep/noise/reference.py` spells them "
    "out as code); `python -m data_prep noise DIR` prints noised examples."
)


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """Field name -> (annotation as written, inline ``#`` comment or "") from the source of ``cls``."""
    source = inspect.getsource(cls)
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    docs = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            lines = range(node.lineno, node.end_lineno + 1)
            docs[node.target.id] = (
                ast.unparse(node.annotation),
                " ".join(comments[n] for n in lines if n in comments),
            )
    return docs


def config_value(value: Any) -> str:
    """``value`` spelled as in a YAML config or on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
        for row in [header, ["---"] * len(header), *rows]
    ]


def section_rows(section: str, cls: type) -> list[list[str]]:
    """key, type, default, description of every field of a section dataclass."""
    defaults = cls()
    return [
        [f"`{section}.{name}`", f"`{tp}`", f"`{config_value(getattr(defaults, name))}`", doc]
        for name, (tp, doc) in field_docs(cls).items()
    ]


def noise_rows() -> list[list[str]]:
    """key, type, one default per preset, description: ``noise.preset``, then the ``NoiseConfig`` fields."""
    presets = [NoiseConfig.from_preset(name) for name in PRESETS]
    fields = {
        "preset": field_docs(NoiseSection)["preset"],
        **{
            name: (tp, doc or NOISE_DESCRIPTIONS.get(name, ""))
            for name, (tp, doc) in field_docs(NoiseConfig).items()
            if name != "preset"
        },
    }
    return [
        [f"`noise.{name}`", f"`{tp}`", *(f"`{config_value(getattr(p, name))}`" for p in presets), doc]
        for name, (tp, doc) in fields.items()
    ]


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


def replace_block(text: str, block: str, path: Path) -> str:
    """``text`` with the lines between its BEGIN and END marker lines replaced by ``block``."""
    lines = text.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    if stripped.count(BEGIN) != 1 or stripped.count(END) != 1 or stripped.index(BEGIN) > stripped.index(END):
        raise UserError(f"{path} needs one '{BEGIN}' line followed by one '{END}' line")
    begin, end = stripped.index(BEGIN), stripped.index(END)
    return "".join(lines[: begin + 1]) + "\n" + block + "\n" + "".join(lines[end:])


def main(argv: list[str] | None = None) -> int:
    def _main() -> int:
        parser = argparse.ArgumentParser(
            prog="python -m pretrain.config_doc", description=__doc__.splitlines()[0]
        )
        mode = parser.add_mutually_exclusive_group()
        mode.add_argument("--write", type=Path, metavar="FILE", help=f"replace FILE's {BEGIN} block")
        mode.add_argument("--check", type=Path, metavar="FILE", help="exit 1 if FILE's block is out of date")
        args = parser.parse_args(argv)
        path = args.write or args.check
        if path is None:
            print(render(), end="")
            return 0
        if not path.is_file():
            raise UserError(f"{path} not found")
        text = path.read_text(encoding="utf-8")
        updated = replace_block(text, render(), path)
        if args.write:
            path.write_text(updated, encoding="utf-8")
        elif updated != text:
            print(
                f"{path}: the config reference is out of date; "
                f"run `python -m pretrain.config_doc --write {path}`",
                file=sys.stderr,
            )
            return 1
        return 0

    return run_cli(_main, "pretrain.config_doc")


if __name__ == "__main__":
    sys.exit(main())
