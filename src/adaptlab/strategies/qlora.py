"""QLoRA: LoRA on a frozen base held in 4-bit NormalFloat (or 8-bit, ``bits: 8``), through bitsandbytes and peft.

Dettmers et al. 2023, §3: the base weights are stored as 4-bit NF4 (with double quantisation of the
scales) and dequantised to bf16 on the fly in each matmul; only the LoRA pairs (and a classifier's new
head) train, in bf16/fp32. Memory for a 7B base drops from ~14 GB (bf16) to ~4 GB. peft's
``prepare_model_for_kbit_training`` readies the quantised model (norms in fp32, input gradients for
checkpointing). The artefact is the same peft adapter folder as :mod:`lora`; it loads onto the
unquantised base as well.

bitsandbytes' 4-bit kernels need a CUDA GPU: on other devices the strategy stops before loading
anything, with one line naming what is missing.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from ..errors import AdaptlabError
from .base import Task, register
from .lora import LoRA, LoRAConfig


class QLoRAConfig(LoRAConfig):
    name: Literal["qlora"] = "qlora"
    bits: Literal[4, 8] = 4
    """Bits per frozen base weight: 4 (NF4/FP4, the paper's) or 8 (LLM.int8(), Dettmers et al. 2022: closer to
    the fp16 model, twice the memory of 4 bits)."""
    quant_type: Literal["nf4", "fp4"] = "nf4"
    """4-bit data type of the frozen base (NF4: the paper's, normally distributed weights)."""
    double_quant: bool = True
    """Quantise the quantisation scales too (§3, ~0.37 bits per parameter saved)."""
    compute_dtype: Literal["bf16", "fp16", "fp32"] = "bf16"
    """dtype the 4-bit weights are dequantised to for each matmul."""
    r: int = Field(16, ge=1)
    """Rank of the update matrices (the paper adapts every linear layer at r 64; 16 is a light default)."""


def require_cuda_bitsandbytes() -> None:
    """Stop with one line unless 4-bit training can run here."""
    if not torch.cuda.is_available():
        raise AdaptlabError("qlora needs a CUDA GPU (bitsandbytes' 4-bit kernels): this machine has none; use lora, "
                            "which trains the same adapters on an unquantised base")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise AdaptlabError("qlora needs the bitsandbytes package (pip install bitsandbytes)") from None


@register
class QLoRA(LoRA):
    """LoRA on a 4-bit quantised, frozen base (Dettmers et al. 2023); CUDA only."""

    Config = QLoRAConfig
    method = True  # decides what trains: an objective (dpo, grpo, ...) can run through it
    train_defaults = {"lr": 2e-4, "epochs": 3, "schedule": "linear"}

    def build(self, task: Task) -> nn.Module:
        from transformers import BitsAndBytesConfig

        require_cuda_bitsandbytes()
        c = self.config
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[c.compute_dtype]
        if c.bits == 8:
            quantization = BitsAndBytesConfig(load_in_8bit=True)
        else:
            quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=c.quant_type,
                                              bnb_4bit_use_double_quant=c.double_quant, bnb_4bit_compute_dtype=dtype)
        return task.type.build(task, quantization_config=quantization, dtype=dtype)

    def prepare(self, model: nn.Module, task: Task) -> nn.Module:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        return super().prepare(model, task)

    def merge(self, module: nn.Module) -> Any:
        raise AdaptlabError("a qlora run is not merged into 4-bit weights: load its adapter onto the unquantised base "
                            "(adaptlab.load) and merge that, or serve the adapter as it is")
