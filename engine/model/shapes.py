"""Shape rules of the model that the planners need without importing torch."""

from __future__ import annotations


def ff_width(n_embd: int, d_ff: int, mlp: str) -> int:
    """MLP hidden width: d_ff, or 4 * n_embd; SwiGLU's default is 8/3 * n_embd (rounded up
    to a multiple of 8) so its three matrices hold about as many weights as the other
    MLPs' two."""
    if d_ff:
        return d_ff
    if mlp == "swiglu":
        return 8 * -(-n_embd // 3)
    return 4 * n_embd


def kv_heads(n_head: int, n_kv_head: int) -> int:
    """Key/value heads of attention: n_kv_head, or n_head when it is 0 (multi-head attention).
    Grouped-query attention shares each key/value head among n_head / n_kv_head query heads."""
    return n_kv_head or n_head


MUON_NS_STEPS = 5      # torch.optim.Muon's default Newton-Schulz iterations


def newton_schulz_flops(shape, steps: int = MUON_NS_STEPS) -> int:
    """Matmul FLOPs of one Muon orthogonalization of a matrix of `shape`: per iteration
    x x^T (2 m^2 n), the quintic polynomial's gram @ gram (2 m^3) and poly @ x
    (2 m^2 n), with m the smaller side."""
    m, n = sorted(shape[:2])
    return steps * (4 * m * m * n + 2 * m ** 3)
