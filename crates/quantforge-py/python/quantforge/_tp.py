"""Tensor-parallel loading: each rank's shard of every tensor, read from the file alone (only the
rows and blocks the shard covers), for ``quantforge.torch.load_file(..., tp=(rank, world))``.

A plan maps name patterns (``fnmatch``: ``blk.*.attn_q.weight``) to transformers' tp_plan
styles: ``"colwise"`` (split the output features, PyTorch's dimension 0), ``"rowwise"`` (split
the input features, the last dimension) or ``"replicate"``. Splits respect what they cut:

- Q, K and V (and a bias of theirs) split on whole attention heads; K and V are replicated in
  groups when the world is larger than the KV head count, as vLLM does;
- GGUF's fused ``attn_qkv`` (Q, K and V rows one after another) and a fused gate/up
  (``ffn_gate_up``) split per component, each rank taking its part of each;
- a split that does not fall on those boundaries, or that cuts blocks of native blocks, is a
  ``ValueError`` naming the tensor and the sizes.

There are two default plans: :data:`LLAMA_PLAN` for llama.cpp's tensor names (``load_file``,
``load_shards``) and :data:`HF_LLAMA_PLAN` for the Hugging Face names of
``quantforge.transformers.load_shards``. Styles transformers also has (``colwise_rep``,
``packed_*``, ``local_*``, ...) are refused by name.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

STYLES = ("colwise", "rowwise", "replicate")

# llama.cpp's tensor names (llama and the families that share its names).
LLAMA_PLAN: Dict[str, str] = {
    "blk.*.attn_q.weight": "colwise",
    "blk.*.attn_k.weight": "colwise",
    "blk.*.attn_v.weight": "colwise",
    "blk.*.attn_q.bias": "colwise",
    "blk.*.attn_k.bias": "colwise",
    "blk.*.attn_v.bias": "colwise",
    "blk.*.attn_qkv.weight": "colwise",
    "blk.*.attn_qkv.bias": "colwise",
    "blk.*.attn_output.weight": "rowwise",
    "blk.*.ffn_gate.weight": "colwise",
    "blk.*.ffn_up.weight": "colwise",
    "blk.*.ffn_gate_up.weight": "colwise",
    "blk.*.ffn_down.weight": "rowwise",
}

# The Hugging Face names ``quantforge.transformers`` gives the same tensors: transformers' llama
# ``base_model_tp_plan`` (q/k/v, gate and up colwise; o and down rowwise) with the q/k/v biases
# of qwen2. Embeddings, norms and ``lm_head`` are replicated: transformers' llama plan leaves the
# embeddings and norms out (replicated) and gives ``lm_head`` ``colwise_gather_output``, a style
# whose gather quantforge does not implement (``"lm_head.weight": "colwise"`` splits its rows).
HF_LLAMA_PLAN: Dict[str, str] = {
    "model.layers.*.self_attn.q_proj.weight": "colwise",
    "model.layers.*.self_attn.k_proj.weight": "colwise",
    "model.layers.*.self_attn.v_proj.weight": "colwise",
    "model.layers.*.self_attn.q_proj.bias": "colwise",
    "model.layers.*.self_attn.k_proj.bias": "colwise",
    "model.layers.*.self_attn.v_proj.bias": "colwise",
    "model.layers.*.self_attn.o_proj.weight": "rowwise",
    "model.layers.*.mlp.gate_proj.weight": "colwise",
    "model.layers.*.mlp.up_proj.weight": "colwise",
    "model.layers.*.mlp.down_proj.weight": "rowwise",
}


@dataclass
class ShardReport:
    """What one rank read: the file bytes its shards took, against all the tensors' bytes;
    per tensor (by the name it is returned under) its style and bytes read, and ``source``, the
    file's name of the tensor it was read from (the same name, but for Hugging Face names)."""

    rank: int
    world: int
    bytes_read: int = 0
    tensor_bytes: int = 0
    per_tensor: Dict[str, Tuple[str, int]] = field(default_factory=dict)
    source: Dict[str, str] = field(default_factory=dict)

    def add(self, name: str, source: str, style: str, read: int, whole: int) -> None:
        """Counts tensor ``name`` (read from the file's ``source``): ``read`` of its ``whole``
        bytes, split by ``style``."""
        self.bytes_read += read
        self.tensor_bytes += whole
        self.per_tensor[name] = (style, read)
        self.source[name] = source


