"""Drawing the ``shapes`` dataset: small JPEG scenes of coloured shapes, in the VOC layout.

Each class is a (colour, shape) pair, so a model must learn both. Images are drawn from a
few "scenes", each favouring a group of classes, which gives the labels a co-occurrence
structure that graph models (SSGRL) can use. Everything is a function of the seed.
"""
from __future__ import annotations

import math
import os
import random
import shutil
import tempfile
from xml.sax.saxutils import escape

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 230)}
SHAPES = ("circle", "square", "triangle", "cross", "ring")
CLASSES = [f"{c}_{s}" for c in COLOURS for s in SHAPES]
#: classes that tend to appear together (indices into CLASSES)
SCENES = ([0, 6, 2], [5, 1, 8], [3, 9, 4], [7, 0, 5], [2, 4, 6])
VERSION = 1


def _draw(draw, shape: str, colour, cx: float, cy: float, r: float) -> None:
    box = [cx - r, cy - r, cx + r, cy + r]
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle([cx - 0.8 * r, cy - 0.8 * r, cx + 0.8 * r, cy + 0.8 * r], fill=colour)
    elif shape == "triangle":
        pts = [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6)]
        draw.polygon(pts, fill=colour)
    elif shape == "cross":
        w = r * 0.35
        draw.rectangle([cx - r, cy - w, cx + r, cy + w], fill=colour)
        draw.rectangle([cx - w, cy - r, cx + w, cy + r], fill=colour)
    elif shape == "ring":
        draw.ellipse(box, outline=colour, width=max(2, int(r * 0.35)))
    else:
        raise ValueError(shape)


def draw_image(rng: random.Random, size: int):
    """One image and its object class names."""
    from PIL import Image, ImageDraw

    base = rng.randint(90, 170)
    img = Image.new("RGB", (size, size), (base, base, base))
    draw = ImageDraw.Draw(img)
    for _ in range(size // 4):  # background clutter: faint grey specks
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        g = base + rng.randint(-40, 40)
        draw.rectangle([x, y, x + rng.uniform(1, 3), y + rng.uniform(1, 3)], fill=(g, g, g))
    scene = SCENES[rng.randrange(len(SCENES))]
    n = rng.choice((1, 2, 2, 3, 3, 4))
    names: list[str] = []
    placed: list[tuple[float, float, float]] = []
    for _ in range(n):
        k = rng.choice(scene) if rng.random() < 0.8 else rng.randrange(len(CLASSES))
        for _try in range(20):
            r = rng.uniform(0.11, 0.2) * size
            cx, cy = rng.uniform(r, size - r), rng.uniform(r, size - r)
            if all((cx - x) ** 2 + (cy - y) ** 2 > (0.8 * (r + q)) ** 2 for x, y, q in placed):
                break
        placed.append((cx, cy, r))
        colour_name, shape = CLASSES[k].split("_")
        jitter = tuple(max(0, min(255, v + rng.randint(-25, 25))) for v in COLOURS[colour_name])
        _draw(draw, shape, jitter, cx, cy, r)
        names.append(CLASSES[k])
    return img, names


def _xml(image_id: str, size: int, names: list[str]) -> str:
    objs = "".join(f"<object><name>{escape(n)}</name><difficult>0</difficult></object>" for n in names)
    return (f"<annotation><filename>{image_id}.jpg</filename><size><width>{size}</width>"
            f"<height>{size}</height><depth>3</depth></size>{objs}</annotation>\n")


def generate(root: str, *, num_train: int, num_val: int, image_size: int, seed: int) -> None:
    """Write the dataset under ``root`` (created atomically: a temp folder then a rename)."""
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".shapes-", dir=parent)
    try:
        for d in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(tmp, d))
        with open(os.path.join(tmp, "labels.txt"), "w") as f:
            f.write("\n".join(CLASSES) + "\n")
        for split, count in (("train", num_train), ("val", num_val)):
            rng = random.Random(f"{seed}-{split}")
            ids = []
            for i in range(count):
                image_id = f"{split}_{i:06d}"
                img, names = draw_image(rng, image_size)
                img.save(os.path.join(tmp, "JPEGImages", f"{image_id}.jpg"), quality=92)
                with open(os.path.join(tmp, "Annotations", f"{image_id}.xml"), "w") as f:
                    f.write(_xml(image_id, image_size, names))
                ids.append(image_id)
            with open(os.path.join(tmp, "ImageSets", "Main", f"{split}.txt"), "w") as f:
                f.write("\n".join(ids) + "\n")
        try:
            os.rename(tmp, root)
        except OSError:
            if not os.path.isdir(root):  # not a concurrent twin that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
