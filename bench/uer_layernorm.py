"""How far a converted UER-py BART's logits move because UER's LayerNorm is not torch's.

    python bench/uer_layernorm.py [--uer MODEL.bin] [--heads 12] [--batch 2] [--length 64] [--seed 0]

UER-py normalises with ``gamma * (x - mean) / (std_unbiased + 1e-6) + beta``; Hugging Face BART with
``nn.LayerNorm``: ``gamma * (x - mean) / sqrt(var_biased + 1e-5) + beta``. A converted checkpoint runs
with the second, the weights were trained with the first. This builds a random model of the seed's shape
(4+4 layers, d_model 768, 12 heads, FFN 3072, vocab 21128, 1024 positions, transformers' initialisation)
or loads ``--uer``, sends it through ``hf-to-uer``/``uer-to-hf`` in memory (``pretrain.convert``), and runs
the same batch twice, once with every LayerNorm swapped for UER's formula, in fp32 on one CPU thread.
It prints the max and mean |logit difference|, the mean |logit| for scale, and the share of positions
whose argmax token agrees.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import BartConfig, BartForConditionalGeneration  # noqa: E402

from pretrain.config import ModelConfig  # noqa: E402
from pretrain.model import uer_model  # noqa: E402
from pretrain.uer import BERT_CHINESE_IDS, check_uer, hf_to_uer_state_dict, load_uer  # noqa: E402

SEED_SHAPE = {
    "vocab_size": 21128, "d_model": 768, "encoder_layers": 4, "decoder_layers": 4,
    "encoder_attention_heads": 12, "decoder_attention_heads": 12, "encoder_ffn_dim": 3072,
    "decoder_ffn_dim": 3072, "max_position_embeddings": 1024,
}  # fmt: skip


class UerLayerNorm(nn.Module):
    """UER-py's ``uer/layers/layer_norm.py`` formula, on a torch LayerNorm's weights."""

    def __init__(self, norm: nn.LayerNorm) -> None:
        super().__init__()
        self.gamma, self.beta = norm.weight, norm.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        return self.gamma * (x - mean) / (x.std(-1, keepdim=True) + 1e-6) + self.beta


def with_uer_norms(model: nn.Module) -> nn.Module:
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, nn.LayerNorm):
            parent, _, attr = name.rpartition(".")
            setattr(twin.get_submodule(parent), attr, UerLayerNorm(module))
    return twin


def converted(args: argparse.Namespace) -> BartForConditionalGeneration:
    if args.uer:
        state = load_uer(args.uer)
    else:
        torch.manual_seed(args.seed)
        hf = BartForConditionalGeneration(BartConfig(**SEED_SHAPE, **BERT_CHINESE_IDS))
        state = hf_to_uer_state_dict(hf.state_dict(), hf.config.encoder_layers, hf.config.decoder_layers)
    enc, dec = check_uer(state, str(args.uer or "the random model"), None, None)
    base = ModelConfig(encoder_attention_heads=args.heads, decoder_attention_heads=args.heads)
    return uer_model(state, enc, dec, base, dict(BERT_CHINESE_IDS)).eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uer", type=Path, help="a UER-py BART model.bin (default: random seed-shaped)")
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = converted(args)
    gen = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(106, model.config.vocab_size, (args.batch, args.length), generator=gen)
    ids[:, 0], ids[:, -1] = BERT_CHINESE_IDS["bos_token_id"], BERT_CHINESE_IDS["eos_token_id"]
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "decoder_input_ids": ids[:, :-1]}
    with torch.no_grad():
        hf = model(**batch).logits
        uer = with_uer_norms(model)(**batch).logits
    diff = (hf - uer).abs()
    agree = (hf.argmax(-1) == uer.argmax(-1)).float().mean().item()
    source = args.uer or f"random seed-shaped model (seed {args.seed})"
    print(f"{source}: {args.batch} x {args.length} tokens, logits {tuple(hf.shape)}")
    print(f"max |logit diff| {diff.max().item():.3e}   mean |logit diff| {diff.mean().item():.3e}")
    print(f"mean |logit| {hf.abs().mean().item():.3e}   argmax agreement {agree:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
