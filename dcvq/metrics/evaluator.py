"""The evaluator: one routine for training-time and offline numbers alike.

An :class:`Evaluator` streams a loader through a model once and returns a JSON-ready
dict (the content of ``eval.json``). Both the training loop and ``python -m
dcvq.evaluate`` call it, so their numbers agree. Memory stays bounded whatever the split
size: only per-image metric sums, code counts and FID running statistics are kept, and,
when asked (``per_image=True``: the final evaluation), five floats per image for
``per_image.csv``, which lets the report compare two runs image by image (a paired
comparison).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor, nn

from dcvq import weights
from dcvq.checkpoint import write_text_atomic
from dcvq.metrics.fid import StreamingFID, load_inception, resolve_inception_weights
from dcvq.metrics.image import to_uint8
from dcvq.metrics.lpips import LPIPS
from dcvq.metrics.protocols import PER_IMAGE, get_protocol
from dcvq.metrics.usage import CodebookUsage, code_vectors

log = logging.getLogger(__name__)


def versions() -> dict[str, str | None]:
    """Versions of the packages that determine the numbers."""
    out: dict[str, str | None] = {"torch": torch.__version__}
    for dist in ("torch-fidelity", "lpips", "dcvq"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _split_batch(batch: Any) -> tuple[Tensor, list[str] | None, list[str]]:
    """``(images, names, skipped)`` from an ImageBatch, a tensor or an (images, ...) pair."""
    if isinstance(batch, Tensor):
        return batch, None, []
    if hasattr(batch, "images"):
        return batch.images, list(batch.names), list(getattr(batch, "skipped", []))
    images, names = batch[0], batch[1] if len(batch) > 1 else None
    return images, (list(names) if isinstance(names, (list, tuple)) else None), []


def _file_name(name: str) -> str:
    # Names are paths relative to the dataset root: flatten them so that files from
    # different folders (CUB classes) cannot collide and nothing escapes the folder.
    flat = re.sub(r"[\\/]+", "__", name).lstrip(".")
    return (os.path.splitext(flat)[0] or "image") + ".png"


def _total(loader: Any, max_images: int | None) -> int | None:
    try:
        n = len(loader.dataset)
    except (AttributeError, TypeError):
        return max_images
    return min(n, max_images) if max_images is not None else n


class Evaluator:
    """Measures models under one protocol; loads the metric networks once.

    The training loop keeps one for the whole run (Inception and VGG16 are loaded at
    start, so a missing file fails before the first step).
    """

    def __init__(
        self,
        *,
        device: str | torch.device,
        protocol: str = "clean",
        fid: bool = False,
        fid_weights: str | os.PathLike | None = None,
        lpips: bool = False,
        lpips_weights: str | os.PathLike | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.protocol = get_protocol(protocol)
        self.weights: dict[str, Any] = {}
        # {metric: why} for metrics left out for want of weights (eval.missing_weights=skip)
        self.not_measured: dict[str, str] = {}
        self.inception = self.lpips = None
        if fid:
            path = resolve_inception_weights(fid_weights)
            self.inception = load_inception(path, self.device)
            self.weights["inception"] = _describe_weights(path, weights.INCEPTION)
        if lpips:
            off = "eval.lpips=false to evaluate"
            self.lpips = LPIPS(lpips_weights, key="eval.lpips_weights", off=off).to(self.device)
            self.weights["vgg16"] = _describe_weights(self.lpips.weights_path, weights.VGG16)

    @classmethod
    def from_config(cls, eval_cfg: Any, device: str | torch.device) -> Evaluator:
        """From the ``eval`` node shared by training and ``python -m dcvq.evaluate``."""
        missing = weights.missing_for(eval_cfg)
        if missing:
            log.warning(
                "%s not measured (eval.missing_weights=skip; null in the results): %s; "
                "`make weights` fetches them",
                " and ".join(m.upper() for m in missing),
                "; ".join(missing.values()),
            )
        evaluator = cls(
            device=device,
            protocol=eval_cfg.protocol,
            fid=eval_cfg.fid and "fid" not in missing,
            fid_weights=eval_cfg.fid_weights,
            lpips=eval_cfg.lpips and "lpips" not in missing,
            lpips_weights=eval_cfg.lpips_weights,
        )
        evaluator.not_measured = missing
        return evaluator

    def __call__(
        self,
        model: nn.Module,
        loader: Any,
        *,
        max_images: int | None = None,
        reconstructions_dir: str | os.PathLike | None = None,
        progress: bool = False,
        split: str = "val",
        per_image: bool = False,
    ) -> dict[str, Any]:
        """Reconstruct every image of ``loader`` and measure it.

        ``model(x) -> (reconstruction, vq_loss, info)`` with ``info["indices"]`` of shape
        ``B x K x h x w``; images in ``[-1, 1]``. Runs in eval mode without gradients and
        restores the model's previous mode. ``reconstructions_dir`` receives each
        reconstruction as a lossless 8-bit PNG named after its source image.

        Returns ``fid``, ``psnr``, ``l1``, ``l2``, ``ssim``, ``lpips`` (``None`` when off
        or when there are no images), ``codebooks`` ({name: size, used, usage (percent),
        dead, perplexity, counts, distinct, distinct_usage (percent), effective_rank,
        min_distance, nn_distance_p5 and, where ``info`` has ``errors``, quantization_error
        and distinct_at_quantization: :mod:`dcvq.metrics.usage`}), ``pairs`` (two
        codebooks only), ``protocol``, ``note``, ``split``, ``n_images``, ``skipped`` (names
        of undecodable files), ``versions``, ``weights`` ({"inception"/"vgg16": {path,
        official}}) and ``not_measured`` ({metric: why} for metrics skipped for want of
        weights). With ``per_image``, also ``per_image``: {"name": [...], metric: [...]} in
        the loader's order (write it with :func:`write_per_image`; it does not belong in
        eval.json).
        """
        device, proto, lpips_net = self.device, self.protocol, self.lpips
        fid_acc = StreamingFID(self.inception, device) if self.inception is not None else None
        quantizer = getattr(model, "module", model).quantizer  # DDP-wrapped or not
        usage = CodebookUsage(quantizer.codebook_names, quantizer.codebook_sizes)
        out_dir = Path(reconstructions_dir) if reconstructions_dir is not None else None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)

        sums = dict.fromkeys((*PER_IMAGE, "lpips"), 0.0)
        rows: dict[str, list] | None = None
        if per_image:
            keys = ("name", *PER_IMAGE, *(["lpips"] if lpips_net is not None else []))
            rows = {k: [] for k in keys}
        n_images, skipped, written = 0, [], set()
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=_total(loader, max_images), unit="img", desc=f"eval {split}")

        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for batch in loader if max_images is None or max_images > 0 else ():
                    images, names, bad = _split_batch(batch)
                    skipped.extend(bad)
                    if max_images is not None:
                        images = images[: max_images - n_images]
                        names = names[: len(images)] if names is not None else None
                    if len(images) == 0:
                        continue
                    x = images.to(device, non_blocking=True).float()
                    recon, _, info = model(x)
                    recon = recon.float()
                    measured = proto.measure(x, recon)
                    values = dict(measured.per_image)
                    if lpips_net is not None:
                        a = measured.real.to(device).float().div(127.5).sub(1.0)
                        b = measured.fake.to(device).float().div(127.5).sub(1.0)
                        values["lpips"] = lpips_net(a, b).double().flatten()
                    for key, v in values.items():
                        sums[key] += float(v.sum())
                    if rows is not None:
                        for key, v in values.items():
                            rows[key].extend(v.cpu().tolist())
                        rows["name"].extend(names or (str(n_images + i) for i in range(len(x))))
                    if fid_acc is not None:
                        fid_acc.update(measured.real, measured.fake)
                    usage.update(info["indices"], info.get("errors"))
                    if out_dir is not None:
                        _save(out_dir, to_uint8(recon), names, n_images, written)
                    n_images += len(x)
                    if bar is not None:
                        bar.update(len(x))
                    if max_images is not None and n_images >= max_images:
                        break  # before the loader decodes another batch
                vectors = code_vectors(quantizer)  # in eval mode, as the lookup used them
        finally:
            model.train(was_training)
            if bar is not None:
                bar.close()

        def mean(key: str) -> float | None:
            return sums[key] / n_images if n_images else None

        fid_value = None
        if fid_acc is not None:
            if n_images >= 2:
                fid_value = fid_acc.compute()
            else:
                log.warning("FID needs at least 2 images, got %d: fid is null", n_images)
        if skipped:
            log.warning("%d unreadable images skipped: %s", len(skipped), ", ".join(skipped[:10]))

        extra = {"per_image": rows} if rows is not None else {}
        return extra | {
            "fid": fid_value,
            "psnr": mean("psnr"),
            "l1": mean("l1"),
            "l2": mean("l2"),
            "ssim": mean("ssim"),
            "lpips": mean("lpips") if lpips_net is not None else None,
            **usage.result(vectors),
            "protocol": proto.name,
            "note": proto.note,
            "split": split,
            "n_images": n_images,
            "skipped": skipped,
            "versions": versions(),
            "weights": self.weights,
            "not_measured": dict(self.not_measured),
        }


def write_per_image(path: str | os.PathLike, splits: list[tuple[str, dict[str, list]]]) -> None:
    """``per_image.csv``: a header (``split``, ``name``, the metrics) and one row per image
    of each ``(split, rows)``, written atomically. Full float precision: a paired
    comparison sums small differences."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    header = list(splits[0][1])
    writer.writerow(["split", *header])
    for split, rows in splits:
        if list(rows) != header:
            raise ValueError(f"per_image.csv: split {split} has columns {list(rows)}, not {header}")
        n = len(rows["name"])
        writer.writerows(zip([split] * n, *rows.values(), strict=True))
    write_text_atomic(path, text.getvalue())


def _describe_weights(path: Path, spec: weights.WeightFile) -> dict[str, Any]:
    """Which file a metric used and whether it is the published one.

    Numbers from other files (the tests' stand-ins, a re-conversion) are not comparable
    with anybody's: the results file says so and a warning is logged.
    """
    official = weights.is_official(path, spec)
    if not official:
        log.warning(
            "%s is not the published %s (sha256 differs): its numbers are not comparable "
            "with published ones",
            path,
            spec.name,
        )
    return {"path": str(path), "official": official}


def _save(
    folder: Path, images: Tensor, names: list[str] | None, start: int, written: set[str]
) -> None:
    """One PNG per image; a name already written in this evaluation (``x.jpg`` and
    ``x.png``, or ``a/b.jpg`` and ``a__b.jpg``) gets its running index appended."""
    for i, img in enumerate(images.cpu().permute(0, 2, 3, 1).numpy()):
        name = _file_name(names[i]) if names is not None else f"{start + i:06d}.png"
        if name in written:
            name = f"{name[:-4]}.{start + i:06d}.png"
        written.add(name)
        Image.fromarray(img).save(folder / name)
