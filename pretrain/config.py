"""The run configuration: typed dataclasses, loaded from YAML and overridden by dotted CLI flags.

``--train.max_steps 100`` sets ``Config.train.max_steps``; an unknown key is a ``UserError`` that lists
the closest known keys. ``noise.*`` takes ``noise.preset`` plus any field of ``data_prep.noise.NoiseConfig``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_prep.coerce import coerce
from data_prep.errors import UserError, first_line
from data_prep.noise import NoiseConfig

DEFAULT_PROMPTS = [
    "作为电子[MASK]的平台，京东绝对是领先者。如今的刘强[MASK]已经是身价过[MASK]的老板。",
    "中国的首都是[MASK]京",
]


@dataclass
class ModelConfig:
    """``BartConfig`` architecture fields (special-token ids always come from the tokenizer)."""

    vocab_size: int | None = 21128  # must match the data's tokenizer; None: the tokenizer's size
    d_model: int = 768  # hidden size of the encoder and the decoder
    encoder_layers: int = 4  # encoder transformer layers
    decoder_layers: int = 4  # decoder transformer layers
    encoder_attention_heads: int = 12  # attention heads per encoder layer (must divide d_model)
    decoder_attention_heads: int = 12  # attention heads per decoder layer (must divide d_model)
    encoder_ffn_dim: int = 3072  # inner size of the encoder feed-forward blocks
    decoder_ffn_dim: int = 3072  # inner size of the decoder feed-forward blocks
    activation_function: str = "gelu"  # feed-forward activation (a transformers ACT2FN name: gelu, relu, ...)
    dropout: float = 0.1  # dropout on embeddings and sublayer outputs
    attention_dropout: float = 0.1  # dropout on attention probabilities
    activation_dropout: float = 0.1  # dropout after the feed-forward activation
    max_position_embeddings: int = 1024  # learned positions; at least the data's sequence length
    init_std: float = 0.02  # std of the normal initialisation of a fresh model's weights
    encoder_layerdrop: float = 0.0  # LayerDrop: probability of skipping an encoder layer in training
    decoder_layerdrop: float = 0.0  # LayerDrop: probability of skipping a decoder layer in training
    scale_embedding: bool = False  # multiply token embeddings by sqrt(d_model)
    tie_word_embeddings: bool = True  # lm_head is the token embedding; false: a matrix of its own (UER-py)
    attn_implementation: str = "sdpa"  # transformers attention backend: sdpa | eager | flash_attention_2
    init_from: str | None = None  # continue pre-training from: a Hugging Face model dir or a UER-py model.bin
    gradient_checkpointing: bool = False  # recompute activations in the backward pass to save memory
    init_logits_bias: str = "zeros"  # zeros | unigram: a fresh final_logits_bias := log unigram of the data
    logits_bias: str = "frozen"  # final_logits_bias: frozen (HF BART buffer) | trained (UER-py output bias)


# The ModelConfig fields that are the trainer's, not BartConfig's.
NOT_BART_FIELDS = {
    "attn_implementation",
    "init_from",
    "gradient_checkpointing",
    "init_logits_bias",
    "logits_bias",
}


@dataclass
class DataConfig:
    path: str | None = None  # a directory written by `python -m data_prep prepare`
    num_workers: int = 2  # DataLoader worker processes that apply the noise
    verify: str = "sizes"  # at start: sizes (file sizes + tokenizer hashes) | full (+ shard sha256, id range)
    pad_to_multiple_of: int = 8  # round padded batch lengths up to a multiple (fewer shapes to compile)
    decoder_attention_mask: bool = False  # also feed the decoder padding mask (the causal mask hides pads)


@dataclass
class NoiseSection:
    """``preset`` plus overrides of ``data_prep.noise.NoiseConfig`` fields (validated when loading)."""

    preset: str = "uer"  # base noise: uer (UER-py bart-chinese) | bart (fairseq bart.large)
    params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> NoiseConfig:
        """The noise these settings describe (already typed and validated when the config was loaded)."""
        return dataclasses.replace(NoiseConfig.from_preset(self.preset), **self.params)


@dataclass
class TrainConfig:
    output_dir: str = "runs/bart"  # checkpoints/, hf/ exports and TensorBoard logs go here
    max_steps: int = 1_000_000  # optimizer steps to train (also the length of the LR schedule)
    max_tokens: int | None = None  # instead of max_steps: train on this many target tokens
    max_epochs: float | None = None  # instead of max_steps: this many passes over the training examples
    batch_size: int = 8  # examples per micro-batch, per device
    grad_accum: int | None = None  # None: global_batch_size / (batch_size * processes), or 1
    global_batch_size: int | None = None  # examples per optimizer step over all processes (sets grad_accum)
    lr: float = 5e-5  # peak AdamW learning rate (after warmup)
    beta1: float = 0.9  # AdamW beta1
    beta2: float = 0.999  # AdamW beta2
    eps: float = 1e-6  # AdamW epsilon
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and LayerNorm weights)
    warmup_ratio: float = 0.1  # share of max_steps of linear warmup from 0 to lr, then lr_schedule
    lr_schedule: str = "linear"  # after warmup: linear | cosine (to 0) | constant | inverse_sqrt | polynomial
    lr_end: float = 1e-7  # polynomial: the LR at max_steps
    lr_power: float = 1.0  # polynomial: exponent of the decay (1.0: linear down to lr_end)
    max_grad_norm: float = 0.0  # gradient-norm clipping threshold; 0: no clipping (UER-py)
    seed: int = 7  # seeds the initial weights, the data order and the training noise
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it, else fp32) | no | bf16 | fp16
    tf32: bool = True  # TF32 for fp32 matmuls on CUDA (Ampere and newer)
    compile: str = "auto"  # torch.compile the model: auto (on CUDA) | true | false
    loss_chunks: int = 8  # cross-entropy fused with the LM head in N row chunks; 0: over fp32 logits
    log_every: int = 100  # steps between training logs (TensorBoard; a printed line when stderr is no tty)
    report_to: str = "tensorboard"  # accelerate trackers, comma-separated (wandb, mlflow, aim, ...) | none
    eval_every: int = 10_000  # steps between evaluations (and at the last step)
    save_every: int = 10_000  # steps between checkpoints + hf/step-N exports (and at the last step)
    save_every_minutes: float = 0.0  # also save a checkpoint (no export) this often; 0: only every save_every
    keep_checkpoints: int = 3  # checkpoints/step-N to keep, newest first (0: all)
    keep_exports: int = 2  # hf/step-N exports to keep, newest first (0: all); hf/final always stays
    resume: str | None = None  # "auto": the newest complete checkpoint in output_dir; or a checkpoint dir
    max_bad_steps: int = 10  # stop after this many NaN/inf losses in a row


@dataclass
class EvalConfig:
    num_examples: int = 512  # the first N rows of the valid split, always the same
    batch_size: int = 16  # evaluation examples per forward pass, per device
    noise_seed: int = 1234  # seed of the evaluation set's noise (fixed across runs and resumes)
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))  # [MASK] prompts to fill in
    num_heldout_samples: int = 2  # held-out examples (with their noise) decoded next to the prompts
    max_new_tokens: int = 128  # generation limit of the evaluation fill-ins


@dataclass
class CardConfig:
    """Metadata of the model card (README.md) written with every export."""

    license: str | None = None  # the license the card declares (e.g. apache-2.0); null: none stated
    datasets: list[str] = field(default_factory=list)  # Hub ids of the training data, e.g. [cluecorpussmall]


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    noise: NoiseSection = field(default_factory=NoiseSection)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    card: CardConfig = field(default_factory=CardConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out = dataclasses.asdict(self)
        out["noise"] = {"preset": self.noise.preset, **self.noise.params}
        return out

    def flat(self) -> dict[str, bool | int | float | str]:
        """``{"train.lr": 5e-05, ...}`` with scalar values only (TensorBoard hparams need that)."""
        flat: dict[str, bool | int | float | str] = {}
        for section, values in self.to_dict().items():
            for key, value in values.items():
                ok = isinstance(value, (bool, int, float, str))
                flat[f"{section}.{key}"] = value if ok else ("" if value is None else str(value))
        return flat


SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def noise_fields() -> dict[str, Any]:
    """Field name -> type of the ``NoiseConfig`` fields that ``noise.*`` overrides (all but the preset)."""
    return {k: v for k, v in typing.get_type_hints(NoiseConfig).items() if k != "preset"}


def known_keys() -> list[str]:
    keys = []
    for name in SECTIONS:
        cls = _section_class(name)
        if cls is NoiseSection:
            keys += ["noise.preset"] + [f"noise.{k}" for k in noise_fields()]
        else:
            keys += [f"{name}.{f.name}" for f in dataclasses.fields(cls)]
    return keys


def _section_class(name: str) -> type:
    return typing.get_type_hints(Config)[name]


def _unknown(key: str) -> UserError:
    close = difflib.get_close_matches(key, known_keys(), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see --help for the known keys"
    return UserError(f"unknown config key '{key}'{hint}")


def parse_overrides(argv: list[str]) -> dict[str, Any]:
    """``["--train.lr", "1e-4", "--model.d_model=32"]`` -> ``{"train.lr": "1e-4", "model.d_model": "32"}``.

    Values stay strings here; ``build_config`` converts each to its field's type.
    """
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or len(arg) == 2:
            raise UserError(f"expected --KEY VALUE, got '{arg}'")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise UserError(f"option --{key} needs a value")
            i += 1
            value = argv[i]
        out[key] = value
        i += 1
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise UserError(f"cannot parse {path}: it is not UTF-8 text") from None
    except (OSError, yaml.YAMLError) as exc:
        raise UserError(f"cannot parse {path}: {first_line(exc)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of sections (model, data, noise, train, eval)")
    return data


def build_config(tree: dict[str, Any], overrides: dict[str, Any] | None = None) -> Config:
    """Typed ``Config`` from a nested mapping plus dotted overrides; unknown keys raise UserError."""
    dotted: dict[str, Any] = {}
    for section, values in tree.items():
        if section not in SECTIONS:
            raise _unknown(str(section))
        if not isinstance(values, dict):
            raise UserError(f"config section '{section}' must be a mapping")
        dotted.update({f"{section}.{k}": v for k, v in values.items()})
    dotted.update(overrides or {})

    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in dotted.items():
        section, _, name = key.partition(".")
        if section not in SECTIONS or not name:
            raise _unknown(key)
        sections[section][name] = value

    cfg = Config()
    for section, values in sections.items():
        cls = _section_class(section)
        if cls is NoiseSection:
            cfg.noise = _build_noise(values)
            continue
        hints = typing.get_type_hints(cls)
        for name, value in values.items():
            if name not in hints:
                raise _unknown(f"{section}.{name}")
            value = coerce(value, hints[name], f"config key '{section}.{name}'")
            setattr(getattr(cfg, section), name, value)
    check_ranges(cfg)
    return cfg


# Range rules, checked when the config is built (before anything runs): key -> (test, what it must be).
_AT_LEAST_1 = (lambda v: v >= 1, "must be at least 1")
_OPTIONAL_AT_LEAST_1 = (lambda v: v is None or v >= 1, "must be at least 1 (or null)")
_AT_LEAST_0 = (lambda v: v >= 0, "must be at least 0")
_PROBABILITY = (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)")
_POSITIVE = (lambda v: math.isfinite(v) and v > 0, "must be a positive finite number")
_NON_NEGATIVE = (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0")
RANGES: dict[str, tuple[Any, str]] = {
    **dict.fromkeys(
        (
            "model.d_model", "model.encoder_layers", "model.decoder_layers", "model.encoder_attention_heads",
            "model.decoder_attention_heads", "model.encoder_ffn_dim", "model.decoder_ffn_dim",
            "model.max_position_embeddings", "train.max_steps", "train.batch_size", "train.log_every",
            "train.eval_every", "train.save_every", "train.max_bad_steps", "eval.batch_size",
            "eval.max_new_tokens",
        ),
        _AT_LEAST_1,
    ),
    **dict.fromkeys(
        ("model.vocab_size", "train.grad_accum", "train.global_batch_size", "train.max_tokens"),
        _OPTIONAL_AT_LEAST_1,
    ),
    "train.max_epochs": (lambda v: v is None or (math.isfinite(v) and v > 0), "must be positive (or null)"),
    **dict.fromkeys(
        (
            "data.num_workers", "train.keep_checkpoints", "train.keep_exports", "train.seed",
            "eval.num_examples", "eval.num_heldout_samples", "eval.noise_seed",
        ),
        _AT_LEAST_0,
    ),
    **dict.fromkeys(
        (
            "model.dropout", "model.attention_dropout", "model.activation_dropout",
            "model.encoder_layerdrop", "model.decoder_layerdrop", "train.beta1", "train.beta2",
        ),
        _PROBABILITY,
    ),
    **dict.fromkeys(("train.lr", "train.eps", "model.init_std"), _POSITIVE),
    **dict.fromkeys(("train.weight_decay", "train.max_grad_norm", "train.save_every_minutes"), _NON_NEGATIVE),
    "train.warmup_ratio": (lambda v: 0.0 <= v <= 1.0, "must be in [0, 1]"),
}  # fmt: skip
CHOICES: dict[str, tuple[str, ...]] = {
    "model.attn_implementation": ("sdpa", "eager", "flash_attention_2"),
    "model.init_logits_bias": ("zeros", "unigram"),
    "model.logits_bias": ("frozen", "trained"),
    "data.verify": ("sizes", "full"),
    "train.mixed_precision": ("auto", "no", "bf16", "fp16"),
}


def check_ranges(cfg: Config) -> None:
    """Every value in its range, every choice known: a bad value fails before anything runs."""
    tree = cfg.to_dict()
    for key, (ok, why) in RANGES.items():
        section, _, name = key.partition(".")
        if name in tree[section] and not ok(tree[section][name]):
            raise UserError(f"config key '{key}' {why}, not {tree[section][name]}")
    for key, choices in CHOICES.items():
        section, _, name = key.partition(".")
        if tree[section][name] not in choices:
            raise UserError(
                f"config key '{key}' must be one of {', '.join(choices)}, not '{tree[section][name]}'"
            )
    if cfg.train.max_tokens is not None and cfg.train.max_epochs is not None:
        raise UserError("set train.max_tokens or train.max_epochs, not both (each sets max_steps)")
    model = cfg.model
    for side in ("encoder", "decoder"):
        heads = getattr(model, f"{side}_attention_heads")
        if model.d_model % heads:
            raise UserError(
                f"config key 'model.{side}_attention_heads' ({heads}) must divide "
                f"model.d_model ({model.d_model})"
            )
    from transformers.activations import ACT2FN  # lazy: keeps `--help` and config loading light

    if model.activation_function not in ACT2FN:
        raise UserError(
            f"config key 'model.activation_function' must be one of {', '.join(sorted(ACT2FN))}, "
            f"not '{model.activation_function}'"
        )


def _build_noise(values: dict[str, Any]) -> NoiseSection:
    """Typed and validated once, by ``NoiseConfig`` itself: a bad value fails when the config is loaded."""
    preset = str(values.pop("preset", "uer"))
    fields = noise_fields()
    for name in values:
        if name not in fields:
            raise _unknown(f"noise.{name}")
    noise = NoiseConfig.from_preset(preset, **values)
    return NoiseSection(preset=preset, params={name: getattr(noise, name) for name in values})


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> Config:
    tree = _read_yaml(Path(path)) if path else {}
    return build_config(tree, overrides)
