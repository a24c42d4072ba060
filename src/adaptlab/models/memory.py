"""Peak training memory, planned from the config before any weight is loaded (``adaptlab plan-memory``).

What a run holds at its peak (Rajbhandari et al. 2020, ZeRO §3, count the first three the same way):

- **weights**: every parameter at the dtype it is loaded in (4-bit bases: half a byte and their scales);
- **gradients and optimiser state**: for the parameters that train only -- fp32 gradients and AdamW's
  two fp32 moments, 12 bytes each (and an fp32 master copy where the base is loaded in 16 bits). The
  backward pass frees each block's activations as it makes that block's weight gradients, so the two do
  not peak together: only the gradients of what sits outside the blocks (embeddings, an LM head, made
  first) coexist with every activation;
- **activations**: what the backward pass needs, per token and per block that gradients reach: the
  inputs and outputs the block's projections, norms, attention and activation functions keep, counted
  from its layout (hidden, query/key-value, feed-forward widths: :mod:`placement`) -- or, with gradient
  checkpointing, only each block's input plus one block recomputed at a time;
- **logits**: one chunk of labelled positions (:mod:`lm_head`) for a causal LM; a classifier's are tiny;
- **runtime**: the process itself on a CPU (the interpreter, torch and transformers: about 0.4 GB of
  resident memory before any model), nothing on a GPU (``max_memory_allocated`` counts tensors only);
- **allocator** (CPU): glibc keeps the chunks a step frees (activations are up to 32 MB each, below its
  dynamic mmap threshold) in its heap instead of returning them, so the resident peak exceeds the live
  tensors by a share of everything a step's blocks allocate -- checkpointed or not, a backward pass
  computes every activation once. Forcing them back (``MALLOC_MMAP_THRESHOLD_``) halves the resident peak
  of a SmolLM2 LoRA step and makes it 1.5-1.7x slower, so adaptlab leaves glibc as it is and plans for it:
  :data:`RETAINED`, fitted on the calibration shape of ``bench/memory_plan.py`` and checked on the others.

What trains is not guessed from the strategy's name: the strategy prepares a weightless copy of the
model (every module on the meta device, :func:`placement.skeleton`), and its trainable parameters are
counted; gradients reach down to the lowest block with one. ``bench/memory_plan.py`` sets this beside
measured peaks (``bench/results/memory_plan.md``).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from .placement import Layout, find_blocks, layout

log = logging.getLogger("adaptlab")

MB = 2**20
CPU_RUNTIME_MB = 420.0
"""Resident memory of a process that imported torch and transformers and holds a tokenizer (measured here)."""
ALLOCATOR = 1.1
"""Allocator overhead on activations and logits (freed and re-taken every step: fragmentation)."""
RETAINED = 0.5
"""Share of a step's activation volume glibc's heap keeps resident on a CPU (see the module docstring)."""


@dataclass
class Plan:
    """A run's planned peak memory, by part, in MB."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float
    runtime: float
    allocator: float
    """Freed activation memory the CPU allocator keeps resident (0 on a GPU)."""
    outside_gradients: float
    """The part of ``gradients`` for parameters outside the blocks (made while every activation is held)."""
    total_params: int
    trainable_params: int
    blocks_with_gradients: int
    tokens: int
    """Tokens of one training batch (batch size x length; preference pairs count twice)."""
    checkpointing: bool
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        backward = max(self.activations + self.outside_gradients, self.gradients)
        return self.weights + self.optimizer + backward + self.logits + self.runtime + self.allocator

    def as_dict(self) -> dict[str, Any]:
        return {**{k: round(v, 1) if isinstance(v, float) else v for k, v in asdict(self).items()}, "total": round(self.total, 1)}


def activation_floats(found: Layout, length: int) -> float:
    """Floats one token keeps in one block for the backward pass (no checkpointing).

    Norms keep their input and output (2 x hidden each, two norms), the attention projections their shared
    input (hidden), queries/keys/values (q + 2 kv widths), the attention its output and the weights it
    softmaxed (heads x length: the fused CPU kernels still keep them when a padding mask is given), the
    output projection its input; the feed-forward block its input, the outputs of its input projections
    (gate and up), the activation's output and the product it feeds the output projection (2 x inner).
    """
    g = found.geometry
    hidden, query, kv = found.hidden, g.heads * g.head_dim, g.kv_heads * g.head_dim
    ffn_out = sum(p.out_features for p in found.feed_forward.inputs)
    inner = found.feed_forward.output.in_features
    attention = 4 * hidden + hidden + query + 2 * kv + query + g.heads * length + query
    feed_forward = hidden + ffn_out + 2 * inner
    return attention + feed_forward


