"""Helpers the tests share (the fixtures built on them are in conftest.py): a small vocab, synthetic
corpora, the data-prep CLI in-process, shard readers, tiny prepared shards and tiny training runs.

Run as a script (``python tests/helpers.py prepare ARGS``) it is the data-prep CLI for one subcommand,
for the tests that need a separate process (SIGKILL/resume).
"""

from __future__ import annotations

import importlib
import random
import sys
from pathlib import Path

import pytest

from data_prep.cli import COMMANDS, Parser
from data_prep.errors import run_cli

ROOT = Path(__file__).resolve().parents[1]

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_VOCAB = SHARED / "google_zh_vocab.txt"
SAMPLE = SHARED / "corpus" / "cluecorpussmall_sample.txt"
needs_shared = pytest.mark.skipif(
    not (REAL_VOCAB.is_file() and SAMPLE.is_file()),
    reason=f"the real BERT-Chinese vocab and CLUECorpusSmall sample are not in {SHARED}",
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HANZI = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何"  # noqa: E501
RARE_HANZI = "龘靐齉爩"  # not in the small vocab: [UNK]
PUNCT = "，。！？；：、“”（）《》,.!?;:()'\"-/#@%&*+=<>[]{}|~`^_$\\"
WORDS = [
    "hello",
    "world",
    "bert",
    "token",
    "data",
    "2019",
    "100",
    "3.14",
    "http://example.com/a?b=1",
    "iphone",
    "Hello",
    "WORLD",
    "café",
    "naïve",
    "[MASK]",
    "[mask]",
    "[CLS]",
    "[UNK]",
    "[unused1]",
]


def small_vocab_dir(root: Path) -> Path:
    """A BERT vocab of specials, some Chinese characters, punctuation, letters, digits and word pieces."""
    pieces = ["hello", "world", "bert", "token", "data", "http", "example", "com", "iphone", "cafe", "naive"]
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = (
        SPECIALS
        + ["[unused1]"]
        + list(dict.fromkeys(HANZI + PUNCT))
        + letters
        + [f"##{x}" for x in letters]
        + pieces
        + ["##ing", "##s", "##ed", "2019", "100", "##14"]
    )
    vocab = list(dict.fromkeys(vocab))
    root.mkdir(parents=True, exist_ok=True)
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    return root


def sentence(rng: random.Random, max_len: int = 40) -> str:
    parts = []
    for _ in range(rng.randint(1, max_len)):
        r = rng.random()
        if r < 0.75:
            parts.append(rng.choice(HANZI))
        elif r < 0.82:
            parts.append(" " + rng.choice(WORDS) + " ")
        elif r < 0.9:
            parts.append(rng.choice(PUNCT))
        elif r < 0.93:
            parts.append(rng.choice(RARE_HANZI))
        else:
            parts.append(str(rng.randint(0, 10 ** rng.randint(1, 6))))
    return "".join(parts).strip() + rng.choice("。！？；.")


def document(rng: random.Random) -> list[str]:
    """1-8 lines; some are long paragraphs (several sentences on one line), rarely one huge sentence."""
    lines = []
    for _ in range(rng.randint(1, 8)):
        r = rng.random()
        if r < 0.15:
            lines.append("".join(sentence(rng) for _ in range(rng.randint(3, 9))))
        elif r < 0.17:
            lines.append("".join(rng.choice(HANZI) for _ in range(rng.randint(300, 700))))
        else:
            lines.append(sentence(rng))
    return lines


def clue_corpus(path: Path, docs: int, seed: int = 0) -> list[list[str]]:
    """Write ``docs`` documents in CLUE layout; return them (lists of lines)."""
    rng = random.Random(seed)
    out = [document(rng) for _ in range(docs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join("\n".join(d) + "\n\n" for d in out), encoding="utf-8")
    return out


def cli(command: str, *argv: str) -> int:
    """Run one data-prep subcommand in this process, exactly as the dispatcher does."""
    module = importlib.import_module(COMMANDS[command][0])
    parser = Parser(prog=f"bart-data {command}")
    module.configure(parser)
    return run_cli(lambda: module.run(parser.parse_args(list(argv))), "bart-data")


def prepare(vocab: Path, inputs: list[Path], out: Path, *extra: str, defaults: tuple[str, ...] = ()) -> int:
    """`data_prep prepare --quiet --workers 1` of ``inputs`` with ``vocab`` into ``out``; ``extra`` beats
    ``defaults`` (and both beat ``--workers 1``)."""
    argv = ["--input", *map(str, inputs), "--tokenizer", str(vocab), "--output", str(out), "--quiet"]
    return cli("prepare", *argv, "--workers", "1", *defaults, *extra)


def read_split(path: Path) -> list[dict[str, list[int]]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    return [{k: list(v) for k, v in row.items()} for row in ds]


def stream_of(rows: list[dict[str, list[int]]]) -> tuple[list[int], list[int]]:
    """All text ids of the examples in order, and the stream offsets where a document piece ends."""
    ids: list[int] = []
    piece_ends: list[int] = []
    for row in rows:
        start = 1
        for end in row["doc_ends"]:
            ids += row["input_ids"][start:end]
            piece_ends.append(len(ids))
            start = end + 1
    return ids, piece_ends


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every file under root (relative path -> bytes), for byte-identity checks."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# -- trainer runs ---------------------------------------------------------------------------------------

SUBJECTS = ["我们", "他们", "老师", "学生", "京东", "中国", "北京", "公司", "朋友", "记者"]
VERBS = ["喜欢", "看到", "发现", "认为", "需要", "打开", "支持", "介绍"]
OBJECTS = ["新的平台", "电子商务", "首都的风景", "这本书", "那个城市", "一个问题", "今天的新闻", "很多人"]


def make_sentences(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.choice(SUBJECTS)}{rng.choice(VERBS)}{rng.choice(OBJECTS)}。" for _ in range(n)]


def write_shards(root: Path, n_docs: int = 150, seq: int = 48) -> Path:
    """Shards made by the real `data_prep prepare` from a generated Chinese corpus, with a character vocab."""
    from pretrain.config import DEFAULT_PROMPTS

    chars = sorted({c for w in SUBJECTS + VERBS + OBJECTS + DEFAULT_PROMPTS for c in w} - set("[]MASK"))
    src = root / "src"
    src.mkdir(parents=True)
    (src / "vocab.txt").write_text("\n".join(SPECIALS + chars) + "\n", encoding="utf-8")
    sents = make_sentences(n_docs * 5, seed=0)
    docs = ["\n".join(sents[i : i + 5]) for i in range(0, len(sents), 5)]
    (src / "corpus.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    options = ["--seq-length", str(seq), "--valid-ratio", "0.15"]
    assert prepare(src, [src / "corpus.txt"], root / "data", *options) == 0
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
    path = ROOT / "configs" / config if config else None
    return train(load_config(path, tiny_overrides(data, out, **overrides)))


def train_until_interrupted(data: Path, out: Path, batch: int, **overrides) -> None:
    """``run_training``, stopped as by Ctrl-C when the loop takes its ``batch``-th micro-batch."""
    from pretrain.data import EpochBatchSampler

    advance, calls = EpochBatchSampler.advance, []

    def interrupt(self, epoch, offset):
        calls.append(1)
        if len(calls) == batch:
            raise KeyboardInterrupt
        return advance(self, epoch, offset)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(EpochBatchSampler, "advance", interrupt)
        with pytest.raises(KeyboardInterrupt):
            run_training(data, out, **overrides)


def scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from pretrain.runlog import read_scalars

    return {
        tag: [(step, value) for _, step, value in points] for tag, points in read_scalars(run_dir).items()
    }


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1], *sys.argv[2:]))
