"""Import published Mask2Former / MinVIS / DVIS checkpoints into spvis checkpoints.

    spvis import model_final_3c8ec9.pkl --from mask2former --backbone r50 --classes coco \\
        --out m2f_r50_coco.pt

or ``import_checkpoint(...)`` from Python. See docs/model.md, "Use a published model".
"""

from .classes import CLASS_LISTS, ClassList, load_class_list
from .convert import ImportResult, import_checkpoint
from .errors import ImportCheckpointError, UnsafeFileError
from .layout import RULES, SOURCES, KeyRule, map_keys
from .safe_load import ALLOWED_GLOBALS, RestrictedUnpickler, SourceFile, read_source_file

__all__ = [
    "ALLOWED_GLOBALS",
    "CLASS_LISTS",
    "RULES",
    "SOURCES",
    "ClassList",
    "ImportCheckpointError",
    "ImportResult",
    "KeyRule",
    "RestrictedUnpickler",
    "SourceFile",
    "UnsafeFileError",
    "import_checkpoint",
    "load_class_list",
    "map_keys",
    "read_source_file",
]