def plan(model: nn.Module, *, batch_tokens: int, length: int, checkpointing: bool, weight_bytes: float = 4.0,
         activation_bytes: float = 4.0, device: str = "cpu", language_model: bool = True) -> Plan:
    """The peak of training ``model`` as prepared (a meta-device skeleton after the strategy's ``prepare``)."""
    from .lm_head import CHUNK_ELEMENTS

    params = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    found = layout(model)
    reach = blocks_with_gradients(model)
    in_blocks = {id(p) for b in find_blocks(model) for p in b.parameters()}
    outside = sum(p.numel() for p in params if p.requires_grad and id(p) not in in_blocks)
    notes = []
    per_token = activation_floats(found, length) * activation_bytes
    volume = batch_tokens * reach * per_token  # every activation of a step, kept or recomputed
    if checkpointing and reach:
        activations = batch_tokens * (reach * found.hidden * activation_bytes + per_token)
    else:
        activations = volume
    vocabulary = getattr(model.config, "vocab_size", 0) if hasattr(model, "config") else 0
    if reach == 0 and trainable:
        notes.append("only parameters above the blocks train: no activations kept for a backward pass through them")
    # a causal LM scores one chunk of labelled positions at a time (lm_head); a classifier's logits are batch x labels
    logits = 3 * 4 * min(CHUNK_ELEMENTS, batch_tokens * vocabulary) if language_model else 0
    weights = (total - trainable) * weight_bytes + trainable * 4  # what trains is held in fp32 (AdamW's master weights)
    return Plan(weights=weights / MB, gradients=trainable * 4 / MB, optimizer=trainable * 8 / MB,
                activations=ALLOCATOR * activations / MB, logits=ALLOCATOR * logits / MB,
                runtime=CPU_RUNTIME_MB if device == "cpu" else 0.0, allocator=RETAINED * volume / MB if device == "cpu" else 0.0,
                outside_gradients=outside * 4 / MB, total_params=total, trainable_params=trainable,
                blocks_with_gradients=reach, tokens=batch_tokens, checkpointing=checkpointing, notes=notes)


def blocks_with_gradients(model: nn.Module) -> int:
    """Blocks a backward pass goes through: from the top down to the lowest block with a trainable parameter, or
    all of them when something below the blocks trains (embeddings, a soft prompt)."""
    blocks = find_blocks(model)
    in_blocks = {id(p) for b in blocks for p in b.parameters()}
    lowest = next((i for i, b in enumerate(blocks) if any(p.requires_grad for p in b.parameters())), None)
    below = _below_blocks(model, blocks, in_blocks)
    if below:
        return len(blocks)
    return 0 if lowest is None else len(blocks) - lowest


def _below_blocks(model: nn.Module, blocks: nn.ModuleList, in_blocks: set[int]) -> bool:
    """Whether a parameter that trains sits before the blocks (input embeddings, a prompt encoder)."""
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if embeddings is not None and any(p.requires_grad for p in embeddings.parameters()):
        return True
    return any(p.requires_grad for n, p in model.named_parameters() if "prompt_encoder" in n and id(p) not in in_blocks)


def available_mb(device: str) -> float:
    """Memory a run may use here: the GPU's total, or the machine's available RAM."""
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_properties(0).total_memory / MB
    import psutil

    return psutil.virtual_memory().available / MB


def advice(p: Plan, limit_mb: float, generative: bool, quantizable: bool) -> list[str]:
    """What to change when the plan does not fit: each lever with what it would save, the largest first; and when
    none of them closes the gap, by how much the run would still be over."""
    over = p.total - limit_mb
    if over <= 0:
        return []
    levers: list[tuple[float, str]] = []
    if not p.checkpointing and p.blocks_with_gradients > 1:
        kept = p.activations * (1 + p.blocks_with_gradients * 0.1) / p.blocks_with_gradients
        levers.append((p.activations - kept, "--set train.gradient_checkpointing=true"))
    if p.activations + p.logits > 0:
        levers.append(((p.activations + p.logits) / 2, "half the --batch-size or --max-length"))
    if p.trainable_params > p.total_params / 10:
        levers.append(((p.optimizer + p.gradients) * 0.98, "a strategy that trains ~1 % of the parameters (lora)"))
    if quantizable:
        levers.append((p.weights * 0.75, "qlora (the frozen base in 4 bits)"))
    levers = sorted((s, text) for s, text in levers if s > 0.05 * over)[::-1]
    out = [f"{text} (saves about {saved / 1024:.2f} GB)" for saved, text in levers]
    if sum(s for s, _ in levers) < over:
        out.append(f"even with all of these the run needs about {(p.total - sum(s for s, _ in levers)) / 1024:.1f} GB: "
                   "a machine with more memory")
    return out
