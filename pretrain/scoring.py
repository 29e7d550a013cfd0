"""``bart-eval``'s library: score any set of models the same way, on the same held-out text.

Every model sees the same noised examples (a pure function of the noise seed and the example index,
as in training) and the same cloze items. The held-out metrics are the trainer's own
(``pretrain.heldout.evaluate``), so ``bart-eval`` on ``hf/step-N`` with the run's settings gives the
``eval/loss`` and ``eval/accuracy`` the run logged at step N.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from data_prep.errors import UserError
from data_prep.noise import Denoiser, NoiseConfig
from pretrain.cloze import ClozeItem, build_cloze_set, score_cloze
from pretrain.collate import DenoisingCollator
from pretrain.config import DEFAULT_PROMPTS, Config, EvalConfig, load_config
from pretrain.data import Shards
from pretrain.heldout import EvalExample, build_eval_set, evaluate, fill_in, rank_slice, unigram_accuracy
from pretrain.resolve import Resolved
from pretrain.rundir import RunDir

METRICS = (  # key, what the table calls it
    ("eval/loss", "loss per target token"),
    ("eval/perplexity", "perplexity"),
    ("eval/accuracy", "accuracy, corrupted tokens"),
    ("eval/accuracy_copied", "accuracy, copied tokens"),
    ("eval/token_accuracy", "accuracy, all tokens"),
    ("cloze/exact_match", "cloze exact match"),
    ("cloze/char_f1", "cloze character F1"),
)


@dataclass
class Settings:
    """What decides the numbers: the same settings give every model the same examples."""

    noise: NoiseConfig
    noise_seed: int = EvalConfig.noise_seed
    examples: int = EvalConfig.num_examples
    batch_size: int = EvalConfig.batch_size
    cloze: int = 200
    split: str = "valid"
    pad_to_multiple_of: int = 8
    decoder_attention_mask: bool = False
    source: str = "defaults"

    @classmethod
    def of_run(cls, run_dir: Path) -> Settings | None:
        """The noise and evaluation settings of a run (its config.yaml), so a run's own numbers come out."""
        config_file = RunDir(run_dir).config_file
        if not config_file.is_file():
            return None
        cfg: Config = load_config(config_file)
        return cls(
            noise=cfg.noise.build(),
            noise_seed=cfg.eval.noise_seed,
            examples=cfg.eval.num_examples,
            batch_size=cfg.eval.batch_size,
            pad_to_multiple_of=cfg.data.pad_to_multiple_of,
            decoder_attention_mask=cfg.data.decoder_attention_mask,
            source=str(config_file),
        )

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "noise": {"preset": self.noise.preset, **self.noise.overrides()}}


@dataclass
class HeldOut:
    """The examples and cloze items every model is scored on."""

    examples: list[EvalExample]
    cloze: list[ClozeItem]
    baseline: float  # the best constant guess's accuracy on the corrupted tokens
    tokenizer: Any
    collate: DenoisingCollator

    @classmethod
    def build(cls, shards: Shards, settings: Settings) -> HeldOut:
        rows = shards.valid if settings.split == "valid" else shards.train
        if rows is None or not len(rows):
            raise UserError(f"{shards.dir.split_dir(settings.split)} holds no examples to score on")
        tok = shards.tokenizer
        denoiser = Denoiser.from_tokenizer(settings.noise, tok, seed=settings.noise_seed)
        examples = build_eval_set(rows, denoiser, settings.examples)
        cloze = build_cloze_set(rows, tok, settings.cloze, settings.noise_seed)
        collate = DenoisingCollator(
            tok.pad_token_id, settings.pad_to_multiple_of, settings.decoder_attention_mask
        )
        return cls(examples, cloze, unigram_accuracy(examples), tok, collate)


@dataclass
class Score:
    """One model's column."""

    name: str
    path: str | None
    kind: str
    parameters: int
    metrics: dict[str, float]
    prompts: dict[str, str] = field(default_factory=dict)


def score(resolved: Resolved, held: HeldOut, settings: Settings, accelerator: Accelerator) -> Score:
    """``resolved`` on ``held``: this rank's share of the examples and items, summed over all ranks."""
    model = resolved.model.to(accelerator.device)
    rank, world = accelerator.process_index, accelerator.num_processes
    with accelerator.autocast():
        share = rank_slice(held.examples, rank, world) if held.examples else []
        metrics = evaluate(model, share, held.collate, settings.batch_size, accelerator)
        items = held.cloze[rank::world]
        sums = score_cloze(model, held.tokenizer, items, settings.batch_size, accelerator.device)
        prompts = [held.tokenizer(p)["input_ids"] for p in DEFAULT_PROMPTS]
        outputs = fill_in(model, held.tokenizer, prompts, 64)
    count, exact, f1 = accelerator.reduce(sums.to(accelerator.device), reduction="sum").tolist()
    metrics["eval/perplexity"] = math.exp(min(metrics["eval/loss"], 700.0))
    metrics["cloze/exact_match"] = exact / max(count, 1.0)
    metrics["cloze/char_f1"] = f1 / max(count, 1.0)
    model.cpu()
    path = str(resolved.path) if resolved.path else None
    filled = dict(zip(DEFAULT_PROMPTS, outputs, strict=True))
    return Score(resolved.name, path, resolved.kind, resolved.parameters, metrics, filled)


def table(scores: list[Score], held: HeldOut) -> str:
    """Metrics down, models across, as a Markdown table (what the terminal and the card show)."""
    names = [s.name for s in scores]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key, label in METRICS:
        lines.append(f"| {label} | " + " | ".join(_fmt(key, s.metrics[key]) for s in scores) + " |")
    lines.append("| parameters | " + " | ".join(f"{s.parameters / 1e6:.1f} M" for s in scores) + " |")
    lines.append(
        f"\n{len(held.examples)} held-out examples (unigram baseline on corrupted tokens "
        f"{held.baseline:.3f}), {len(held.cloze)} cloze items"
    )
    return "\n".join(lines)


def _fmt(key: str, value: float) -> str:
    if key == "eval/perplexity":
        return f"{value:,.1f}"
    return f"{value:.4f}" if key == "eval/loss" else f"{value:.3f}"
