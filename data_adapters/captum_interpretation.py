"""``CaptumInterpretation``: fastai's captum helper, working on captum >= 0.9.

fastai ships ``fastai.callback.captum.CaptumInterpretation``, whose module imports
``captum.insights`` and so no longer imports at all. This class keeps its constructor and its two
methods with the same arguments and meanings, so migrating is changing the import:

- ``visualize(inp, metric=...)`` attributes one image (a file name, a PIL image or an image tensor)
  with Integrated Gradients, a noise tunnel over it, or occlusion, and draws the original image and
  the heat map side by side with captum's ``visualize_image_attr_multiple``, in the colormap built
  from the constructor's ``colors``. Unlike fastai's it returns the figure (a notebook cell shows it
  as its value) and honours ``n_steps`` (fastai's always took 200 steps for IG and captum's default 50
  under the noise tunnel).
- ``insights(items)`` opens our visualizer (``data_adapters.fastai.from_learner``) over the items:
  the widget inside a notebook, the served page elsewhere.

The image reaches the model through the learner's own test-time pipeline (``dls.test_dl``: the
item transforms, then the batch transforms with its ``Normalize``), so the attribution is of
exactly what fastai's ``predict`` feeds the model; the picture is that input decoded back. PIL
images and tensors are handed to the pipeline as PNG bytes, which fastai's image ``create`` opens
in the learner's own mode (grey or RGB) like a file. The attribution target is the class the
model predicts for the input unless ``target`` says otherwise.
"""

from __future__ import annotations

import functools
import io
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch

from insights_app import AttributionVisualizer, quiet_imports
from insights_app.tensors import model_device, plain

from .errors import AdapterError

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

__all__ = ["Attribution", "BASELINE_TYPES", "CaptumInterpretation", "METRICS", "NT_TYPES"]

METRICS = ("IG", "NT", "Occl")
BASELINE_TYPES = ("zeros", "uniform", "gauss")
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")
# fastai's default colormap: white for no attribution, black from a quarter of the scale up.
DEFAULT_COLORS = ((0, "#ffffff"), (0.25, "#000000"), (1, "#000000"))
# Integration steps per forward pass: the default n_steps=1000 on a 224x224 resnet in one pass
# would hold a thousand images' activations at once.
INTERNAL_BATCH_SIZE = 64
Input = Union[str, Path, "Image.Image", torch.Tensor]


@dataclass
class Attribution:
    """What :meth:`CaptumInterpretation.attribute` computed for one image (all tensors on the CPU).

    ``inputs``, ``baseline`` and ``attributions`` are (1, C, H, W) in the model's input space;
    ``image`` is (C, H, W) in 0..1, the input decoded for display. ``label`` is the class index the
    learner's labelling gives the item (None when it has none, e.g. for a PIL image).
    """

    metric: str
    attributions: torch.Tensor
    inputs: torch.Tensor
    baseline: torch.Tensor
    image: torch.Tensor
    target: int
    predicted: int
    label: int | None
    classes: list[str]


def _choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, not {value!r}")
    return value


