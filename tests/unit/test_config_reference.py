"""The generated config reference: complete, described, true to the dataclass defaults, and in the README."""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from data_prep.errors import UserError
from data_prep.noise import PRESETS, NoiseConfig
from pretrain.cli.config_doc import main
from pretrain.config import Config, NoiseSection, TrainConfig, build_config, known_keys
from pretrain.config_reference import BEGIN, END, render

README = Path(__file__).resolve().parents[2] / "README.md"


def table_rows(text: str) -> dict[str, list[str]]:
    """``key`` -> the unescaped cells after the key column of its table row."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].strip("`")] = cells[1:]
    return rows


@pytest.fixture(scope="module")
def rows() -> dict[str, list[str]]:
    return table_rows(render())


def test_every_key_is_documented(rows):
    assert set(rows) == set(known_keys())
    assert set(rows) >= {f"noise.{f.name}" for f in dataclasses.fields(NoiseConfig)}
    assert not [key for key, cells in rows.items() if not cells[-1]], "declare these with setting(..., doc)"


def test_every_field_is_declared_once_with_its_description_and_allowed_values(rows):
    """The description and the allowed values the reference shows are the ones the check enforces."""
    from data_prep.settings import describe

    sections = {name: cls for name, cls in typing.get_type_hints(Config).items() if cls is not NoiseSection}
    for name, section in [*sections.items(), ("noise", NoiseConfig)]:
        for f in dataclasses.fields(section):
            doc, choices, rule = describe(f)
            assert doc, f"{name}.{f.name} is not declared with setting(default, doc, ...)"
            if choices:
                shown = rows[f"{name}.{f.name}"][-1]
                assert shown.endswith(f"one of {', '.join(str(c) for c in choices)}"), f.name
    assert rows["train.batch_size"][-1].endswith("; at least 1")
    assert rows["noise.mask_ratio"][-1].endswith("; between 0 and 1")
    with pytest.raises(UserError, match="'train.batch_size' must be at least 1, not 0"):
        build_config({}, {"train.batch_size": "0"})


def test_spot_check_defaults(rows):
    assert rows["train.lr"][1] == f"`{TrainConfig.lr}`" == "`5e-05`"
    assert rows["model.vocab_size"][1] == "`21128`"
    assert rows["data.path"][1] == "`null`"
    assert rows["train.tf32"][1] == "`true`"
    assert rows["model.vocab_size"][0] == "`int | None`"
    assert rows["noise.mask_ratio"][1:3] == [
        f"`{NoiseConfig.mask_ratio}`",
        f"`{PRESETS['bart']['mask_ratio']}`",
    ]
    assert rows["noise.preset"][1:3] == ["`uer`", "`bart`"]


def test_shown_defaults_typed_back_give_the_dataclass_defaults(rows):
    defaults = Config()
    for key, (_, shown, *_) in rows.items():
        section, _, name = key.partition(".")
        if section != "noise":
            typed = build_config({}, {key: shown.strip("`")})
            assert getattr(getattr(typed, section), name) == getattr(getattr(defaults, section), name), key
    for i, preset in enumerate(PRESETS, start=1):
        values = {
            key.removeprefix("noise."): cells[i].strip("`")
            for key, cells in rows.items()
            if key.startswith("noise.") and key != "noise.preset"
        }
        assert NoiseConfig.from_preset(preset, **values) == NoiseConfig.from_preset(preset)


def test_write_then_check_round_trips(tmp_path, capsys):
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\nintro\n{BEGIN}\nstale\n{END}\n\n## After\n", encoding="utf-8")
    assert main(["--check", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"python -m pretrain.config_doc --write {path}" in err
    assert main(["--write", str(path)]) == 0
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"# Title\n\nintro\n{BEGIN}\n\n") and text.endswith(f"\n{END}\n\n## After\n")
    assert render() in text and "stale" not in text
    assert main(["--check", str(path)]) == 0
    assert main(["--write", str(path)]) == 0 and path.read_text(encoding="utf-8") == text


@pytest.mark.parametrize("body", ["no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"])
@pytest.mark.parametrize("mode", ["--write", "--check"])
def test_bad_markers_are_a_one_line_error(tmp_path, capsys, body, mode):
    path = tmp_path / "README.md"
    path.write_text(body, encoding="utf-8")
    assert main([mode, str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pretrain.config_doc: error:") and BEGIN in err
    assert path.read_text(encoding="utf-8") == body


def test_readme_is_up_to_date(capsys):
    assert main(["--check", str(README)]) == 0, capsys.readouterr().err


def test_help_lists_every_key_once_with_type_default_and_description(capsys):
    from pretrain.__main__ import main as train_main

    assert train_main(["--help"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keyed = [line.split()[0][2:] for line in lines if line.startswith("  --")]
    assert keyed == known_keys() and len(set(keyed)) == len(keyed)  # noise.preset once
    by_key = {
        line.split()[0][2:]: (line, lines[i + 1]) for i, line in enumerate(lines) if line.startswith("  --")
    }
    assert "int = 768" in by_key["model.d_model"][0] and "hidden size" in by_key["model.d_model"][1]
    assert "float = uer 0.15, bart 0.3" in by_key["noise.mask_ratio"][0]
    assert by_key["noise.preset"][0].endswith("str = uer")
    assert all(desc.strip() and not desc.startswith("  --") for _, desc in by_key.values())