def style_of(name: str, plan: Mapping[str, str]) -> str:
    """The plan's style for tensor ``name`` (``"replicate"`` when no pattern matches)."""
    for pattern, style in plan.items():
        if fnmatch.fnmatchcase(name, pattern):
            if style not in STYLES:
                raise ValueError(
                    f"tp_plan style {style!r} for {pattern!r} is not implemented; quantforge "
                    f"implements {', '.join(STYLES)}"
                )
            return style
    return "replicate"


def _heads(meta: Mapping[str, Any]) -> Tuple[int, int]:
    arch = meta.get("general.architecture", "llama")
    n_head = int(meta.get(f"{arch}.attention.head_count", 0) or 0)
    n_kv = int(meta.get(f"{arch}.attention.head_count_kv", n_head) or n_head)
    return n_head, n_kv


def _part(name: str, size: int, units: int, rank: int, world: int, what: str) -> Tuple[int, int]:
    """Rank ``rank``'s range of ``size`` items made of ``units`` equal units (heads, or 1),
    whole units each; ``units < world`` replicates groups of ranks over the units."""
    if units <= 0 or size % units:
        raise ValueError(f"{name}: {size} {what} are not {units} equal heads")
    per = size // units
    if units >= world:
        if units % world:
            raise ValueError(f"{name}: {units} heads do not split over {world} ranks")
        n = units // world
        return rank * n * per, (rank + 1) * n * per
    if world % units:
        raise ValueError(f"{name}: {units} KV heads cannot be replicated evenly over {world} ranks")
    head = rank // (world // units)
    return head * per, (head + 1) * per


def row_ranges(name: str, rows: int, meta: Mapping[str, Any], rank: int, world: int) -> List[Tuple[int, int]]:
    """The row ranges of rank ``rank`` of a colwise tensor: one range, or one per component of a
    fused tensor."""
    n_head, n_kv = _heads(meta)
    base = name.rsplit(".", 1)[0]
    if base.endswith("attn_qkv"):
        if not n_head:
            raise ValueError(f"{name}: the file gives no head counts to split Q, K and V on")
        hd = rows // (n_head + 2 * n_kv)
        if hd * (n_head + 2 * n_kv) != rows:
            raise ValueError(f"{name}: {rows} rows are not Q ({n_head} heads) + K and V ({n_kv} heads each)")
        parts, start = [], 0
        for heads in (n_head, n_kv, n_kv):
            a, b = _part(name, heads * hd, heads, rank, world, "rows")
            parts.append((start + a, start + b))
            start += heads * hd
        return parts
    if base.endswith("ffn_gate_up"):
        half = rows // 2
        a, b = _part(name, half, world, rank, world, "rows")
        return [(a, b), (half + a, half + b)]
    if base.endswith(("attn_q", "attn_k", "attn_v")) and n_head:
        heads = n_head if base.endswith("attn_q") else n_kv
        return [_part(name, rows, heads, rank, world, "rows")]
    return [_part(name, rows, world, rank, world, "rows")]


def check_plan(plan: Mapping[str, str]) -> None:
    """Refuses, up front and by name, a plan with a style quantforge does not implement."""
    for pattern, style in plan.items():
        style_of(pattern, {pattern: style})


def check_rank(rank: Any, world: Any) -> None:
    """Refuses a ``tp=(rank, world)`` that is not two ints with ``0 <= rank < world``."""
    if not (isinstance(rank, int) and isinstance(world, int) and 0 <= rank < world):
        raise ValueError(f"tp=({rank!r}, {world!r}): expected (rank, world_size) with 0 <= rank < world_size")


def _shard_keys(
    name: str, style: str, shape: Tuple[int, ...], meta: Mapping[str, Any], rank: int, world: int
) -> Tuple[List[Any], List[Tuple[Tuple[int, int], Tuple[int, int]]]]:
    """The indexing keys of rank ``rank``'s pieces of tensor ``name`` (of ``shape``) split by
    ``style`` (one piece, or one per fused component, concatenated along dimension 0), and the
    ``(dim0, cols)`` ranges they read, for the bytes read."""
    if style == "replicate" or len(shape) == 0:
        return [...], [((0, shape[0] if shape else 1), (0, shape[-1] if shape else 1))]
    if style == "colwise":
        ranges = row_ranges(name, shape[0], meta, rank, world)
        # A 1-D tensor's rows are its values: the bytes read are those columns.
        one_d = len(shape) == 1
        parts = [((0, 1), (a, b)) if one_d else ((a, b), (0, shape[-1])) for a, b in ranges]
        return [slice(a, b) for a, b in ranges], parts
    a, b = _part(name, shape[-1], world, rank, world, "columns")
    return [(..., slice(a, b))], [((0, shape[0]), (a, b))] if len(shape) > 1 else [((0, 1), (a, b))]


