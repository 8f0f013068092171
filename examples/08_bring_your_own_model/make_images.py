"""A synthetic image folder standing in for your own photos: 64x64 RGB PNGs, one subfolder per class,
train/ and test/ splits. Class = the colour of a fruit-like blob (red, yellow, green, purple, each hue
jittered) on a random dim background with a second, smaller blob of another colour as a distractor; size,
position, shape and pixel noise are random. Seeded, nothing downloads.

    python make_images.py OUT_DIR      (NFT_EXAMPLE_QUICK=1: fewer images)
"""

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {"red": (200, 30, 30), "yellow": (220, 200, 40), "green": (40, 170, 50), "purple": (120, 40, 160)}
SIZE = 64
QUICK = bool(os.environ.get("NFT_EXAMPLE_QUICK"))
PER_CLASS = {"train": 40 if QUICK else 200, "test": 16 if QUICK else 50}


def blob(rng: np.random.Generator, img: np.ndarray, colour, radius: tuple[float, float]) -> None:
    """Paints an ellipse of ``colour`` (jittered) at a random place of ``img`` (in place)."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    cy, cx = rng.uniform(16, SIZE - 16, 2)
    ry, rx = rng.uniform(*radius, 2)
    inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    img[inside] = np.asarray(colour) + rng.normal(0, 15, 3)


def picture(rng: np.random.Generator, k: int) -> np.ndarray:
    """One uint8 (SIZE, SIZE, 3) image of class k."""
    colours = list(CLASSES.values())
    img = np.empty((SIZE, SIZE, 3))
    img[:] = rng.uniform(20, 110, 3)
    blob(rng, img, colours[(k + rng.integers(1, len(colours))) % len(colours)], (4, 7))  # the distractor
    blob(rng, img, colours[k], (9, 15))
    return np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)


def main(out: Path) -> None:
    rng = np.random.default_rng(0)
    for split, n in PER_CLASS.items():
        for k, name in enumerate(CLASSES):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(picture(rng, k)).save(folder / f"{i:04d}.png")
    print(f"wrote {out}: {len(CLASSES)} classes, {PER_CLASS['train']} train and {PER_CLASS['test']} test PNGs "
          f"per class, {SIZE}x{SIZE} RGB")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
