"""Muon (momentum + Newton-Schulz orthogonalisation) for matrix parameters, batched over experts.

`torch.optim.Muon` takes 2-D parameters only; our routed experts are stacked [E, out, in], so
this variant orthogonalises each trailing matrix of a parameter independently. The update is
scaled by 0.2 * sqrt(max(out, in)) so its RMS matches AdamW's and one learning-rate schedule
serves both optimizers (the `adjust_lr_fn="match_rms_adamw"` rule of torch's Muon).
"""

from __future__ import annotations

import torch

# quintic Newton-Schulz coefficients (Keller Jordan's Muon)
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately U V^T of each trailing [out, in] matrix of g."""
    a, b, c = NS_COEFFICIENTS
    x = g / (g.norm(dim=(-2, -1), keepdim=True) + eps)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:
        x = x.transpose(-2, -1)
    for _ in range(steps):
        gram = x @ x.transpose(-2, -1)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.transpose(-2, -1) if transposed else x


class Muon(torch.optim.Optimizer):
    def __init__(self, params, lr: float = 0.02, momentum: float = 0.95, weight_decay: float = 0.0, ns_steps: int = 5):
        if lr <= 0 or not 0 <= momentum < 1:
            raise ValueError(f"invalid Muon hyper-parameters lr={lr} momentum={momentum}")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, ns_steps=ns_steps))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() < 2:
                    raise ValueError(f"Muon needs matrices, got a parameter of shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            lr, beta, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                buf = state.get("momentum")
                if buf is None:
                    buf = state["momentum"] = torch.zeros_like(p)
                buf.mul_(beta).add_(p.grad)
                update = p.grad.add(buf, alpha=beta)  # Nesterov
                update = orthogonalize(update, group["ns_steps"])
                scale = 0.2 * max(p.shape[-2], p.shape[-1]) ** 0.5
                if wd:
                    p.mul_(1 - lr * wd)
                p.add_(update, alpha=-lr * scale)
