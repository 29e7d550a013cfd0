"""Config loading: the shipped YAML files, dotted overrides, typed values and unknown keys."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from data_prep.errors import UserError
from pretrain.__main__ import main
from pretrain.config import load_config, parse_overrides
from pretrain.plan import split_batch

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


@pytest.mark.parametrize("name", ["bart-4-768", "bart-6-768", "bart-12-1024", "tiny"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.d_model % cfg.model.encoder_attention_heads == 0
    assert cfg.noise.preset in ("uer", "bart")


def test_bart_4_768_is_the_seed_recipe():
    cfg = load_config(CONFIGS / "bart-4-768.yaml")
    m, t = cfg.model, cfg.train
    assert (m.encoder_layers, m.decoder_layers, m.d_model, m.encoder_attention_heads, m.encoder_ffn_dim) == (
        4,
        4,
        768,
        12,
        3072,
    )
    assert (m.decoder_attention_heads, m.decoder_ffn_dim, m.activation_function) == (12, 3072, "gelu")
    assert (m.dropout, m.attention_dropout, m.activation_dropout) == (0.1, 0.1, 0.1)
    assert (m.max_position_embeddings, m.scale_embedding, m.vocab_size) == (1024, False, 21128)
    assert (m.tie_word_embeddings, m.logits_bias) == (False, "trained")  # UER-py's head, as the seed's
    assert (t.max_steps, t.lr, t.beta1, t.beta2, t.eps, t.weight_decay, t.warmup_ratio) == (
        1_000_000,
        5e-5,
        0.9,
        0.999,
        1e-6,
        0.01,
        0.1,
    )
    assert t.max_grad_norm == 0 and cfg.noise.preset == "uer"
    # global batch 64: 64 x 1 on one GPU (the fast path); on 8 GPUs the same config runs 8 x 1 per device
    # (the plan lowers the per-device batch; the config stays as written)
    assert (t.batch_size, split_batch(t, 1)[1]) == (64, 1)
    assert split_batch(t, 8)[::-1] == (1, 8) and t.batch_size == 64
    assert split_batch(t, 16)[::-1] == (1, 4)
    smaller = dataclasses.replace(t, batch_size=16)  # a 24 GB GPU: 16 x grad_accum 4
    assert split_batch(smaller, 1)[::-1] == (4, 16)


def test_dotted_overrides_are_typed():
    argv = [
        "--train.max_steps",
        "100",
        "--train.lr=1e-4",
        "--model.scale_embedding",
        "true",
        "--train.resume",
        "auto",
        "--model.init_from",
        "null",
        "--train.mixed_precision",
        "no",
    ]
    cfg = load_config(CONFIGS / "tiny.yaml", parse_overrides(argv))
    assert cfg.train.max_steps == 100 and cfg.train.lr == pytest.approx(1e-4)
    assert cfg.model.scale_embedding is True and cfg.train.resume == "auto"
    assert cfg.model.init_from is None and cfg.train.mixed_precision == "no"


def test_noise_keys_are_validated_against_noise_config():
    from data_prep.noise import NoiseConfig

    name = next(iter(NoiseConfig.__dataclass_fields__))
    value = getattr(NoiseConfig.from_preset("uer"), name)
    cfg = load_config(None, {"noise.preset": "bart", f"noise.{name}": str(value)})
    assert cfg.noise.preset == "bart" and cfg.noise.params == {name: value}
    with pytest.raises(UserError, match="unknown config key 'noise.no_such_knob'"):
        load_config(None, {"noise.no_such_knob": "1"})


def test_unknown_key_lists_close_matches():
    with pytest.raises(UserError, match=r"unknown config key 'train.max_step'; did you mean train.max_steps"):
        load_config(None, {"train.max_step": "5"})
    with pytest.raises(UserError, match=r"unknown config key 'trian.lr'; did you mean train.lr"):
        load_config(None, {"trian.lr": "5"})
    with pytest.raises(UserError, match="expects float"):
        load_config(None, {"train.lr": "fast"})


def test_yaml_file_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": {"max_stepz": 1}}))
    with pytest.raises(UserError, match="did you mean train.max_steps"):
        load_config(bad)
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    gbk = tmp_path / "gbk.yaml"
    gbk.write_bytes("train:\n  output_dir: 运行\n".encode("gbk"))
    with pytest.raises(UserError, match="is not UTF-8 text"):
        load_config(gbk)


def test_cli_user_errors_are_one_line_exit_2(capsys, tmp_path):
    assert main(["--config", str(CONFIGS / "tiny.yaml"), "--train.max_step", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean train.max_steps" in err and "Traceback" not in err
    assert (
        main(
            [
                "--config",
                str(CONFIGS / "tiny.yaml"),
                "--data.path",
                str(tmp_path / "nope"),
                "--train.output_dir",
                str(tmp_path / "out"),
            ]
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_global_batch_and_grad_accum_must_agree():
    cfg = load_config(CONFIGS / "bart-4-768.yaml", {"train.grad_accum": "2"})
    with pytest.raises(UserError, match="contradicts"):
        split_batch(cfg.train, 1)
    cfg = load_config(CONFIGS / "bart-4-768.yaml", {"train.batch_size": "24"})
    with pytest.raises(UserError, match="not a multiple"):
        split_batch(cfg.train, 1)


def test_help_into_a_closed_pipe_exits_quietly():
    """``python -m pretrain --help | head -0``: the reader is gone before the first line; no traceback."""
    argv = ["-m", "pretrain", "--help"]
    proc = subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b""


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("train.grad_accum", "-1", "at least 1"),
        ("train.global_batch_size", "-8", "at least 1"),
        ("train.batch_size", "0", "at least 1"),
        ("train.lr", "0", "positive finite"),
        ("train.lr", "nan", "positive finite"),
        ("train.lr", "-1e-4", "positive finite"),
        ("train.eps", "inf", "positive finite"),
        ("train.max_grad_norm", "-1", ">= 0"),
        ("train.beta2", "1.0", "[0, 1)"),
        ("train.warmup_ratio", "1.5", "between 0 and 1"),
        ("train.warmup_ratio", "-0.1", "between 0 and 1"),
        ("train.keep_checkpoints", "-1", "at least 0"),
        ("model.dropout", "1.0", "[0, 1)"),
        ("model.attention_dropout", "-0.1", "[0, 1)"),
        ("model.encoder_layers", "0", "at least 1"),
        ("model.decoder_ffn_dim", "0", "at least 1"),
        ("model.vocab_size", "0", "at least 1"),
        ("model.encoder_attention_heads", "5", "must divide model.d_model"),
        ("model.activation_function", "gleu", "must be one of"),
        ("model.attn_implementation", "flash", "must be one of"),
        ("model.init_logits_bias", "ones", "must be one of"),
        ("train.mixed_precision", "fp8", "must be one of"),
        ("eval.num_examples", "-1", "at least 0"),
        ("eval.max_new_tokens", "0", "at least 1"),
        ("data.num_workers", "-2", "at least 0"),
    ],
)
def test_every_value_is_range_checked_when_the_config_loads(key, value, why):
    with pytest.raises(UserError, match=re.escape(why)) as info:
        load_config(None, {key: value})
    assert key in str(info.value) and "\n" not in str(info.value)


def test_values_at_the_edges_of_their_ranges_are_accepted():
    edges = {
        "train.warmup_ratio": "1",
        "model.dropout": "0",
        "eval.num_examples": "0",
        "train.grad_accum": "1",
    }
    cfg = load_config(None, edges)
    assert (cfg.train.warmup_ratio, cfg.model.dropout, cfg.eval.num_examples) == (1.0, 0.0, 0)
