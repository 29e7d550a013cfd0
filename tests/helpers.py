"""Helpers the tests share (the fixtures built on them are in conftest.py): a small vocab, synthetic
corpora, the data-prep CLI in-process, shard readers, tiny prepared shards and tiny training runs, tiny
models, and the scripts of bench/ loaded as modules.

Run as a script (``python tests/helpers.py prepare ARGS``) it is the data-prep CLI for one subcommand,
for the tests that need a separate process (SIGKILL/resume).
"""

from __future__ import annotations

import importlib
import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from data_prep.cli import COMMANDS, Parser
from data_prep.errors import run_cli

if TYPE_CHECKING:
    import torch
    from transformers import BartForConditionalGeneration, BertTokenizer

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


# -- tiny models ------------------------------------------------------------------------------------------

PAD, CLS, SEP = 0, 2, 3  # the special ids of tiny_bart's made-up vocab of 97
TOLERANCE = {"rtol": 1e-5, "atol": 1e-7}  # fp32: the sums run in another order


def tiny_bart(
    bias: bool = True, tie: bool = True, trained_bias: bool = False
) -> BartForConditionalGeneration:
    """``tie``: lm_head is the token embedding; else UER-py's head (one token embedding for encoder and
    decoder, lm_head apart), with ``trained_bias`` the output bias a parameter, as build_model makes them."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from pretrain.model import share_token_embeddings, train_logits_bias

    torch.manual_seed(0)
    config = BartConfig(
        vocab_size=97, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, pad_token_id=PAD, bos_token_id=CLS,
        eos_token_id=SEP, decoder_start_token_id=CLS, tie_word_embeddings=tie,
    )  # fmt: skip
    model = BartForConditionalGeneration._from_config(config, attn_implementation="sdpa")
    if bias:  # a unigram-like final_logits_bias, as init_logits_bias: unigram gives
        with torch.no_grad():
            model.final_logits_bias.normal_()
    if not tie:
        share_token_embeddings(model, loaded=False)
    if trained_bias:
        train_logits_bias(model)
    return model


def examples(lengths: list[tuple[int, int]], seed: int = 0) -> list[dict[str, list[int]]]:
    """Rows of ``(source, target)`` lengths with random ids of tiny_bart's vocab between [CLS] and [SEP]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    row = lambda n: [CLS, *rng.integers(5, 97, n - 2).tolist(), SEP]  # noqa: E731
    return [{"input_ids": row(s), "labels": row(t)} for s, t in lengths]


LENGTHS = [(9, 12), (20, 5), (14, 17), (3, 30)]


def loss_and_grads(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


SMALL_BART = {"vocab_size": None, "d_model": 16, "encoder_layers": 1, "decoder_layers": 1,
              "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 32,
              "decoder_ffn_dim": 32, "max_position_embeddings": 16}  # fmt: skip
UER_HEAD = {"tie_word_embeddings": False, "logits_bias": "trained"}  # with SMALL_BART: a ModelConfig


def small_tokenizer(root: Path) -> BertTokenizer:
    """The specials and a-z in ``root/vocab.txt``, loaded: for ``build_model`` of SMALL_BART."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"abcdefghijklmnopqrstuvwxyz"]
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer.from_pretrained(str(root))


def small_logits(model) -> torch.Tensor:
    import torch

    ids = torch.tensor([[2, 7, 9, 11, 5, 3], [2, 8, 6, 3, 0, 0]])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long(), decoder_input_ids=ids[:, :-1]).logits


# -- downstream tasks ---------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tsv(path: Path, rows: list[tuple[str, ...]], header: str = "label\ttext_a") -> Path:
    return write(path, header + "\n" + "".join("\t".join(r) + "\n" for r in rows))


def synthetic(n: int, seed: int) -> list[tuple[str, str]]:
    """A task a model can learn: the label is the first character."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        body = "".join(rng.choice(HANZI[:60]) for _ in range(rng.randint(2, 12)))
        out.append((label, ("好" if label == "pos" else "不") + body))
    return out


def synthetic_task(root: Path) -> dict[str, Path]:
    """``train/dev/test.tsv`` (24, 8 and 8 rows) of the ``synthetic`` task under ``root``."""
    root.mkdir(parents=True)
    return {
        s: tsv(root / f"{s}.tsv", synthetic(n, i))
        for i, (s, n) in enumerate({"train": 24, "dev": 8, "test": 8}.items())
    }


def tiny_export(vocab: Path, out: Path) -> Path:
    """A tiny BART export with the small vocab (as `pretrain` writes one: vocab.txt beside the weights)."""
    import shutil

    import torch
    from transformers import BartConfig, BartForConditionalGeneration, BertTokenizer

    tok = BertTokenizer.from_pretrained(str(vocab))
    ids = {
        "bos_token_id": tok.cls_token_id,
        "eos_token_id": tok.sep_token_id,
        "pad_token_id": tok.pad_token_id,
    }
    config = BartConfig(
        vocab_size=len(tok),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=32,
        decoder_start_token_id=tok.cls_token_id,
        forced_eos_token_id=tok.sep_token_id,
        **ids,
    )
    torch.manual_seed(1234)  # not a seed the tests fine-tune with: `random` must differ from it
    BartForConditionalGeneration(config).save_pretrained(str(out))
    shutil.copyfile(vocab / "vocab.txt", out / "vocab.txt")
    return out


# -- bench/ -----------------------------------------------------------------------------------------------


def bench_script(name: str) -> ModuleType:
    """``bench/NAME.py`` loaded as a module (bench/ holds scripts: it is no package, nor on sys.path)."""
    key = f"bench_{name}"
    if key not in sys.modules:  # registered before it runs, as an import would (dataclasses look it up)
        spec = importlib.util.spec_from_file_location(key, ROOT / "bench" / f"{name}.py")
        sys.modules[key] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[key])
    return sys.modules[key]


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1], *sys.argv[2:]))
