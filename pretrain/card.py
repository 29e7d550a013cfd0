"""The model card (``README.md``) that every export carries: Hub metadata, then this model's facts.

The seed model's page is the template: how to use, training data, training procedure, evaluation,
limitations, citation. ``render`` is pure (facts in, Markdown out); the trainer and ``convert uer-to-hf``
gather the facts. ``bart-eval --card`` and ``bart-finetune --card`` replace only their own marked block
and their own ``model-index`` entries, leaving the rest of a card as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from data_prep.atomic import write_text
from data_prep.errors import UserError

CARD = "README.md"
WIDGET = "中国的首都是[MASK]京"
TAGS = ["bart", "chinese", "text2text-generation", "fill-mask", "bart-chinese-pretrain"]
EVAL_TASK = ("text2text-generation", "Denoising (held-out text)")
CITATIONS = """```bibtex
@inproceedings{lewis-etal-2020-bart,
  title = {{BART}: Denoising Sequence-to-Sequence Pre-training for Natural Language Generation,
           Translation, and Comprehension},
  author = {Lewis, Mike and Liu, Yinhan and Goyal, Naman and Ghazvininejad, Marjan and
            Mohamed, Abdelrahman and Levy, Omer and Stoyanov, Veselin and Zettlemoyer, Luke},
  booktitle = {Proceedings of the 58th Annual Meeting of the Association for Computational Linguistics},
  year = {2020},
  pages = {7871--7880}
}

@inproceedings{zhao2019uer,
  title = {{UER}: An Open-Source Toolkit for Pre-training Models},
  author = {Zhao, Zhe and Chen, Hui and Zhang, Jinbin and Zhao, Xin and Liu, Tao and Lu, Wei and
            Chen, Xi and Deng, Haotang and Ju, Qi and Du, Xiaoyong},
  booktitle = {Proceedings of EMNLP-IJCNLP 2019: System Demonstrations},
  year = {2019},
  pages = {241--246}
}
```"""


@dataclass
class Training:
    """How the weights were trained, as far as this export goes."""

    step: int
    max_steps: int
    global_batch: str  # "64 = 8 per device x grad_accum 1 x 8 processes"
    target_tokens: float  # about: steps x global batch x mean target tokens per example
    optimizer: str  # "AdamW lr 1e-4, betas (0.9, 0.999), eps 1e-6, weight decay 0.01"
    schedule: str  # "10% linear warmup, then linear decay"
    noise: str  # "uer (mask_ratio=0.3)"
    precision: str
    devices: str  # "1 process on cpu"
    wall_seconds: float
    resume_command: str
    init_from: str | None = None


@dataclass
class Facts:
    """Everything ``render`` states; ``None`` leaves a section out."""

    name: str
    config: Any  # the BartConfig
    parameters: int
    head: str  # tied to the embeddings | separate lm_head ...
    manifest: dict[str, Any] | None = None
    training: Training | None = None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    source: str | None = None  # where the weights came from, when not trained here (a conversion)
    license: str | None = None
    datasets: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.training is None or self.training.step >= self.training.max_steps


def head_of(model: Any) -> str:
    """How the output projection relates to the token embeddings, and whether its bias is trained."""
    tied = model.lm_head.weight.data_ptr() == model.model.shared.weight.data_ptr()
    trained = "final_logits_bias" in dict(model.named_parameters())
    head = "tied to the token embeddings" if tied else "a separate lm_head (UER-py's structure)"
    return head + (", trained output bias" if trained else "")


def metadata(facts: Facts) -> ModelCardData:
    results = [
        EvalResult(
            task_type=EVAL_TASK[0],
            task_name=EVAL_TASK[1],
            dataset_type=(facts.datasets or ["held-out"])[0],
            dataset_name="held-out split of the pre-training shards",
            dataset_split="valid",
            metric_type=key.split("/")[-1],
            metric_name=key,
            metric_value=round(float(value), 6),
        )
        for key, value in facts.eval_metrics.items()
        if key in ("eval/loss", "eval/accuracy", "eval/accuracy_copied")
    ]
    return ModelCardData(
        language="zh",
        license=facts.license,
        tags=list(TAGS),
        pipeline_tag="text2text-generation",
        datasets=facts.datasets or None,
        widget=[{"text": WIDGET}],
        model_name=facts.name,
        eval_results=results or None,
    )


def render(facts: Facts) -> str:
    """The whole card: YAML metadata, then the seed card's sections with this model's facts."""
    c, t = facts.config, facts.training
    status = (
        ""
        if t is None or facts.final
        else f" An intermediate checkpoint: step {t.step:,} of {t.max_steps:,}."
    )

    origin = facts.source or "pre-trained with bart-chinese-pretrain, the UER-py recipe through accelerate"
    body = [
        f"# {facts.name}",
        "",
        f"A Chinese BART ({c.encoder_layers}+{c.decoder_layers} layers, hidden {c.d_model}), {origin}, "
        f"with the denoising objective of `uer/bart-chinese-4-768-cluecorpussmall`.{status}",
        "",
        "## Model description",
        "",
        f"- architecture: BART, {c.encoder_layers} encoder + {c.decoder_layers} decoder layers, hidden size "
        f"{c.d_model}, {c.encoder_attention_heads} attention heads, FFN {c.encoder_ffn_dim}, "
        f"{c.activation_function}, {c.max_position_embeddings} positions",
        f"- parameters: {facts.parameters:,} ({facts.parameters / 1e6:.1f} M)",
        f"- vocabulary: {c.vocab_size:,} WordPiece tokens (BERT-Chinese layout: [PAD] [UNK] [CLS] [SEP] "
        "[MASK]); generation starts at [CLS] and stops at [SEP]",
        f"- output head: {facts.head}",
        "",
        "## How to use",
        "",
        "transformers 4.x, as the seed model's card:",
        "",
        "```python",
        "from transformers import BertTokenizer, BartForConditionalGeneration, Text2TextGenerationPipeline",
        'tokenizer = BertTokenizer.from_pretrained("PATH")',
        'model = BartForConditionalGeneration.from_pretrained("PATH")',
        "text2text_generator = Text2TextGenerationPipeline(model, tokenizer)",
        f'text2text_generator("{WIDGET}", max_length=50, do_sample=False)',
        "```",
        "",
        "transformers 5.x (which removed that pipeline):",
        "",
        "```python",
        "from transformers import BertTokenizer, BartForConditionalGeneration",
        'tokenizer = BertTokenizer.from_pretrained("PATH")',
        'model = BartForConditionalGeneration.from_pretrained("PATH")',
        f'ids = tokenizer("{WIDGET}", return_tensors="pt").input_ids',
        "print(tokenizer.decode(model.generate(ids, max_length=50)[0], skip_special_tokens=True))",
        "```",
        "",
        *_data_section(facts.manifest),
        *_procedure_section(facts.training),
        "## Evaluation results",
        "",
        *_eval_lines(facts),
        "## Limitations",
        "",
        *_limitations(facts),
        "",
        "## Citation",
        "",
        CITATIONS,
        "",
    ]
    return f"---\n{metadata(facts).to_yaml()}\n---\n\n" + "\n".join(body)


def _data_section(manifest: dict[str, Any] | None) -> list[str]:
    if not manifest:
        return []
    counts = manifest.get("counts", {}).get("train", {})
    fill = manifest.get("fill", {}).get("train", {}).get("fill_ratio")
    sources = [Path(s.get("path", "?")).name for s in manifest.get("sources", [])]
    shown = ", ".join(sources[:5]) + (f" and {len(sources) - 5} more" if len(sources) > 5 else "")
    options = manifest.get("options", {})
    layout = options.get("layout", "packed")
    lines = [
        "## Training data",
        "",
        f"- sources: {len(sources):,} files ({shown})",
        f"- training split: {counts.get('documents', 0):,} documents, {counts.get('sentences', 0):,} "
        f"sentences, {counts.get('tokens', 0):,} tokens in {counts.get('examples', 0):,} examples",
        f"- sequence length {manifest.get('seq_length', '?')}, layout {layout}"
        + (f", real-token fill {fill:.1%}" if fill is not None else ""),
        f"- tokenizer: {manifest.get('tokenizer', '?')}, vocab sha256 {manifest.get('vocab_sha256', '?')}",
        "",
    ]
    return lines


def _procedure_section(t: Training | None) -> list[str]:
    if t is None:
        return []
    hours = t.wall_seconds / 3600
    rows = [
        ("steps", f"{t.step:,} of {t.max_steps:,} planned"),
        ("global batch", t.global_batch),
        ("target tokens seen", f"about {t.target_tokens:,.0f}"),
        ("optimizer", t.optimizer),
        ("learning rate schedule", t.schedule),
        ("noise", t.noise),
        ("precision", t.precision),
        ("processes and devices", t.devices),
        ("training wall time", f"{hours:.2f} h" if hours >= 1 else f"{t.wall_seconds / 60:.1f} min"),
    ]
    if t.init_from:
        rows.append(("initialised from", f"`{t.init_from}`"))
    return [
        "## Training procedure",
        "",
        "| | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in rows),
        "",
        f"To continue this run: `{t.resume_command}`",
        "",
    ]


def _eval_lines(facts: Facts) -> list[str]:
    if not facts.eval_metrics:
        return ["No evaluation at this step yet: run `bart-eval PATH --data SHARDS --card` to add one.", ""]
    step = f" at step {facts.training.step:,}" if facts.training else ""
    lines = [f"The trainer's held-out evaluation{step} (the same noise every time):", ""]
    lines += ["| metric | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.4f} |" for k, v in facts.eval_metrics.items()]
    return [*lines, ""]


def _limitations(facts: Facts) -> list[str]:
    lines = []
    if not facts.final:
        lines.append(
            "- An intermediate step, not the final model: its loss is still falling and its fill-ins are "
            "weaker than the final export's."
        )
    lines += [
        "- Pre-trained on denoising only: fine-tune it before using it for a task.",
        "- It reproduces the biases and errors of its training text (news, web pages, comments).",
    ]
    return lines


def write_section(directory: Path, key: str, markdown: str, results: list[EvalResult]) -> Path:
    """Put ``markdown`` between this key's markers in ``directory``'s card (added before ## Limitations
    the first time, replaced after) and its ``model-index`` entries in place of the earlier ones with the
    same task and metric; nothing else of the card changes."""
    path = directory / CARD
    if not path.is_file():
        raise UserError(f"{directory} has no model card ({CARD}): only exports carry one")
    card = ModelCard.load(path)
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    block = f"{begin}\n{markdown.strip()}\n{end}"
    text = card.text
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        text = head + block + rest.partition(end)[2]
    elif "## Limitations" in text:
        head, _, rest = text.partition("## Limitations")
        text = f"{head}{block}\n\n## Limitations{rest}"
    else:
        text = f"{text.rstrip()}\n\n{block}\n"
    new = {(r.task_type, r.dataset_type, r.dataset_name, r.metric_name) for r in results}
    kept = [
        r
        for r in card.data.eval_results or []
        if (r.task_type, r.dataset_type, r.dataset_name, r.metric_name) not in new
    ]
    card.data.eval_results = kept + results or None
    card.data.model_name = card.data.model_name or directory.name
    write_text(path, f"---\n{card.data.to_yaml()}\n---\n{text}")
    return path


def add_eval_results(directory: Path, score: Any, table: str, data: str) -> Path:
    """``bart-eval --card``: the comparison table and this model's own numbers."""
    results = [
        EvalResult(
            task_type=EVAL_TASK[0],
            task_name=EVAL_TASK[1],
            dataset_type="bart-eval",
            dataset_name=f"held-out text of {Path(data).name}",
            metric_type=key.split("/")[-1],
            metric_name=f"bart-eval {key}",
            metric_value=round(float(value), 6),
        )
        for key, value in score.metrics.items()
    ]
    markdown = f"### bart-eval on `{data}`\n\n{table}"
    return write_section(directory, "bart-eval", markdown, results)


def add_finetune_results(directory: Path, entries: list[dict[str, Any]], table: str, task: str) -> Path:
    """``bart-finetune --card``: the probe's table and its ``model-index`` entries (as
    ``ModelResult.model_index`` makes them), one block per task."""
    results = [
        EvalResult(
            task_type=e["task"]["type"],
            task_name=e["task"]["name"],
            dataset_type=e["dataset"]["type"],
            dataset_name=e["dataset"]["name"],
            dataset_split=e["dataset"].get("split"),
            metric_type=m["type"],
            metric_name=m["name"],
            metric_value=m["value"],
        )
        for e in entries
        for m in e["metrics"]
    ]
    markdown = f"### Fine-tuned on {task} (bart-finetune)\n\n```\n{table}\n```"
    return write_section(directory, f"bart-finetune {task}", markdown, results)
