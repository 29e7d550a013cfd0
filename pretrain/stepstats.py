"""The loop's numbers between two reads, kept on the device so that no step waits for the GPU; a read
moves them into the ``TrainState`` (whose loss window the log takes)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pretrain.checkpoint import TrainState


@dataclass
class StepStats:
    """The loop's numbers since the last read, on the device, so that no step waits for the GPU."""

    loss: torch.Tensor  # summed loss of the applied steps
    applied: torch.Tensor  # applied steps
    skipped: torch.Tensor  # skipped (NaN/inf) steps
    streak: torch.Tensor  # skipped steps in a row, up to the last step
    worst: torch.Tensor  # the longest such streak since the last read
    finite: torch.Tensor  # the last step was applied
    grad_norm: torch.Tensor  # the last step's gradient norm

    @classmethod
    def start(cls, device: torch.device, streak: int) -> StepStats:
        # float64: a sum of float32 losses is then exact, so it does not depend on where the reads split
        # it (a signal's save reads mid-window; the resumed run must log the loss the uninterrupted one
        # logs, to the bit). MPS has no float64.
        dtype = torch.float32 if device.type == "mps" else torch.float64

        def scalar(value: float) -> torch.Tensor:
            return torch.tensor(value, dtype=dtype, device=device)

        return cls(scalar(0), scalar(0), scalar(0), scalar(streak), scalar(streak), scalar(1), scalar(0))

    def record(self, loss: torch.Tensor, grad_norm: torch.Tensor, finite: torch.Tensor) -> None:
        self.loss += torch.where(finite, loss, 0.0)
        self.applied += finite
        self.skipped += ~finite
        self.streak = torch.where(finite, 0.0, self.streak + 1)
        self.worst = torch.maximum(self.worst, self.streak)
        self.finite, self.grad_norm = finite.to(self.loss.dtype), grad_norm.detach().to(self.loss.dtype)

    def read(self, state: TrainState) -> tuple[bool, int, float]:
        """One host sync: move the sums into ``state`` (its loss window and skip counts); (last step
        applied, the worst streak of skipped steps since the last read, the last gradient norm)."""
        values = [self.loss, self.applied, self.skipped, self.streak, self.worst, self.finite, self.grad_norm]
        loss, applied, skipped, streak, worst, finite, grad_norm = torch.stack(values).tolist()
        state.add_losses(loss, int(applied))
        state.bad_steps += int(skipped)
        state.bad_streak = int(streak)
        for total in (self.loss, self.applied, self.skipped):
            total.zero_()
        self.worst = self.streak.clone()
        return bool(finite), int(worst), grad_norm
