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
