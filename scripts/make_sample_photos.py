"""Write a small sample event into a folder: the real test faces plus generated scenery.

Used by the README's first command (scripts/quickstart.sh) so a fresh checkout has something
to ingest. The faces come from tests/data (see tests/data/ORIGIN.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

from PIL import Image, ImageDraw

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def make_scenery(path: Path, seed: int) -> None:
    image = Image.new("RGB", (1600, 1067), (40 + seed * 20 % 200, 120, 180))
    draw = ImageDraw.Draw(image)
    for band in range(0, 1067, 60):
        draw.rectangle([0, band, 1600, band + 25], fill=(seed * 30 % 255, band % 255, 90))
    image.save(path, "JPEG", quality=85)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--scenery", type=int, default=8, help="generated photos without faces")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    for source in sorted(DATA.glob("*.jpg")):
        shutil.copyfile(source, args.folder / source.name)
    for seed in range(args.scenery):
        make_scenery(args.folder / f"scenery_{seed:02d}.jpg", seed)
    # Backdate: ingest leaves files modified in the last seconds for its next run.
    past = time.time() - 60
    for path in args.folder.iterdir():
        os.utime(path, (past, past))
    print(f"sample photos in {args.folder}")


if __name__ == "__main__":
    main()
