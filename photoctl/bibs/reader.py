"""The local bib reader: PP-OCR's recognition model (shipped inside the `rapidocr` wheel) run
with onnxruntime on the few text lines proposals.py finds.

Costs, one core, 24 MP photo given at half resolution (3000x2000, JPEG's draft scale 1/2):
PP-OCRv6's detector would take ~0.6 s on a 1600 px copy alone and still miss digits under
~50 px, so it is not used; the lines are found on a ~1500 px copy (~25 ms), cropped from
the half-resolution image, turned level and recognized in batches (~15 ms a line, about 7
lines a photo), and numbers once more with room around them (rules.not_whole). The
model's answer is decoded over the characters a bib, a time or a distance can hold, so a read
never turns into a Chinese character and a low probability there means a low confidence.

No model is ever downloaded: the ONNX file and its character list come from the installed
wheel, and a missing one is an error at start-up, not a download at run time.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from photoctl.bibs.proposals import TextLine, text_lines
from photoctl.bibs.rules import OcrRead

REC_MODEL = "PP-OCRv6_rec_small.onnx"
REC_HEIGHT = 48
# What the decode may answer: enough to read bibs (A123) and to recognise what is not a bib.
ALLOWED = set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:.,/-# ")


def model_dir() -> Path:
    """The rapidocr wheel's models folder, found without importing rapidocr (which loads a
    configuration stack the reader does not use)."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the rapidocr package is not installed (pip install rapidocr)")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@dataclass(frozen=True)
class ReaderSettings:
    # Longest side of the copy lines are searched on; a 25 px digit of a 6000 px photo is
    # ~6 px there, still a shape of its own.
    search_px: int = 1500
    # Shapes (in search-copy pixels) that may be characters of a bib.
    min_char_px: int = 4
    max_char_px: int = 60
    max_lines: int = 24  # lines recognized per photo, biggest first: bounds the cost
    # Also look for white digits on a dark card (the same search on the inverted copy). Off by
    # default: on photos of light cards it doubled the cost (+345 ms a photo instead of +178)
    # and its lines crowded out real ones (96 % of bibs found instead of 99 %).
    light_on_dark: bool = False
    batch: int = 8
    threads: int = 1  # onnxruntime threads: `work -n 2` on 2 cores must not oversubscribe


def _numeric(text: str, confidence: float) -> bool:
    """Worth a second, wider read: mostly digits, and not hopeless."""
    digits = sum(c.isdigit() for c in text)
    return confidence >= 0.5 and digits >= 2 and digits * 2 >= len(text.replace(" ", ""))


