"""Reading: pretrained text detection + recognition (PaddleOCR PP-OCRv4, shipped in a PyPI wheel).

The networks come from ``rapidocr-onnxruntime``'s wheel; the pre- and post-processing is ours
(numpy + scipy, no OpenCV): screens are axis-aligned, so a text line is a rectangle, and the
detector's side is capped at ``det_side`` so its cost does not grow with the frame.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ..runtime.bundle import sha256_file as sha256

WEIGHTS_PACKAGE = "rapidocr_onnxruntime"
DET_FILE = "ch_PP-OCRv4_det_infer.onnx"
REC_FILE = "ch_PP-OCRv4_rec_infer.onnx"
REC_HEIGHT = 48
REC_MAX_WIDTH = 48 * 25  # a line longer than 25:1 is cut (a paragraph line on a wide screen)
# Lines per recognition call: on 2 cores small batches beat big ones (a new 1280x720 sim screen's
# lines: batches of 8 121 ms, 3 104 ms, 1 124 ms, median of 8 screens).
REC_BATCH = 3
DET_THRESH = 0.3  # the detector's per-pixel text probability
BOX_THRESH = 0.5  # a region's mean probability to count as text
UNCLIP = 1.6  # DB's shrunk text kernels grow back by area * UNCLIP / perimeter
DET_MIN_SIDE = 960


class PerceptionWeightsError(RuntimeError):
    """Perception weights that are missing, unreadable or not the ones recorded."""


@dataclass(frozen=True)
class TextLine:
    box: tuple[int, int, int, int]  # frame pixels, x0, y0, x1, y1 (exclusive end)
    text: str
    confidence: float


def weight_files() -> dict[str, Path]:
    """Where the installed wheel keeps the detector and recogniser."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise PerceptionWeightsError(f"{WEIGHTS_PACKAGE} is not installed: it ships the OCR weights "
                                     f"(pip install {WEIGHTS_PACKAGE.replace('_', '-')}==1.4.4)")
    root = Path(spec.origin).parent / "models"
    return {"det": root / DET_FILE, "rec": root / REC_FILE}


def _session(path: Path, threads: int, expect_sha: str | None):
    import onnxruntime as ort

    if not path.is_file():
        raise PerceptionWeightsError(f"perception weights missing: {path}")
    if expect_sha is not None and sha256(path) != expect_sha:
        raise PerceptionWeightsError(f"perception weights {path} do not match the sha256 in the model manifest")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types for a corrupt file
        raise PerceptionWeightsError(f"perception weights {path} cannot be loaded: {exc}") from None