def _in_notebook() -> bool:
    """Whether we run inside an IPython kernel (a notebook), without importing IPython."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _png_bytes(inp: Any) -> bytes:
    """A PIL image or an image tensor as PNG bytes, which fastai's ``PILBase.create`` opens in the
    learner's image mode, exactly as it opens a file.

    Tensors: (H, W), (C, H, W) or (1, C, H, W) with C 1, 3 or 4; floating point in 0..1, integers
    in 0..255 (fastai's ``TensorImage`` convention).
    """
    from PIL import Image

    if isinstance(inp, torch.Tensor):
        t = plain(inp).detach().cpu()
        if t.dim() == 4 and t.shape[0] == 1:
            t = t[0]
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(
                f"an image tensor must be (H, W), (C, H, W) or (1, C, H, W) with 1, 3 or 4 channels, "
                f"not {tuple(inp.shape)}"
            )
        if t.is_floating_point():
            if not bool(torch.isfinite(t).all()):
                raise ValueError("the image tensor holds non-finite values")
            t = (t.clamp(0, 1) * 255).round()
        arr = t.clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
        image = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr, {1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2]])
    elif isinstance(inp, Image.Image):
        image = inp if inp.mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16") else inp.convert("RGB")
    else:  # pragma: no cover - callers check the kind first
        raise TypeError(type(inp).__name__)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _is_image(inp: Any) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(inp, pil.Image)


def _as_item(inp: Any) -> Path | bytes:
    """A ``visualize``/``insights`` input as an item of the learner's pipeline: a file path or PNG bytes."""
    if isinstance(inp, (str, Path)):
        path = Path(inp).expanduser()
        if not path.is_file():
            raise AdapterError(f"no such image file: {path}")
        return path
    if isinstance(inp, torch.Tensor) or _is_image(inp):
        return _png_bytes(inp)
    raise TypeError(
        f"inp must be an image file name (str or Path), a PIL image or an image tensor, not {type(inp).__name__}"
    )


class CaptumInterpretation:
    """fastai's ``CaptumInterpretation(learn)``: captum attributions of a vision learner's inputs.

    ``cmap_name``, ``colors`` and ``N`` build the heat map's ``LinearSegmentedColormap``
    (``colors``: (position, colour) pairs; default white to black); ``methods``, ``signs`` and
    ``outlier_perc`` go to captum's ``visualize_image_attr_multiple``, one panel per method.
    """

    def __init__(
        self,
        learn: Any,
        cmap_name: str = "custom blue",
        colors: Sequence[Any] | None = None,
        N: int = 256,
        methods: Sequence[str] = ("original_image", "heat_map"),
        signs: Sequence[str] = ("all", "positive"),
        outlier_perc: int | float = 1,
    ) -> None:
        if not hasattr(learn, "dls") or not hasattr(learn, "model"):
            raise AdapterError(f"expected a fastai Learner, got {type(learn).__name__}")
        if len(methods) != len(signs):
            raise ValueError(f"methods and signs must have the same length ({len(methods)} and {len(signs)})")
        self.learn = learn
        self.cmap_name = cmap_name
        self.colors = list(DEFAULT_COLORS if colors is None else colors)
        self.N = N
        self.methods = tuple(methods)
        self.signs = tuple(signs)
        self.outlier_perc = outlier_perc
        self.supported_metrics = list(METRICS)

    # fastai's attribute names, read live: the learner's data or model may be replaced later
    @property
    def dls(self) -> Any:
        return self.learn.dls

    @property
    def model(self) -> torch.nn.Module:
        return self.learn.model

    @property
    def classes(self) -> list[str]:
        from .fastai_common import vocab_names

        names = vocab_names(self.dls)
        return names if names is not None else []

    # ------------------------------------------------------------------ inputs
    def _batch(self, inp: Any) -> tuple[torch.Tensor, torch.Tensor, int | None]:
        """(model input (1, C, H, W) on the model's device, display image (C, H, W) in 0..1, label)."""
        from .fastai_common import test_dl

        item = _as_item(inp)
        if isinstance(item, Path):
            dl = test_dl(self.dls, [item], with_labels=None)  # labelled when the learner can label it
        else:
            try:
                dl = self.dls.test_dl([item], with_labels=False)
            except Exception as exc:
                raise AdapterError(
                    f"fastai could not build a DataLoader over the image: {type(exc).__name__}: {exc}"
                ) from exc
        dl = dl.new(bs=1, shuffle=False, drop_last=False, num_workers=0)
        try:
            batch = dl.one_batch()
        except Exception as exc:
            raise AdapterError(f"the learner's pipeline failed on the image: {type(exc).__name__}: {exc}") from exc
        batch = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        if int(getattr(dl, "n_inp", 1) or 1) != 1:
            raise AdapterError("CaptumInterpretation attributes learners that take one image input")
        x = plain(batch[0])
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            raise AdapterError(
                "the learner's inputs are not images (N, C, H, W); CaptumInterpretation explains vision learners"
            )
        label = None
        if len(batch) > 1:
            y = plain(batch[1])
            if isinstance(y, torch.Tensor) and y.dim() == 1 and not y.is_floating_point() and y.numel() == 1:
                label = int(y.item())
        return x.detach().to(model_device(self.model)), self._display_image(dl, batch), label

    @staticmethod
    def _display_image(dl: Any, batch: tuple) -> torch.Tensor:
        """The input as shown: the same pipeline without its Normalize (the file's pixels / 255, as
        ``from_learner`` shows them; decoding the normalized input would round some pixels down)."""
        from .fastai_common import display_dl

        try:
            shown = plain(display_dl(dl, 1).one_batch()[0])
        except Exception:  # a pipeline that cannot be copied: decode the model's input instead
            decoded = dl.decode(batch)
            shown = plain(decoded[0] if isinstance(decoded, (tuple, list)) else decoded)
        shown = shown[0].detach().cpu()
        return (shown.float() / 255.0 if not shown.is_floating_point() else shown.float()).clamp(0, 1)

    def get_baseline_img(self, img_tensor: torch.Tensor, baseline_type: str) -> torch.Tensor:
        """fastai's baselines, in the model's input space: 'zeros'; 'uniform' (uniform noise in
        [0, 1)); 'gauss' (the mean of the image and such noise, as fastai draws it)."""
        _choice("baseline_type", baseline_type, BASELINE_TYPES)
        if baseline_type == "zeros":
            return torch.zeros_like(img_tensor)
        noise = torch.rand(img_tensor.shape).to(img_tensor.device, img_tensor.dtype)
        return noise if baseline_type == "uniform" else (noise + img_tensor) / 2

    def _target(self, target: Any, predicted: int, n_outputs: int) -> int:
        if target is None:
            return predicted
        if isinstance(target, str):
            classes = self.classes
            if target not in classes:
                raise ValueError(f"target {target!r} is not one of the learner's classes {classes}")
            return classes.index(target)
        if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < n_outputs:
            raise ValueError(f"target must be a class name or an index in 0..{n_outputs - 1}, not {target!r}")
        return int(target)

    # ------------------------------------------------------------------ attribution
    def attribute(
        self,
        inp: Input,
        metric: str = "IG",
        n_steps: int = 1000,
        baseline_type: str = "zeros",
        nt_type: str = "smoothgrad",
        strides: Sequence[int] = (3, 4, 4),
        sliding_window_shapes: Sequence[int] = (3, 15, 15),
        *,
        target: Any = None,
        nt_samples: int = 1,
        internal_batch_size: int | None = INTERNAL_BATCH_SIZE,
    ) -> Attribution:
        """The attribution :meth:`visualize` draws, without drawing it (the arguments are its)."""
        _choice("metric", metric, METRICS)
        _choice("baseline_type", baseline_type, BASELINE_TYPES)
        _choice("nt_type", nt_type, NT_TYPES)
        if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive integer, not {n_steps!r}")
        if isinstance(nt_samples, bool) or not isinstance(nt_samples, (int, np.integer)) or nt_samples < 1:
            raise ValueError(f"nt_samples must be a positive integer, not {nt_samples!r}")
        with quiet_imports():
            from captum.attr import IntegratedGradients, NoiseTunnel, Occlusion

        x, image, label = self._batch(inp)
        model = self.model
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = plain(model(x))
            if isinstance(out, (tuple, list)):
                out = out[0]
            if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 1:
                raise AdapterError("the model must return one row of class scores per image")
            predicted = int(out[0].argmax())
            cls = self._target(target, predicted, int(out.shape[1]))
            baseline = self.get_baseline_img(x, baseline_type)
            with torch.enable_grad():
                if metric == "IG":
                    attr = IntegratedGradients(model).attribute(
                        x, baselines=baseline, target=cls, n_steps=int(n_steps), internal_batch_size=internal_batch_size
                    )
                elif metric == "NT":
                    attr = NoiseTunnel(IntegratedGradients(model)).attribute(
                        x,
                        nt_type=nt_type,
                        nt_samples=int(nt_samples),
                        baselines=baseline,
                        target=cls,
                        n_steps=int(n_steps),
                        internal_batch_size=internal_batch_size,
                    )
                else:
                    window, stride = _occlusion_shapes(x, sliding_window_shapes, strides)
                    attr = Occlusion(model).attribute(
                        x, sliding_window_shapes=window, strides=stride, target=cls, baselines=baseline
                    )
        finally:
            model.train(was_training)
        return Attribution(
            metric,
            plain(attr).detach().cpu(),
            x.detach().cpu(),
            baseline.detach().cpu(),
            image,
            cls,
            predicted,
            label,
            self.classes,
        )

    # ------------------------------------------------------------------ drawing
    def visualize(
        self,
        inp: Input,
        metric: str = "IG",
        n_steps: int = 1000,
        baseline_type: str = "zeros",
        nt_type: str = "smoothgrad",
        strides: Sequence[int] = (3, 4, 4),
        sliding_window_shapes: Sequence[int] = (3, 15, 15),
        **kwargs: Any,
    ) -> Any:
        """Attribute ``inp`` and draw it as fastai does; return the matplotlib figure.

        ``metric``: 'IG' (IntegratedGradients with ``n_steps`` and the baseline), 'NT' (a NoiseTunnel
        of ``nt_type`` 'smoothgrad', 'smoothgrad_sq' or 'vargrad' over it), 'Occl' (Occlusion with
        ``strides`` and ``sliding_window_shapes``, clipped to the image's size, and the baseline).
        ``baseline_type``: 'zeros', 'uniform' or 'gauss'. Keyword-only extras: ``target`` (a class
        index or name; default the predicted class), ``nt_samples`` (default 1, as fastai),
        ``internal_batch_size`` (integration steps per forward pass). The figure is not pyplot's: a
        notebook shows it as the cell's value; elsewhere save it with ``fig.savefig(...)``.
        """
        return self.figure(
            self.attribute(inp, metric, n_steps, baseline_type, nt_type, strides, sliding_window_shapes, **kwargs)
        )

    def figure(self, result: Attribution) -> Any:
        """The figure :meth:`visualize` draws for an :class:`Attribution`."""
        from matplotlib.colors import LinearSegmentedColormap

        with quiet_imports():
            from captum.attr import visualization as viz

        names = result.classes or []

        def name(i: int | None) -> str:
            return names[i] if i is not None and 0 <= i < len(names) else str(i)

        original = f"Original Image - ({name(result.predicted)})"
        if result.label is not None and result.label != result.predicted:
            original = f"Original Image - ({name(result.predicted)}, label {name(result.label)})"
        heat = result.metric if result.target == result.predicted else f"{result.metric} - ({name(result.target)})"
        titles = [original if m == "original_image" else heat for m in self.methods]
        cmap = LinearSegmentedColormap.from_list(self.cmap_name, self.colors, N=self.N)
        attr = result.attributions[0].numpy().transpose(1, 2, 0)
        # 0..255 integers, as fastai passes its decoded image: captum truncates 0..1 floats times 255
        image = (result.image * 255).round().to(torch.uint8)
        if image.shape[0] == 1:  # grey: captum would draw one channel in its default colormap
            image = image.expand(3, -1, -1)
        image = image.numpy().transpose(1, 2, 0)
        fig, _ = viz.visualize_image_attr_multiple(
            attr,
            image,
            methods=list(self.methods),
            signs=list(self.signs),
            titles=titles,
            cmap=cmap,
            show_colorbar=True,
            outlier_perc=self.outlier_perc,
            use_pyplot=False,
        )
        fig.insights_attribution = result  # what was drawn, for whoever holds the figure
        _displayable(fig)
        return fig

    # ------------------------------------------------------------------ the app
    def insights(self, inp_data: Any, debug: bool = True, **kwargs: Any) -> AttributionVisualizer:
        """Our visualizer over ``inp_data`` (image files, a folder, PIL images or tensors) with the learner.

        Inside a notebook it shows the widget (``vis.render()``); elsewhere it serves the page
        (``vis.serve()``, not blocking; the URL is printed). Returns the visualizer either way (stop
        a served one with ``vis.stop()``). ``debug`` raises the log level; other keyword arguments go
        to :func:`data_adapters.fastai.from_learner` (e.g. ``bs``, ``classes``, ``title``).
        """
        from .fastai_learner import from_learner  # imports fastai: only when the app opens

        if isinstance(inp_data, (str, Path)) and Path(inp_data).expanduser().is_dir():
            items: Any = inp_data
        elif isinstance(inp_data, (str, Path, torch.Tensor)) or _is_image(inp_data):
            items = [_as_item(inp_data)]
        else:
            items = [_as_item(x) for x in list(inp_data)]
            if not items:
                raise ValueError("inp_data is empty")
        vis = from_learner(self.learn, items=items, **kwargs)
        if _in_notebook():
            vis.render(debug=debug)
        else:
            vis.serve(debug=debug)
        return vis


def _occlusion_shapes(x: torch.Tensor, window: Sequence[int], strides: Sequence[int]) -> tuple[tuple, tuple]:
    """The window and strides, each dimension clipped to the image's (C, H, W): fastai's defaults are
    for 3-channel images of 15 pixels or more; a grey or smaller image gets the largest window that fits."""
    dims = tuple(int(d) for d in x.shape[1:])
    window, strides = tuple(window), tuple(strides)
    if len(window) != len(dims) or len(strides) != len(dims):
        raise ValueError(
            f"sliding_window_shapes and strides need {len(dims)} values (C, H, W) for an image of "
            f"shape {dims}, got {window} and {strides}"
        )
    if any(int(v) < 1 for v in window + strides):
        raise ValueError(f"sliding_window_shapes and strides must be positive, got {window} and {strides}")
    clipped = tuple(min(int(w), d) for w, d in zip(window, dims)), tuple(min(int(s), d) for s, d in zip(strides, dims))
    if clipped != (window, strides):
        log.info(
            "occlusion window %s and strides %s clipped to %s for an image of shape %s", window, strides, clipped, dims
        )
    return clipped


def _figure_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def _displayable(fig: Any) -> None:
    """Let a notebook show the figure as a cell's value: it is not pyplot's (so it is shown once, and
    not again by the inline backend at the cell's end), and a figure pyplot never drew has no
    formatter in a kernel that did not load the inline backend yet; IPython asks ``_repr_png_`` then.
    A partial of a module function, so that the figure still pickles."""
    fig._repr_png_ = functools.partial(_figure_png, fig)
