"""The run configuration: typed dataclasses, loaded from YAML and overridden by dotted CLI flags.

``--train.max_steps 100`` sets ``Config.train.max_steps``; an unknown key is a ``UserError`` that lists
the closest known keys. ``noise.*`` takes ``noise.preset`` plus any field of ``data_prep.noise.NoiseConfig``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_prep.coerce import coerce
from data_prep.errors import UserError, first_line
from data_prep.noise import NoiseConfig
from data_prep.settings import NON_NEGATIVE, POSITIVE, Rule, at_least, between, check, setting

DEFAULT_PROMPTS = [
    "作为电子[MASK]的平台，京东绝对是领先者。如今的刘强[MASK]已经是身价过[MASK]的老板。",
    "中国的首都是[MASK]京",
]


def _activations() -> list[str]:
    from transformers.activations import ACT2FN  # lazy: keeps `--help` and config loading light

    return sorted(ACT2FN)


def _trackers_known(report_to: str) -> bool:
    from pretrain.tracking import unknown_trackers  # lazy: accelerate's tracker table

    return not unknown_trackers(report_to)


def _trackers_text() -> str:
    from pretrain.tracking import known_trackers

    return f"must name accelerate trackers ({', '.join(known_trackers())}) or none"


AT_LEAST_0, AT_LEAST_1 = at_least(0), at_least(1)
PROBABILITY = between(0, 1, high_open=True)
COMPILE = {"auto": None, "true": True, "yes": True, "false": False, "no": False}  # YAML true/false: yes/no
# train.lr_schedule -> the transformers schedule (pretrain.optim); every one starts with linear warmup from 0.
SCHEDULES = {
    "linear": "linear",  # then linear decay to 0 at max_steps
    "cosine": "cosine",  # then half a cosine down to 0 at max_steps
    "constant": "constant_with_warmup",  # then train.lr until the end
    "inverse_sqrt": "inverse_sqrt",  # then lr * sqrt(warmup / step) (fairseq; without warmup: 10,000)
    "polynomial": "polynomial",  # then (lr - lr_end) * (1 - progress) ** lr_power + lr_end
}


@dataclass
class ModelConfig:
    """``BartConfig`` architecture fields (special-token ids always come from the tokenizer)."""

    vocab_size: int | None = setting(
        21128, "must match the data's tokenizer; null: the tokenizer's size", rule=AT_LEAST_1
    )
    d_model: int = setting(768, "hidden size of the encoder and the decoder", rule=AT_LEAST_1)
    encoder_layers: int = setting(4, "encoder transformer layers", rule=AT_LEAST_1)
    decoder_layers: int = setting(4, "decoder transformer layers", rule=AT_LEAST_1)
    encoder_attention_heads: int = setting(
        12, "attention heads per encoder layer (must divide d_model)", rule=AT_LEAST_1
    )
    decoder_attention_heads: int = setting(
        12, "attention heads per decoder layer (must divide d_model)", rule=AT_LEAST_1
    )
    encoder_ffn_dim: int = setting(3072, "inner size of the encoder feed-forward blocks", rule=AT_LEAST_1)
    decoder_ffn_dim: int = setting(3072, "inner size of the decoder feed-forward blocks", rule=AT_LEAST_1)
    activation_function: str = setting(
        "gelu",
        "feed-forward activation (a transformers ACT2FN name: gelu, relu, ...)",
        rule=Rule(lambda v: v in _activations(), lambda: f"must be one of {', '.join(_activations())}"),
    )
    dropout: float = setting(0.1, "dropout on embeddings and sublayer outputs", rule=PROBABILITY)
    attention_dropout: float = setting(0.1, "dropout on attention probabilities", rule=PROBABILITY)
    activation_dropout: float = setting(0.1, "dropout after the feed-forward activation", rule=PROBABILITY)
    max_position_embeddings: int = setting(
        1024, "learned positions; at least the data's sequence length", rule=AT_LEAST_1
    )
    init_std: float = setting(
        0.02, "std of the normal initialisation of a fresh model's weights", rule=POSITIVE
    )
    encoder_layerdrop: float = setting(
        0.0, "LayerDrop: probability of skipping an encoder layer in training", rule=PROBABILITY
    )
    decoder_layerdrop: float = setting(
        0.0, "LayerDrop: probability of skipping a decoder layer in training", rule=PROBABILITY
    )
    scale_embedding: bool = setting(False, "multiply token embeddings by sqrt(d_model)")
    tie_word_embeddings: bool = setting(
        True, "lm_head is the token embedding; false: a matrix of its own (UER-py)"
    )
    attn_implementation: str = setting(
        "sdpa", "transformers attention backend", choices=("sdpa", "eager", "flash_attention_2")
    )
    init_from: str | None = setting(
        None, "continue pre-training from: a Hugging Face model dir or a UER-py model.bin"
    )
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass to save memory")
    init_logits_bias: str = setting(
        "zeros",
        "a fresh model's final_logits_bias; unigram: the log unigram frequencies of the data",
        choices=("zeros", "unigram"),
    )
    logits_bias: str = setting(
        "frozen",
        "final_logits_bias: frozen (HF BART's buffer) or trained (UER-py's output bias)",
        choices=("frozen", "trained"),
    )


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
    path: str | None = setting(None, "a directory written by `python -m data_prep prepare`")
    num_workers: int = setting(2, "DataLoader worker processes that apply the noise", rule=AT_LEAST_0)
    verify: str = setting(
        "sizes",
        "checks at start: sizes (file sizes + tokenizer hashes), full (+ shard sha256, id range)",
        choices=("sizes", "full"),
    )
    pad_to_multiple_of: int = setting(
        8, "round padded batch lengths up to a multiple (fewer shapes to compile)", rule=AT_LEAST_1
    )
    decoder_attention_mask: bool = setting(
        False, "also feed the decoder padding mask (the causal mask hides pads)"
    )


@dataclass
class NoiseSection:
    """``preset`` plus overrides of ``data_prep.noise.NoiseConfig`` fields (validated when loading)."""

    preset: str = NoiseConfig.preset  # declared (described, checked) by NoiseConfig
    params: dict[str, Any] = field(default_factory=dict)

    def build(self) -> NoiseConfig:
        """The noise these settings describe (already typed and validated when the config was loaded)."""
        return dataclasses.replace(NoiseConfig.from_preset(self.preset), **self.params)


@dataclass
class TrainConfig:
    output_dir: str = setting("runs/bart", "checkpoints/, hf/ exports and TensorBoard logs go here")
    max_steps: int = setting(
        1_000_000, "optimizer steps to train (also the length of the LR schedule)", rule=AT_LEAST_1
    )
    max_tokens: int | None = setting(
        None, "instead of max_steps: train on this many target tokens", rule=AT_LEAST_1
    )
    max_epochs: float | None = setting(
        None, "instead of max_steps: this many passes over the training examples", rule=POSITIVE
    )
    batch_size: int = setting(8, "examples per micro-batch, per device", rule=AT_LEAST_1)
    grad_accum: int | None = setting(
        None, "null: global_batch_size / (batch_size * processes), or 1", rule=AT_LEAST_1
    )
    global_batch_size: int | None = setting(
        None, "examples per optimizer step over all processes (sets grad_accum)", rule=AT_LEAST_1
    )
    lr: float = setting(5e-5, "peak AdamW learning rate (after warmup)", rule=POSITIVE)
    beta1: float = setting(0.9, "AdamW beta1", rule=PROBABILITY)
    beta2: float = setting(0.999, "AdamW beta2", rule=PROBABILITY)
    eps: float = setting(1e-6, "AdamW epsilon", rule=POSITIVE)
    weight_decay: float = setting(
        0.01, "AdamW weight decay (not on biases and LayerNorm weights)", rule=NON_NEGATIVE
    )
    warmup_ratio: float = setting(
        0.1, "share of max_steps of linear warmup from 0 to lr, then lr_schedule", rule=between(0, 1)
    )
    lr_schedule: str = setting(
        "linear",
        "the LR after warmup: linear and cosine decay to 0, polynomial to lr_end, inverse_sqrt as fairseq",
        choices=tuple(SCHEDULES),
    )
    lr_end: float = setting(1e-7, "polynomial: the LR at max_steps (>= 0, below lr)")
    lr_power: float = setting(1.0, "polynomial: exponent of the decay (1.0: linear down to lr_end)")
    max_grad_norm: float = setting(
        0.0, "gradient-norm clipping threshold; 0: no clipping (UER-py)", rule=NON_NEGATIVE
    )
    seed: int = setting(
        7, "seeds the initial weights, the data order and the training noise", rule=AT_LEAST_0
    )
    mixed_precision: str = setting(
        "auto",
        "auto: what `accelerate launch` was told, else bf16 on a GPU that has it, else fp32 (no)",
        choices=("auto", "no", "bf16", "fp16"),
    )
    tf32: bool = setting(True, "TF32 for fp32 matmuls on CUDA (Ampere and newer)")
    compile: str = setting(
        "auto",
        "torch.compile the model; auto: on CUDA only (on a CPU compiling costs minutes, saves little)",
        rule=Rule(lambda v: str(v).lower() in COMPILE, "must be auto, true or false"),
    )
    loss_chunks: int = setting(
        8, "cross-entropy fused with the LM head in N row chunks; 0: over fp32 logits", rule=AT_LEAST_0
    )
    log_every: int = setting(
        100,
        "steps between training logs (TensorBoard; a printed line when stderr is no tty)",
        rule=AT_LEAST_1,
    )
    report_to: str = setting(
        "tensorboard",
        "accelerate trackers, comma-separated (wandb, mlflow, aim, ...), or none",
        rule=Rule(_trackers_known, _trackers_text),
    )
    eval_every: int = setting(10_000, "steps between evaluations (and at the last step)", rule=AT_LEAST_1)
    save_every: int = setting(
        10_000, "steps between checkpoints + hf/step-N exports (and at the last step)", rule=AT_LEAST_1
    )
    save_every_minutes: float = setting(
        0.0, "also save a checkpoint (no export) this often; 0: only every save_every", rule=NON_NEGATIVE
    )
    keep_checkpoints: int = setting(3, "checkpoints/step-N to keep, newest first (0: all)", rule=AT_LEAST_0)
    keep_exports: int = setting(
        2, "hf/step-N exports to keep, newest first (0: all); hf/final always stays", rule=AT_LEAST_0
    )
    resume: str | None = setting(
        None, '"auto": the newest complete checkpoint in output_dir; or a checkpoint dir'
    )
    max_bad_steps: int = setting(10, "stop after this many NaN/inf losses in a row", rule=AT_LEAST_1)


@dataclass
class EvalConfig:
    num_examples: int = setting(512, "the first N rows of the valid split, always the same", rule=AT_LEAST_0)
    batch_size: int = setting(16, "evaluation examples per forward pass, per device", rule=AT_LEAST_1)
    noise_seed: int = setting(
        1234, "seed of the evaluation set's noise (fixed across runs and resumes)", rule=AT_LEAST_0
    )
    prompts: list[str] = setting(doc="[MASK] prompts to fill in", factory=lambda: list(DEFAULT_PROMPTS))
    num_heldout_samples: int = setting(
        2, "held-out examples (with their noise) decoded next to the prompts", rule=AT_LEAST_0
    )
    max_new_tokens: int = setting(128, "generation limit of the evaluation fill-ins", rule=AT_LEAST_1)


@dataclass
class CardConfig:
    """Metadata of the model card (README.md) written with every export."""

    license: str | None = setting(None, "the license the card declares (e.g. apache-2.0); null: none stated")
    datasets: list[str] = setting(doc="Hub ids of the training data, e.g. [cluecorpussmall]", factory=list)


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
    check_config(cfg)
    return cfg


def check_config(cfg: Config) -> None:
    """The one validation pass: every field against its declaration (``data_prep.settings``), then the
    rules that tie fields together. A bad value fails when the config is loaded, before anything runs."""
    for section in SECTIONS:
        if section != "noise":  # NoiseConfig checks its own fields when the section is built
            check(getattr(cfg, section), "config key", f"{section}.")
    if cfg.train.max_tokens is not None and cfg.train.max_epochs is not None:
        raise UserError("set train.max_tokens or train.max_epochs, not both (each sets max_steps)")
    tc = cfg.train
    if tc.lr_schedule == "polynomial" and not 0 <= tc.lr_end < tc.lr:
        raise UserError(
            f"config key 'train.lr_end' must be >= 0 and below train.lr ({tc.lr}), not {tc.lr_end}"
        )
    model = cfg.model
    for side in ("encoder", "decoder"):
        heads = getattr(model, f"{side}_attention_heads")
        if model.d_model % heads:
            raise UserError(
                f"config key 'model.{side}_attention_heads' must divide model.d_model ({model.d_model}), "
                f"not {heads}"
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