class TextReader:
    """Detect text lines in a region of a frame, and recognise line crops."""

    def __init__(self, threads: int = 2, det_side: int = 1440, hashes: dict[str, str] | None = None):
        files = weight_files()
        hashes = hashes or {}
        self.det = _session(files["det"], threads, hashes.get("det"))
        self.rec = _session(files["rec"], threads, hashes.get("rec"))
        chars = self.rec.get_modelmeta().custom_metadata_map.get("character")
        if not chars:
            raise PerceptionWeightsError(f"{files['rec']} holds no character table")
        self.charset = ["", *chars.splitlines(), " "]  # CTC blank first, the space last (PaddleOCR's rule)
        self.det_side = det_side

    # -- detection ------------------------------------------------------------------------------
    def detect(self, image: np.ndarray, region: tuple[int, int, int, int] | None = None) -> list[tuple]:
        """Text line boxes (frame pixels) inside ``region`` (x0, y0, x1, y1; the whole frame if None)."""
        h, w = image.shape[:2]
        x0, y0, x1, y1 = region or (0, 0, w, h)
        crop = image[y0:y1, x0:x1]
        ch, cw = crop.shape[:2]
        if ch < 8 or cw < 8:
            return []
        # the whole frame's scale, also for a region: lines then split and merge the same way in both
        scale = det_scale(max(h, w), self.det_side)
        th, tw = max(32, round(ch * scale / 32) * 32), max(32, round(cw * scale / 32) * 32)
        inp = _resize(crop, tw, th).astype(np.float32) / 127.5 - 1.0
        prob = self.det.run(None, {"x": inp.transpose(2, 0, 1)[None]})[0][0, 0]
        mask = prob > DET_THRESH
        labels, _ = ndimage.label(mask)
        sx, sy = cw / tw, ch / th
        boxes = []
        for i, sl in enumerate(ndimage.find_objects(labels)):
            if sl is None:
                continue
            ys, xs = sl
            bh, bw = ys.stop - ys.start, xs.stop - xs.start
            if min(bh, bw) < 2 or prob[sl][labels[sl] == i + 1].mean() < BOX_THRESH:
                continue
            d = bh * bw * UNCLIP / (2 * (bh + bw))
            bx0 = x0 + max(0, math.floor((xs.start - d) * sx))
            by0 = y0 + max(0, math.floor((ys.start - d) * sy))
            bx1 = x0 + min(cw, math.ceil((xs.stop + d) * sx))
            by1 = y0 + min(ch, math.ceil((ys.stop + d) * sy))
            if by1 - by0 >= 4 and bx1 - bx0 >= 4:
                boxes.append((bx0, by0, bx1, by1))
        return sorted(boxes, key=lambda b: (b[1], b[0]))

    # -- recognition ----------------------------------------------------------------------------
    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and mean confidence for each line crop; crops of similar width share a batch."""
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        widths = [_rec_width(c) for c in crops]
        order = sorted(range(len(crops)), key=lambda i: widths[i])
        batch: list[int] = []
        for i in order + [None]:  # type: ignore[list-item]
            if batch and (i is None or widths[i] > widths[batch[0]] * 1.3 or len(batch) == REC_BATCH):
                width = widths[batch[-1]]
                x = np.zeros((len(batch), 3, REC_HEIGHT, width), np.float32)
                for j, k in enumerate(batch):
                    img = _resize(crops[k], widths[k], REC_HEIGHT).astype(np.float32) / 127.5 - 1.0
                    x[j, :, :, : widths[k]] = img.transpose(2, 0, 1)
                probs = self.rec.run(None, {"x": x})[0]
                for j, k in enumerate(batch):
                    out[k] = self._ctc(probs[j])
                batch = []
            if i is not None:
                batch.append(i)
        return out

    def _ctc(self, probs: np.ndarray) -> tuple[str, float]:
        idx = probs.argmax(axis=1)
        conf = probs.max(axis=1)
        keep = (idx != 0) & np.concatenate([[True], idx[1:] != idx[:-1]])
        chars = [self.charset[i] if i < len(self.charset) else "" for i in idx[keep]]
        return "".join(chars).strip(), float(conf[keep].mean()) if keep.any() else 0.0

    def read(self, image: np.ndarray, region: tuple[int, int, int, int] | None = None) -> list[TextLine]:
        """Detect and recognise every line in a region: the cold path (``edge-vla predict``)."""
        boxes = self.detect(image, region)
        texts = self.recognize([image[b[1]:b[3], b[0]:b[2]] for b in boxes])
        return [TextLine(b, t, c) for b, (t, c) in zip(boxes, texts) if t]


def det_scale(long_side: int, det_side: int) -> float:
    """The detector's input scale: 3/4 of the frame, kept between 960 px and ``det_side`` on the long side.
    Real pages at 1920x1080 set text at 13-16 px: halved to 960 px, half of it was never detected
    (14 of 40 targets' lines found; 29 of 40 at 1440 px, none more at 1920)."""
    side = min(long_side, max(DET_MIN_SIDE, min(det_side, 0.75 * long_side)))
    return side / long_side


def _rec_width(crop: np.ndarray) -> int:
    h, w = crop.shape[:2]
    return int(min(REC_MAX_WIDTH, max(REC_HEIGHT // 2, math.ceil(REC_HEIGHT * w / max(1, h)))))


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    if img.shape[1] == w and img.shape[0] == h:
        return img
    return np.asarray(Image.fromarray(np.ascontiguousarray(img)).resize((w, h), Image.BILINEAR))
