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


def head_size(n_embd: int, n_head: int, head_dim: int) -> int:
    """Width of one attention head: head_dim, or n_embd / n_head when it is 0. Qwen3 sets it
    apart (0.6B: 16 heads of 128 in a 1,024-wide model): q, k and v are then n_head (n_kv_head)
    heads of head_dim, and the output projection maps n_head * head_dim back to n_embd."""
    return head_dim or n_embd // n_head


def attention_width(n_embd: int, n_head: int, head_dim: int) -> int:
    """Width of the queries (and of attention's output, the input of its projection): n_head
    heads of head_size; n_embd when head_dim is 0."""
    return n_head * head_dim if head_dim else n_embd


MUON_NS_STEPS = 5      # torch.optim.Muon's default Newton-Schulz iterations


def newton_schulz_flops(shape, steps: int = MUON_NS_STEPS) -> int:
    """Matmul FLOPs of one Muon orthogonalization of a matrix of `shape`: per iteration
    x x^T (2 m^2 n), the quintic polynomial's gram @ gram (2 m^3) and poly @ x
    (2 m^2 n), with m the smaller side."""
    m, n = sorted(shape[:2])
    return steps * (4 * m * m * n + 2 * m ** 3)
