"""Shared fixtures for the trainer tests: tiny prepared shards and tiny configs."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SUBJECTS = ["我们", "他们", "老师", "学生", "京东", "中国", "北京", "公司", "朋友", "记者"]
VERBS = ["喜欢", "看到", "发现", "认为", "需要", "打开", "支持", "介绍"]
OBJECTS = ["新的平台", "电子商务", "首都的风景", "这本书", "那个城市", "一个问题", "今天的新闻", "很多人"]


def make_sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)}{rng.choice(VERBS)}{rng.choice(OBJECTS)}。" for _ in range(n)]


def write_shards(root: Path, n_docs: int = 150, seq: int = 48) -> Path:
    """Shards made by the real `data_prep prepare` from a generated Chinese corpus, with a character vocab."""
    from data_prep import prepare
    from pretrain.config import DEFAULT_PROMPTS

    chars = sorted({c for w in SUBJECTS + VERBS + OBJECTS + DEFAULT_PROMPTS for c in w} - set("[]MASK"))
    src = root / "src"
    src.mkdir(parents=True)
    (src / "vocab.txt").write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    sents = make_sentences(n_docs * 5, seed=0)
    docs = ["\n".join(sents[i : i + 5]) for i in range(0, len(sents), 5)]
    (src / "corpus.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    parser = argparse.ArgumentParser()
    prepare.configure(parser)
    args = parser.parse_args(
        [
            "--input",
            str(src / "corpus.txt"),
            "--tokenizer",
            str(src),
            "--output",
            str(root / "data"),
            "--seq-length",
            str(seq),
            "--valid-ratio",
            "0.15",
        ]
    )
    assert prepare.run(args) == 0
    return root / "data"


def tiny_overrides(data: Path, out: Path, **extra) -> dict:
    base = {
        "data.path": str(data),
        "data.num_workers": 0,
        "train.output_dir": str(out),
        "model.vocab_size": None,
        "model.d_model": 32,
        "model.encoder_layers": 1,
        "model.decoder_layers": 1,
        "model.encoder_attention_heads": 2,
        "model.decoder_attention_heads": 2,
        "model.encoder_ffn_dim": 64,
        "model.decoder_ffn_dim": 64,
        "model.max_position_embeddings": 64,
        "train.max_steps": 8,
        "train.batch_size": 4,
        "train.lr": 3e-3,
        "train.warmup_ratio": 0.1,
        "train.log_every": 1,
        "train.eval_every": 4,
        "train.save_every": 4,
        "train.mixed_precision": "no",
        "eval.num_examples": 8,
        "eval.batch_size": 4,
        "eval.max_new_tokens": 16,
    }
    base.update(extra)
    return base


def run_training(data: Path, out: Path, config: str | None = "tiny.yaml", **overrides) -> Path:
    """Train in this process (accelerate's singletons reset first); returns the final export dir."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    from pretrain.config import load_config
    from pretrain.train import train

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()
    path = Path(__file__).resolve().parents[1] / "configs" / config if config else None
    return train(load_config(path, tiny_overrides(data, out, **overrides)))


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from pretrain.report import read_scalars

    return {
        tag: [(step, value) for _, step, value in points] for tag, points in read_scalars(run_dir).items()
    }
