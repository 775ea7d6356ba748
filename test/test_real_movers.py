"""People cut out of registered photos walking across synthetic videos (`movers`): the cut-outs,
what they change in a video (pixels only: never a label), determinism, the config rules and
the validation set that uses them.

The cut-outs come from photos of Debian's opencv-doc, matplotlib and scikit-image; the tests
skip (saying how to install them) without those.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from test_real_media import need

from spvis_model.config import ConfigError
from spvis_model.data.real_media import MEDIA, media_frame
from spvis_model.data.real_movers import CUTOUTS, cutout_names, cutout_rgba
from spvis_model.data.synthetic import (
    MOVER_FIELDS,
    SyntheticConfig,
    SyntheticVideo,
    dataset_json,
    generate_video,
)

VAL_PHOTOS = ("messi", "happyfish", "starry_night", "graffiti", "rubberwhale", "grace_hopper")
WITH_OBJECTS = SyntheticConfig(width=160, height=120, videos=3, frames=6, objects=(2, 3),
                               occluders=(1, 1), movers=(3, 3), mover_size=(0.3, 0.5), seed=5)


def need_cutouts() -> None:
    need(*sorted({c.media for c in CUTOUTS.values()}))


def test_cutouts_are_people_of_one_role_each_and_deterministic():
    need_cutouts()
    # Validation people (the defaults) and training people come from different photos.
    assert set(cutout_names("val")) == {"messi_player", "grace_hopper_person"}
    assert set(cutout_names("train")) == {"basketball_right", "astronaut_person",
                                          "bikes_cyclist", "carphone_man"}
    assert set(SyntheticConfig().mover_cutouts) == set(cutout_names("val"))
    assert not {CUTOUTS[n].media for n in cutout_names("val")} & {
        CUTOUTS[n].media for n in cutout_names("train")}
    for name in CUTOUTS:
        rgba = cutout_rgba(name)
        assert rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4
        assert not rgba.flags.writeable
        alpha = rgba[:, :, 3]
        assert set(np.unique(alpha).tolist()) == {0, 255}
        # Cropped to the person: every border row and column touches it.
        assert alpha[0].any() and alpha[-1].any() and alpha[:, 0].any() and alpha[:, -1].any()
        assert 0.2 < (alpha > 0).mean() < 0.95, name
        cutout_rgba.cache_clear()
        assert np.array_equal(cutout_rgba(name), rgba), f"{name}: GrabCut is not repeatable"
    with pytest.raises(ValueError, match="cut-out 'nobody' is not one of"):
        cutout_rgba("nobody")


def test_video_cutouts_come_from_their_frame():
    need_cutouts()
    for name in ("bikes_cyclist", "carphone_man"):
        cut = CUTOUTS[name]
        assert cut.frame > 0 and MEDIA[cut.media].kind == "video"
        rgba = cutout_rgba(name)
        x0, y0, x1, y1 = cut.box
        assert rgba.shape[0] <= y1 - y0 and rgba.shape[1] <= x1 - x0
        sprite = np.ascontiguousarray(rgba[:, :, :3])
        mask = np.repeat(rgba[:, :, 3:] // 255, 3, axis=2)
        own, first = (cv2.matchTemplate(media_frame(cut.media, k)[y0:y1, x0:x1], sprite,
                                        cv2.TM_SQDIFF, mask=mask).min()
                      for k in (cut.frame, 0))
        # The sprite's pixels lie in the box of its own frame, not of frame 0 (float32 sums:
        # "exact" is a few units against the millions of a wrong frame).
        assert float(own) < 1e-4 * float(first), name


def test_movers_change_pixels_never_labels():
    need_cutouts()
    without = dataclasses.replace(WITH_OBJECTS, movers=(0, 0))
    changed = 0
    for index in range(WITH_OBJECTS.videos):
        frames_m, stamps_m, tracks_m = generate_video(WITH_OBJECTS, index)
        frames_0, stamps_0, tracks_0 = generate_video(without, index)
        assert stamps_m == stamps_0
        # The labelled objects, their masks and the other streams are those of the video
        # without movers: the movers have a random stream of their own and walk behind.
        assert [dataclasses.asdict(t) for t in tracks_m] == [dataclasses.asdict(t)
                                                             for t in tracks_0]
        changed += sum(int((a != b).any()) for a, b in zip(frames_m, frames_0, strict=True))
        assert SyntheticVideo(WITH_OBJECTS, index).movers and not SyntheticVideo(
            without, index).movers
    assert changed >= WITH_OBJECTS.videos * WITH_OBJECTS.frames // 2


def test_movers_walk_in_object_free_clips_of_the_val_photos():
    need_cutouts()
    need(*VAL_PHOTOS)
    cfg = SyntheticConfig(width=160, height=120, videos=2, frames=5, seed=54, empty_prob=1.0,
                          real_video_prob=0.0, real_media=VAL_PHOTOS, movers=(2, 2),
                          speed=(1.0, 1.0))
    for index in range(cfg.videos):
        video = SyntheticVideo(cfg, index)
        assert video.empty and len(video.movers) == 2
        frames, _, tracks = generate_video(cfg, index)
        assert tracks == []
        still = dataclasses.replace(cfg, movers=(0, 0))
        frames_0, _, _ = generate_video(still, index)
        assert any((a != b).any() for a, b in zip(frames, frames_0, strict=True))
        again, _, _ = generate_video(cfg, index)
        assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))


def test_mover_options_left_out_of_info_config_until_used():
    off = dataset_json(dataclasses.replace(WITH_OBJECTS, movers=(0, 0)), [], [])
    assert not set(MOVER_FIELDS) & set(off["info"]["config"])
    on = dataset_json(WITH_OBJECTS, [], [])["info"]["config"]
    assert set(MOVER_FIELDS) <= set(on)
    assert SyntheticConfig(**on) == WITH_OBJECTS


@pytest.mark.parametrize(("fields", "words"), [
    ({"movers": (3, 1)}, "movers = (3, 1): min must be <= max"),
    ({"movers": (0, 17)}, "movers = (0, 17): both ends must be in [0, 16]"),
    ({"mover_cutouts": ("nobody",)}, "mover_cutouts = ('nobody',): unknown ['nobody']"),
    ({"mover_size": (0.0, 0.2)}, "mover_size = (0.0, 0.2): both ends must be in [0.02, 1.0]"),
    # The cut-outs are val media: a training set (train real_media) must not get them.
    ({"movers": (1, 2), "empty_prob": 0.5, "real_media": ("bikes",)},
     "mover_cutouts = ('messi_player', 'grace_hopper_person'): are val media while "
     "real_media are train"),
])
def test_mover_config_errors_name_field_and_value(fields, words):
    with pytest.raises(ConfigError) as err:
        SyntheticConfig(**fields)
    assert words in str(err.value)