def _bytes(s: Any, parts: List[Tuple[Tuple[int, int], Tuple[int, int]]]) -> Tuple[int, int]:
    """The file bytes the pieces of ``parts`` read from slice ``s``, and the whole tensor's."""
    shape = s.get_shape()
    read = sum(s.bytes_read(r, c) for r, c in parts)
    whole = s.bytes_read((0, shape[0] if len(shape) > 1 else 1), (0, shape[-1])) if shape else read
    return read, whole


def shard_tensor(f: Any, name: str, style: str, meta: Mapping[str, Any], rank: int, world: int) -> Tuple[Any, int, int]:
    """Rank ``rank``'s shard of tensor ``name`` of the open ``safe_open`` file ``f`` split by
    ``style``, the file bytes it read, and the bytes of the whole tensor. Heads and fused
    components are found from ``name``, a GGUF name (see :func:`row_ranges`)."""
    s = f.get_slice(name)
    keys, parts = _shard_keys(name, style, tuple(s.get_shape()), meta, rank, world)
    pieces = [s[k] for k in keys]
    return (pieces[0] if len(pieces) == 1 else _cat(pieces)), *_bytes(s, parts)


def shard_all(
    f: Any, styles: Mapping[str, str], meta: Mapping[str, Any], rank: int, world: int
) -> Dict[str, Tuple[Any, int, int]]:
    """:func:`shard_tensor` of every tensor of ``styles`` (GGUF name -> style), in ``styles``'
    order. Every shard of values comes from one pipelined load of the regions the shards cover
    (on a GPU, the whole-file load's speed over the rank's bytes): whole rows for a colwise
    split (one range per fused component), the blocks of its columns in every row for a
    rowwise one, the whole tensor for a replicated one. Native blocks are read one by one."""
    from . import _native

    if f.file.dtype == "native":
        return {name: shard_tensor(f, name, style, meta, rank, world) for name, style in styles.items()}
    planned = {}
    for name, style in styles.items():
        s = f.get_slice(name)
        keys, parts = _shard_keys(name, style, tuple(s.get_shape()), meta, rank, world)
        planned[name] = [s._plan(k) for k in keys], _bytes(s, parts)
    regions = [(name, rows, cols) for name, (plans, _) in planned.items() for rows, cols, _ in plans]
    loaded = iter(_native._load_regions(f.file, regions) if regions else ())
    out: Dict[str, Tuple[Any, int, int]] = {}
    for name, (plans, (read, whole)) in planned.items():
        pieces = [finish(next(loaded)) for _, _, finish in plans]
        out[name] = (pieces[0] if len(pieces) == 1 else _cat(pieces)), read, whole
    return out


def load_shards(f: Any, rank: int, world: int, plan: Optional[Mapping[str, str]]) -> Tuple[Dict[str, Any], ShardReport]:
    """Rank ``rank``'s shard of every tensor of the open ``safe_open`` file ``f``, as ``f``'s
    framework gives tensors, with what the rank read. ``plan`` is in GGUF names (default
    :data:`LLAMA_PLAN`)."""
    check_rank(rank, world)
    plan = LLAMA_PLAN if plan is None else plan
    check_plan(plan)
    styles = {name: style_of(name, plan) for name in f.keys()}
    report = ShardReport(rank, world)
    out: Dict[str, Any] = {}
    for name, (values, read, whole) in shard_all(f, styles, f.metadata(), rank, world).items():
        out[name] = values
        report.add(name, name, styles[name], read, whole)
    return out, report


def _cat(pieces: List[Any]) -> Any:
    first = pieces[0]
    if hasattr(first, "new_empty"):  # torch
        import torch

        return torch.cat(pieces, dim=0)
    import numpy

    return numpy.concatenate(pieces, axis=0)
