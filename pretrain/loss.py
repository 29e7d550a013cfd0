"""The training loss without full fp32 logits: the LM head and the cross-entropy fused, in row slices.

``use_fused_loss(model, chunks)`` makes ``model(..., labels=...)`` return the same loss as transformers'
(``train.loss_chunks``; tests/test_fastpath.py proves loss and gradients equal), and leaves the model
as it is without labels (evaluation, generation).
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
from transformers.modeling_outputs import Seq2SeqLMOutput

from pretrain.collate import IGNORE_INDEX


class LinearCrossEntropy(torch.autograd.Function):
    """``sum CE(hidden @ weight.T + bias, labels)`` over the rows whose label is not ``-100``, computed
    in ``chunks`` slices of rows. The gradients are made in the forward pass, slice by slice (softmax
    minus one-hot, times the weights / the hidden states), so no [tokens x vocab] tensor outlives one
    slice: transformers' loss keeps the fp32 logits (the fp32 ``final_logits_bias`` promotes them)
    and their log-softmax, GBs per micro-batch at vocab 21128. The matmuls run in ``dtype`` (the
    autocast dtype, as ``lm_head`` would), the bias add, softmax and sums in fp32, as transformers does.
    """

    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        labels: torch.Tensor,
        chunks: int,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        with torch.autocast(hidden.device.type, enabled=False):
            h, w, b = hidden.to(dtype), weight.to(dtype), bias.float()
            grad_hidden = torch.empty_like(h)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            slices = zip(
                h.tensor_split(chunks),
                labels.tensor_split(chunks),
                grad_hidden.tensor_split(chunks),
                strict=True,
            )
            for rows, targets, grad_rows in slices:
                logits = (rows @ w.T).float() + b
                ignored = targets == IGNORE_INDEX
                targets = targets.masked_fill(ignored, 0)[:, None]
                log_z = logits.logsumexp(-1, keepdim=True)
                total += (log_z - logits.gather(1, targets)).masked_fill(ignored[:, None], 0.0).sum()
                grad = logits.sub_(log_z).exp_()  # softmax, in place of the logits
                grad.scatter_add_(1, targets, torch.full_like(log_z, -1.0))
                grad = grad.masked_fill_(ignored[:, None], 0.0).to(dtype)
                grad_rows.copy_(grad @ w)
                grad_weight += (grad.T @ rows).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = hidden.dtype, weight.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        return (
            (grad_hidden * grad_total).to(hidden_dtype),
            (grad_weight * grad_total).to(weight_dtype),
            None,
            None,
            None,
            None,
        )


def use_fused_loss(model: torch.nn.Module, chunks: int) -> None:
    """Make ``model(..., labels=...)`` compute its loss with ``LinearCrossEntropy`` (same value, the
    mean over target tokens, without the full logits); without labels (evaluation, generation) the
    model is unchanged. Set on the instance, before ``accelerator.prepare`` wraps it (autocast, DDP)."""

    def forward(self: Any, labels: torch.Tensor | None = None, **inputs: Any) -> Any:
        if labels is None:
            return type(self).forward(self, **inputs)
        hidden = self.model(**inputs, use_cache=False).last_hidden_state
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        total = LinearCrossEntropy.apply(
            hidden.flatten(0, 1),
            self.lm_head.weight,
            self.final_logits_bias[0],
            labels.flatten(),
            chunks,
            dtype,
        )
        return Seq2SeqLMOutput(loss=total / (labels != IGNORE_INDEX).sum())

    model.forward = MethodType(forward, model)