class BibReader:
    """Reads text lines likely to be bibs; `rules.find_bibs` decides which reads are bibs."""

    def __init__(self, settings: ReaderSettings | None = None) -> None:
        import onnxruntime

        self.settings = settings or ReaderSettings()
        path = model_dir() / REC_MODEL
        if not path.is_file():
            raise RuntimeError(f"the rapidocr wheel has no {REC_MODEL} (found {path.parent})")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.settings.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        # CTC classes: blank, the model's characters, then a space (as rapidocr decodes them).
        characters = ["", *meta["character"].splitlines(), " "]
        self.allowed = np.array(
            [0] + [i for i, c in enumerate(characters) if c in ALLOWED and i], dtype=np.int64
        )
        self.characters = [characters[i] for i in self.allowed]
        self.input_name = self.session.get_inputs()[0].name

    def read(self, image: Image.Image | np.ndarray, *, scale: float = 1.0) -> list[OcrRead]:
        """The text of every likely line; boxes and heights in original-photo pixels.

        ``image``: the photo, upright, RGB, at the resolution crops are read from (for a 24 MP
        JPEG its half-resolution draft, 3000x2000: digits under ~12 px there are not read);
        ``scale``: original pixels per pixel of ``image`` (2.0 for that draft).
        """
        if isinstance(image, Image.Image):
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        else:
            rgb = image
        if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 2:
            return []
        lines, ratio = self.propose(rgb)
        texts = self.recognize([self.crop(rgb, line, ratio) for line in lines])
        # Numbers are read again with more room on both sides: a number with letters or digits
        # right beside it is a piece of a longer text (a banner half hidden by an arm), and one
        # that reads differently is not sure (rules.not_whole).
        numbers = [i for i, (text, confidence) in enumerate(texts) if _numeric(text, confidence)]
        wide = self.recognize([self.crop(rgb, lines[i], ratio, 1.5) for i in numbers])
        contexts: dict[int, str] = {i: text for i, (text, _) in zip(numbers, wide, strict=True)}
        reads = []
        for index, (line, (text, confidence)) in enumerate(zip(lines, texts, strict=True)):
            x0, y0, x1, y1 = line.box
            factor = ratio * scale
            reads.append(
                OcrRead(
                    text=text,
                    box=(x0 * factor, y0 * factor, x1 * factor, y1 * factor),
                    confidence=confidence,
                    height=line.char_height * factor,
                    context=contexts.get(index),
                )
            )
        return reads

    def propose(self, rgb: np.ndarray) -> tuple[list[TextLine], float]:
        """Lines found on the search copy, and image pixels per search-copy pixel."""
        height, width = rgb.shape[:2]
        ratio = max(1.0, max(height, width) / self.settings.search_px)
        size = (max(1, round(width / ratio)), max(1, round(height / ratio)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
        grounds = [gray, 255 - gray] if self.settings.light_on_dark else [gray]
        found = [
            line
            for ground in grounds
            for line in text_lines(
                ground,
                min_height=self.settings.min_char_px,
                max_height=self.settings.max_char_px,
                max_lines=self.settings.max_lines,
            )
        ]
        found.sort(key=lambda line: -line.char_height * min(line.shapes, 4))
        return found[: self.settings.max_lines], ratio

    @staticmethod
    def crop(rgb: np.ndarray, line: TextLine, ratio: float, margin: float = 0.6) -> np.ndarray:
        """The line cut from the sharp image with a margin, turned level, REC_HEIGHT high.

        The default margin (in character heights) is wide enough that a time's colon or a
        unit beside the digits is read with them."""
        x0, y0, x1, y1 = (v * ratio for v in line.box)
        char = line.char_height * ratio
        mx, my = char * margin, char * 0.35
        h, w = rgb.shape[:2]
        cx0, cy0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
        cx1, cy1 = min(w, int(x1 + mx) + 1), min(h, int(y1 + my) + 1)
        piece = rgb[cy0:cy1, cx0:cx1]
        if abs(line.angle) > 3 and piece.size:
            ph, pw = piece.shape[:2]
            turn = cv2.getRotationMatrix2D((pw / 2, ph / 2), line.angle, 1.0)
            piece = cv2.warpAffine(piece, turn, (pw, ph), borderMode=cv2.BORDER_REPLICATE)
            # Level now, the text is as high as a character plus the margin.
            keep = min(ph, int(char * 1.7))
            top = max(0, (ph - keep) // 2)
            piece = piece[top : top + keep]
        ph, pw = piece.shape[:2]
        if ph == 0 or pw == 0:
            return np.zeros((REC_HEIGHT, REC_HEIGHT, 3), np.uint8)
        width = max(REC_HEIGHT // 2, min(REC_HEIGHT * 12, round(pw * REC_HEIGHT / ph)))
        return cv2.resize(piece, (width, REC_HEIGHT), interpolation=cv2.INTER_CUBIC)

    def recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """Text and confidence (mean probability of its characters) of each crop, in order."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1])
        for start in range(0, len(order), self.settings.batch):
            chunk = order[start : start + self.settings.batch]
            width = max(crops[i].shape[1] for i in chunk)
            batch = np.zeros((len(chunk), 3, REC_HEIGHT, width), np.float32)
            for row, i in enumerate(chunk):
                crop = crops[i].astype(np.float32).transpose(2, 0, 1) / 127.5 - 1.0
                batch[row, :, :, : crop.shape[2]] = crop
            # PP-OCR's rec models were trained on BGR input.
            batch = batch[:, ::-1].copy()
            probs = self.session.run(None, {self.input_name: batch})[0]
            for row, i in enumerate(chunk):
                results[i] = self.decode(probs[row])
        return results

    def decode(self, probs: np.ndarray) -> tuple[str, float]:
        """Greedy CTC over the allowed characters only."""
        allowed = probs[:, self.allowed]
        best = allowed.argmax(axis=1)
        chars, confidences = [], []
        previous = -1
        for step, index in enumerate(best):
            if index != previous and index != 0:
                chars.append(self.characters[index])
                confidences.append(float(allowed[step, index]))
            previous = int(index)
        if not chars:
            return "", 0.0
        return "".join(chars).strip(), float(np.mean(confidences))
