"""Facts about the published model zoos: test-time preprocessing, and the clip-level models
that are refused.

Preprocessing of every published Mask2Former / MinVIS / DVIS config: RGB input
(``INPUT.FORMAT: "RGB"``), ``PIXEL_MEAN [123.675, 116.280, 103.530]``, ``PIXEL_STD
[58.395, 57.120, 57.375]`` (the torchvision ImageNet statistics on the 0..255 scale),
detectron2's ResizeShortestEdge at test time with ``MAX_SIZE_TEST`` 1333 (detectron2's default;
no config changes it) and ``MIN_SIZE_TEST``:

- Mask2Former COCO instance segmentation: 800 (detectron2's default);
- MinVIS: 360 (R50; Swin-L on YouTube-VIS 2021), 480 (Swin-L on YouTube-VIS 2019 and OVIS);
- DVIS: 360 (R50), 480 (Swin-L); the ``*_720p`` configs use 720 (pass ``--min-size 720``);
- DVIS++ (recognised by its ``sem_seg_head.predictor.reid_embed`` head): 480.
"""

from __future__ import annotations

from pathlib import Path

from spvis_model.config import InputConfig

from .errors import ImportCheckpointError

PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]
MAX_SIZE_TEST = 1333

#: Mask2Former's own video instance segmentation models (video_maskformer2_*): their decoder
#: attends across the frames of a clip, a different architecture. Model-zoo file names.
CLIP_LEVEL_FILES: dict[str, str] = {
    "model_final_34112b.pkl": "ytvis_2019/video_maskformer2_R50_bs16_8ep",
    "model_final_a34dca.pkl": "ytvis_2019/video_maskformer2_R101_bs16_8ep",
    "model_final_26fffe.pkl": "ytvis_2019/video_maskformer2_swin_tiny_bs16_8ep",
    "model_final_4a5174.pkl": "ytvis_2019/video_maskformer2_swin_small_bs16_8ep",
    "model_final_221a8a.pkl": "ytvis_2019/video_maskformer2_swin_base_IN21k_384_bs16_8ep",
    "model_final_c5c739.pkl": "ytvis_2019/video_maskformer2_swin_large_IN21k_384_bs16_8ep",
    "model_final_b8aae2.pkl": "ytvis_2021/video_maskformer2_R50_bs16_8ep",
    "model_final_6efd7a.pkl": "ytvis_2021/video_maskformer2_R101_bs16_8ep",
    "model_final_965185.pkl": "ytvis_2021/video_maskformer2_swin_tiny_bs16_8ep",
    "model_final_0dec91.pkl": "ytvis_2021/video_maskformer2_swin_small_bs16_8ep",
    "model_final_a9b925.pkl": "ytvis_2021/video_maskformer2_swin_base_IN21k_384_bs16_8ep",
    "model_final_4da256.pkl": "ytvis_2021/video_maskformer2_swin_large_IN21k_384_bs16_8ep",
}
#: Class counts of the video datasets (YouTube-VIS 2019 / 2021: 40, OVIS: 25).
VIDEO_CLASS_COUNTS = (40, 25)

CLIP_LEVEL_MESSAGE = (
    "Mask2Former's own video models (video_maskformer2_*, its VIS branch) are clip-level: "
    "their decoder attends across all frames of a clip at once, which an online per-frame "
    "node cannot run, so spvis does not import them. Use a per-frame model trained on video "
    "data instead: MinVIS (--from minvis) or DVIS / DVIS++ (--from dvis), or a Mask2Former "
    "COCO instance-segmentation model (--from mask2former --classes coco). If this file is in "
    "fact a per-frame segmenter with the same layout, import it with --from minvis.")


def refuse_clip_level(path: Path, source: str, num_classes: int) -> None:
    """Raise ImportCheckpointError for Mask2Former's clip-level video models.

    Recognised by the published file name, or, with ``--from mask2former``, by a class head
    of a video dataset's size (41 or 26 logits): Mask2Former's image models are COCO,
    Cityscapes, ADE20K or Mapillary, none with 40 or 25 classes.
    """
    if path.name in CLIP_LEVEL_FILES:
        raise ImportCheckpointError(f"{path}: this is Mask2Former's {CLIP_LEVEL_FILES[path.name]} "
                                    f"(by its model-zoo file name). {CLIP_LEVEL_MESSAGE}")
    if source == "mask2former" and num_classes in VIDEO_CLASS_COUNTS:
        raise ImportCheckpointError(
            f"{path}: --from mask2former, but the class head has {num_classes} classes "
            "(+1), the size of YouTube-VIS / OVIS: Mask2Former's models for those are its "
            f"clip-level video models. {CLIP_LEVEL_MESSAGE}")


def default_input(source: str, backbone: str, classes: str, *,
                  dvis_plus: bool = False) -> InputConfig:
    """The test-time preprocessing the source model was evaluated with (see the module
    docstring); ``classes`` is the ``--classes`` value (a built-in list name or a file),
    ``dvis_plus`` whether the checkpoint has DVIS++'s re-identification head."""
    if source == "mask2former":
        min_size = 800
    elif dvis_plus or (backbone == "swin-l"
                       and not (source == "minvis" and classes == "ytvis2021")):
        min_size = 480
    else:
        min_size = 360
    return InputConfig(max_size=MAX_SIZE_TEST, min_size=min_size, pixel_mean=list(PIXEL_MEAN),
                       pixel_std=list(PIXEL_STD), channel_order="rgb")
