"""Which engine shards training across processes: DDP (Accelerate's default), FSDP2 or DeepSpeed ZeRO.

adaptlab writes no parallelism of its own: ``train.distributed`` picks one of Accelerate's plugins, and
the run is launched the usual way (``torchrun --nproc_per_node N -m adaptlab train ...`` or
``accelerate launch -m adaptlab train ...``). In one process the setting changes nothing.

Two things here are adaptlab's:

* Accelerate turns FSDP on only for accelerator devices; PyTorch's FSDP2 (``fully_shard``) itself also
  runs on CPU processes over gloo. On CPU the plugin is applied all the same, which is how the sharded
  path is tested on machines without a GPU (tests/test_distributed.py).
* A run folder holds the same artefacts whatever trained it. After a sharded run the full weights are
  gathered (``get_model_state_dict(full_state_dict=True)``) into a plain copy of the module taken
  before sharding, and everything after training (evaluation, saving, the model card) sees that copy.
"""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

from torch import nn

from ..errors import AdaptlabError

log = logging.getLogger("adaptlab")

ENGINES = ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def plugins(engine: str) -> dict[str, Any]:
    """Accelerator keyword arguments for ``engine`` (none in a single process or for DDP)."""
    if engine == "ddp" or world_size() < 2:
        return {}
    if engine == "fsdp":
        from accelerate.utils import FullyShardedDataParallelPlugin

        # transformer_based_wrap with no class names shards each of the model's ``_no_split_modules``
        # (BertLayer, LlamaDecoderLayer, ...): one all-gather per block, as the Trainer's FSDP recipe does
        return {"fsdp_plugin": FullyShardedDataParallelPlugin(
            fsdp_version=2, auto_wrap_policy="transformer_based_wrap", reshard_after_forward=True,
            state_dict_type="FULL_STATE_DICT", cpu_ram_efficient_loading=False)}
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        raise AdaptlabError(f"train.distributed={engine} needs the deepspeed package (pip install deepspeed); "
                            "or use fsdp, which needs nothing beyond torch") from None
    from accelerate.utils import DeepSpeedPlugin

    return {"deepspeed_plugin": DeepSpeedPlugin(zero_stage=int(engine[-1]), gradient_clipping=1.0)}


def adopt(accelerator: Any, engine: str, kwargs: dict[str, Any]) -> None:
    """Apply the FSDP plugin on CPU processes too (Accelerate would fall back to DDP there)."""
    from accelerate.utils import DistributedType

    if "fsdp_plugin" in kwargs and accelerator.distributed_type == DistributedType.MULTI_CPU:
        accelerator.state.distributed_type = DistributedType.FSDP
        accelerator.state.fsdp_plugin = kwargs["fsdp_plugin"]


def sharded(accelerator: Any) -> bool:
    """True when parameters are split across processes (FSDP, DeepSpeed ZeRO-3): no process holds them whole."""
    from accelerate.utils import DistributedType

    if accelerator.distributed_type == DistributedType.FSDP:
        return True
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    return accelerator.distributed_type == DistributedType.DEEPSPEED and plugin is not None and plugin.zero_stage == 3


def plain_copy(module: nn.Module, accelerator: Any) -> nn.Module | None:
    """A copy of the unsharded module, kept on the CPU to receive the trained weights; None when the
    engine does not shard (DDP and ZeRO-2 keep whole parameters on every process)."""
    if not sharded(accelerator):
        return None
    return copy.deepcopy(module).to("cpu")


def shard_blocks(accelerator: Any, module: nn.Module) -> None:
    """Name the blocks FSDP shards one by one: the model's ``_no_split_modules`` (its transformer
    layers), less any that hold the input embeddings (BERT lists ``BertEmbeddings``): Accelerate shards
    the input embeddings as a unit of their own, and a parameter cannot be sharded twice."""
    plugin = getattr(accelerator.state, "fsdp_plugin", None)
    if plugin is None:
        return
    names = set(getattr(module, "_no_split_modules", None) or [])
    embeddings = module.get_input_embeddings() if hasattr(module, "get_input_embeddings") else None
    holders = {type(m).__name__ for m in module.modules() if embeddings is not None and any(c is embeddings for c in m.modules())}
    plugin.transformer_cls_names_to_wrap = sorted(names - holders) or None


def gathered(model: nn.Module, plain: nn.Module, device: Any) -> nn.Module:
    """The trained weights, gathered from every process's shard into ``plain`` (on every process)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    missing, unexpected = plain.load_state_dict({k: v.full_tensor() if hasattr(v, "full_tensor") else v for k, v in full.items()},
                                                strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise AdaptlabError(f"gathering the sharded weights: {len(missing)} missing, {len(unexpected)} unexpected "
                            f"(e.g. {(missing + unexpected)[:3]})")
    trains = {name: p.requires_grad for name, p in model.named_parameters()}
    for name, q in plain.named_parameters():  # what trained stays what trains
        q.requires_grad_(trains.get(name, q.requires_grad))
    return plain.to(device)
