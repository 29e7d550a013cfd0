"""The training loss over the labelled decoder rows only: the LM head and the cross-entropy, fused in row
slices (no full fp32 logits), or plain.

``use_fused_loss(model, chunks)`` makes ``model(..., labels=...)`` return the same loss as transformers'
(tests/unit/test_loss.py proves loss and gradients equal) and leaves the model as it is without labels
(evaluation, generation). Either way only the rows whose label is not ``-100`` go through the
[d_model x vocab] LM head: a padded row costs as much there as a real one, and a batch of one document
per example (``prepare --layout uer``) is more than half padding.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
import torch.nn.functional as F
from transformers.modeling_outputs import Seq2SeqLMOutput

from pretrain.collate import IGNORE_INDEX


class LinearCrossEntropy(torch.autograd.Function):
    """``sum CE(hidden @ weight.T + bias, labels)`` over the rows whose label is not ``-100``, computed
    in ``chunks`` slices of rows. The gradients are made in the forward pass, slice by slice (softmax
    minus one-hot, times the weights / the hidden states / summed for the bias), so no [tokens x vocab]
    tensor outlives one slice: transformers' loss keeps the fp32 logits (the fp32 ``final_logits_bias``
    promotes them) and their log-softmax, GBs per micro-batch at vocab 21128. The matmuls run in
    ``dtype`` (the autocast dtype, as ``lm_head`` would), the bias add, softmax and sums in fp32, as
    transformers does. Ignored rows are masked on the [rows x d_model] side (cheap); callers that can
    should pass only labelled rows (``use_fused_loss`` does), as every row passed costs a full LM head row.
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
        train_bias = ctx.needs_input_grad[2]
        with torch.autocast(hidden.device.type, enabled=False):
            h, w, b = hidden.to(dtype), weight.to(dtype), bias.float()
            grad_hidden = torch.empty_like(h)
            grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
            total = torch.zeros((), dtype=torch.float32, device=hidden.device)
            slices = zip(
                h.tensor_split(chunks),
                labels.tensor_split(chunks),
                grad_hidden.tensor_split(chunks),
                strict=True,
            )
            for rows, targets, grad_rows in slices:
                ignored = (targets == IGNORE_INDEX)[:, None]
                targets = targets[:, None].masked_fill(ignored, 0)
                rows = rows.masked_fill(ignored, 0.0)  # an ignored row adds nothing to grad_weight
                logits = (rows @ w.T).float() + b
                log_z = logits.logsumexp(-1, keepdim=True)
                total += (log_z - logits.gather(1, targets)).masked_fill(ignored, 0.0).sum()
                grad = logits.sub_(log_z).exp_()  # softmax, in place of the logits
                grad.scatter_add_(1, targets, torch.full_like(log_z, -1.0))
                if train_bias:
                    grad_bias += (~ignored).float().T.matmul(grad)[0]
                grad = grad.to(dtype)
                grad_rows.copy_((grad @ w).masked_fill_(ignored, 0.0))
                grad_weight += (grad.T @ rows).float()
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = hidden.dtype, weight.dtype, bias.dtype
        return total

    @staticmethod
    def backward(ctx: Any, grad_total: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        return (
            (grad_hidden * grad_total).to(hidden_dtype),
            (grad_weight * grad_total).to(weight_dtype),
            (grad_bias * grad_total).to(bias_dtype) if ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )


def labelled_rows(labels: torch.Tensor, multiple_of: int = 1) -> torch.Tensor:
    """The flat indices of the target positions whose label is not ``-100``, padded to a multiple of
    ``multiple_of`` (the loss's ``chunks``) with ``labels.numel()``, which names an extra ignored row: the
    row slices are then even, so a compiled step does not specialise on the count modulo ``chunks``.
    ``train_step`` finds them on the host batch, before it moves it: their count is then the index
    tensor's shape, known to the host, so selecting them costs no device sync (``nonzero`` on a GPU
    tensor waits for the device)."""
    rows = (labels.flatten() != IGNORE_INDEX).nonzero().squeeze(1)
    return F.pad(rows, (0, -len(rows) % multiple_of), value=labels.numel())


def use_fused_loss(model: torch.nn.Module, chunks: int) -> None:
    """Make ``model(..., labels=..., [label_rows=...])`` compute its loss (the mean over target tokens)
    from the labelled decoder rows only: with ``LinearCrossEntropy`` in ``chunks`` row slices, or, with
    ``chunks`` 0, through ``lm_head`` and transformers' fp32 cross-entropy. ``label_rows`` (from
    ``labelled_rows(labels, chunks)`` on the host) saves the device from finding them. Without labels
    (evaluation, generation) the model is unchanged. Set on the instance, before ``accelerator.prepare``
    wraps it."""

    def forward(
        self: Any, labels: torch.Tensor | None = None, label_rows: torch.Tensor | None = None, **inputs: Any
    ) -> Any:
        if labels is None:
            return type(self).forward(self, **inputs)
        rows = labelled_rows(labels, max(chunks, 1)) if label_rows is None else label_rows
        hidden = self.model(**inputs, use_cache=False).last_hidden_state
        # one extra row, ignored, for the padding of ``rows``
        hidden = F.pad(hidden.flatten(0, 1), (0, 0, 0, 1)).index_select(0, rows)
        targets = F.pad(labels.flatten(), (0, 1), value=IGNORE_INDEX).index_select(0, rows)
        bias = self.final_logits_bias[0]
        if chunks:
            device = hidden.device.type
            dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
            total = LinearCrossEntropy.apply(hidden, self.lm_head.weight, bias, targets, chunks, dtype)
        else:  # as transformers: the LM head under autocast, the fp32 bias promotes the logits
            total = F.cross_entropy((self.lm_head(hidden) + bias).float(), targets, reduction="sum")
        return Seq2SeqLMOutput(loss=total / (targets != IGNORE_INDEX).sum())

    model.forward = MethodType(forward, model)
