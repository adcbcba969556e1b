"""Model directories: weights (`model.pt`) plus a JSON model card (`model.json`).

A model is a directory, or a .zip of one. Loading needs this package only, never the training
package; torch when the network runs in torch (see `onnx_backend` for the CPU path without it).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ModelError
from ..tissues import NAMES

CARD_FILE = "model.json"
WEIGHTS_FILE = "model.pt"
DEFAULT_MODEL_NAME = "adiposeseg-unet-default"
MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"


@dataclass
class ModelCard:
    name: str
    version: str
    architecture: str
    arch_params: dict = field(default_factory=dict)
    pixel_spacing_mm: float = 2.5
    grid_pixels: int = 192
    hu_window: tuple[float, float] = (-300.0, 400.0)
    normalisation: str = "clip HU to hu_window, scale linearly to [-1, 1]"
    labels: dict = field(default_factory=lambda: {"0": "background", **{str(k): v for k, v in NAMES.items()}})
    training_data: dict = field(default_factory=dict)
    validation: dict = field(default_factory=dict)
    date: str = ""
    command: str = ""
    notes: str = ""
    trained: bool = False

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_json(self) -> str:
        d = dict(self.__dict__)
        d["hu_window"] = list(self.hu_window)
        return json.dumps(d, indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, d: dict, source: str = "model card") -> "ModelCard":
        missing = [k for k in ("name", "version", "architecture") if k not in d]
        if missing:
            raise ModelError(f"{source}: model card lacks {', '.join(missing)}")
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "hu_window" in known:
            known["hu_window"] = tuple(float(v) for v in known["hu_window"])
        return cls(**known)


def default_model_dir() -> Path:
    """The bundled model, or $ADIPOSESEG_MODEL when set."""
    env = os.environ.get("ADIPOSESEG_MODEL")
    return Path(env) if env else MODELS_DIR / DEFAULT_MODEL_NAME


def _unpack(path: Path) -> Path:
    if path.is_dir():
        return path
    if path.suffix.lower() == ".zip" and path.is_file():
        target = Path(tempfile.mkdtemp(prefix="adiposeseg-model-"))
        try:
            with zipfile.ZipFile(path) as zf:
                zf.extractall(target)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise ModelError(f"{path}: not a readable model archive ({exc.__class__.__name__}: {exc})") from None
        hits = list(target.rglob(CARD_FILE))
        if len(hits) != 1:
            raise ModelError(f"{path}: the archive must hold exactly one {CARD_FILE}, found {len(hits)}")
        return hits[0].parent
    raise ModelError(f"{path}: no model directory or .zip here")


def read_card(model_dir: str | os.PathLike) -> ModelCard:
    model_dir = _unpack(Path(model_dir))
    card_path = model_dir / CARD_FILE
    if not card_path.is_file():
        raise ModelError(f"{model_dir}: not a model directory (no {CARD_FILE}); train one with `python -m training train`")
    try:
        return ModelCard.from_dict(json.loads(card_path.read_text()), str(card_path))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{card_path}: the model card is not valid JSON ({exc})") from None


class LoadedModel:
    """A model directory's card, its torch network (loaded when first needed) and, when present and
    current, its ONNX export for CPU inference without torch."""

    def __init__(self, card: ModelCard, network=None, directory: Path | str = ".", onnx_path: Path | None = None,
                 device: str = "cpu"):
        self.card = card
        self.directory = Path(directory)
        self.onnx_path = onnx_path
        self._network = network
        self._device = device
        self._fused = None
        self._onnx = None

    @property
    def network(self):
        """The torch module in eval mode (weights loaded on first use when the ONNX path made that unnecessary)."""
        if self._network is None:
            self._network = _torch_network(self.directory, self.card, self._device)
        return self._network

    def inference_network(self):
        """The network with batch norm folded into its convolutions (made once; training keeps `network`)."""
        if self._fused is None:
            from .networks import fused_for_inference

            self._fused = fused_for_inference(self.network)
        return self._fused

    def onnx_network(self):
        """The ONNX Runtime session, or None when this model has no current export."""
        if self._onnx is None and self.onnx_path is not None:
            from .onnx_backend import OnnxNetwork

            self._onnx = OnnxNetwork(self.onnx_path)
        return self._onnx

    def network_kind(self, device: str) -> str:
        """Which network computes the labels on `device`: int8 and fp32 differ by up to ~1% of the
        labelled voxels, so results record it and a batch does not mix them."""
        if device == "cpu" and self.onnx_path is not None:
            return "onnxruntime " + ("int8" if self.onnx_path.name.endswith("int8.onnx") else "fp32")
        return f"torch {device}" + (" fp16" if device == "cuda" else " fp32")

    def weights_changed(self) -> None:
        """Call after training steps: the folded copy is made again and the ONNX export no longer applies."""
        self._fused = None
        self._onnx = None
        self.onnx_path = None


def _torch_network(model_dir: Path, card: ModelCard, device: str):
    import torch

    from .networks import build_network

    weights = model_dir / WEIGHTS_FILE
    try:
        network = build_network(card.architecture, num_classes=card.num_classes, **card.arch_params)
    except (ValueError, TypeError) as exc:
        raise ModelError(f"{model_dir}: {exc}") from None
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except Exception as exc:
        raise ModelError(f"{weights}: weights do not match the card's {card.architecture} {card.arch_params} ({exc.__class__.__name__})") from None
    return network.eval().to(device)


def load_model(model_dir: str | os.PathLike | None = None, device: str = "cpu") -> LoadedModel:
    """A model directory (or .zip). Its torch weights are loaded now, unless a current ONNX export
    and onnxruntime let CPU inference run without torch (then on first use of `network`)."""
    from .onnx_backend import usable_export

    if not model_dir and not default_model_dir().is_dir():
        raise ModelError(f"the bundled model is missing at {default_model_dir()}; reinstall AdiposeSeg or pass a model directory")
    model_dir = _unpack(Path(model_dir) if model_dir else default_model_dir())
    card = read_card(model_dir)
    weights = model_dir / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"{model_dir}: the weights file {WEIGHTS_FILE} is missing")
    onnx_path = usable_export(model_dir, json.loads((model_dir / CARD_FILE).read_text()), weights)
    network = None if onnx_path is not None else _torch_network(model_dir, card, device)
    return LoadedModel(card, network, model_dir, onnx_path, device)


def save_model(network, card: ModelCard, out_dir: str | os.PathLike) -> Path:
    """Write weights and card into out_dir (created); returns the directory."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    torch.save(state, out / WEIGHTS_FILE)
    (out / CARD_FILE).write_text(card.to_json() + "\n")
    return out
