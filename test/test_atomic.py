"""spvis_model.atomic.atomic_write: whole or nothing, one temporary file per call."""

from __future__ import annotations

import pytest

from spvis_model.atomic import atomic_write


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "meta.json"
    path.write_bytes(b"old")

    def half(f):
        f.write(b"new, half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_a_write_inside_a_write_of_the_same_file_does_not_collide(tmp_path):
    path = tmp_path / "video_1.pt"

    def outer(f):
        f.write(b"outer")
        atomic_write(path, lambda g: g.write(b"inner"))  # another writer finishes first

    atomic_write(path, outer)
    assert path.read_bytes() == b"outer"
    assert [p.name for p in tmp_path.iterdir()] == ["video_1.pt"]
