"""Second-order pooling shared by GSoP and SOCA: the MPN-COV covariance and its Newton-Schulz square root.

Both official repositories vendor Peihua Li's MPN-COV (`MPNCOV.CovpoolLayer`, `MPNCOV.SqrtmLayer`). These are
the same functions written with autograd instead of hand-written backward passes.
"""

from __future__ import annotations

import torch


def covariance_pool(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, C): the centred covariance over the H·W positions, divided by H·W.

    MPN-COV multiplies by an (H·W) x (H·W) centring matrix, which costs O((H·W)²) memory and time;
    subtracting the mean first gives the same matrix in O(H·W).
    """
    features = x.flatten(2)
    centred = features - features.mean(dim=2, keepdim=True)
    return centred @ centred.transpose(1, 2) / features.shape[2]


def newton_schulz_sqrt(matrix: torch.Tensor, iterations: int) -> torch.Tensor:
    """Approximate square root of a batch of SPD matrices (B, C, C) by coupled Newton-Schulz iterations.

    As in MPN-COV's Sqrtm: pre-normalise by the trace so the iteration converges, run `iterations` updates
    of Y (the last without its Z update), and compensate by the square root of the trace. A zero trace
    (every position equal) would divide by zero; it is clamped to the smallest positive number of the dtype
    so such input gives a zero root instead of NaN.
    """
    trace = torch.diagonal(matrix, dim1=1, dim2=2).sum(dim=1)
    trace = trace.clamp_min(torch.finfo(matrix.dtype).tiny)[:, None, None]
    identity = torch.eye(matrix.shape[1], dtype=matrix.dtype, device=matrix.device)
    y, z = matrix / trace, identity.expand_as(matrix)
    for _ in range(iterations - 1):
        update = 0.5 * (3.0 * identity - z @ y)
        y, z = y @ update, update @ z
    root = y @ (0.5 * (3.0 * identity - z @ y))
    return root * trace.sqrt()
