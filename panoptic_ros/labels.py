"""Label sets: which classes a dataset or model has, their ids, names and colours.

Two id spaces exist for every class:

* ``class_id``: contiguous, 0..C-1, what models predict and what the semantic image stores
  (Cityscapes' ``trainId``; for COCO the index of the category in the categories list);
* ``dataset_id``: the id in the dataset's own scheme (Cityscapes ``labelId``, COCO category
  id), what COCO-format panoptic JSON files use as ``category_id``.

Cityscapes comes from cityscapesscripts' label definitions (the 19 evaluation classes), COCO
panoptic from the categories JSON shipped in ``panoptic_ros/data`` (or the user's), and any
dataset from its own COCO-style categories JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import read_json

DATA_DIR = Path(__file__).resolve().parent / 'data'
COCO_CATEGORIES_JSON = DATA_DIR / 'coco_panoptic_categories.json'
SEMANTIC_VOID = 255


@dataclass(frozen=True)
class ClassInfo:
    """One class of a label set."""

    class_id: int
    dataset_id: int
    name: str
    is_thing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class LabelSet:
    """An ordered set of classes; ``classes[i].class_id == i``."""

    name: str
    classes: tuple[ClassInfo, ...]

    def __post_init__(self) -> None:
        for i, c in enumerate(self.classes):
            if c.class_id != i:
                raise PanopticError(f'label set {self.name!r}: class {c.name!r} has class_id '
                                    f'{c.class_id}, expected contiguous id {i}')
        if len({c.dataset_id for c in self.classes}) != len(self.classes):
            raise PanopticError(f'label set {self.name!r}: duplicate dataset ids')
        if len(self.classes) > 65535:
            raise PanopticError(f'label set {self.name!r}: {len(self.classes)} classes, at most '
                                '65535 fit the semantic image')

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def void_id(self) -> int:
        """Semantic-image value of void pixels: 255 (mono8), or 65535 beyond 255 classes."""
        return SEMANTIC_VOID if self.num_classes <= SEMANTIC_VOID else 65535

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @cached_property
    def is_thing(self) -> np.ndarray:
        """``[C] bool``: True for thing classes."""
        return np.array([c.is_thing for c in self.classes], dtype=bool)

    @cached_property
    def thing_ids(self) -> np.ndarray:
        """``[T] int64`` class ids of the thing classes."""
        return np.flatnonzero(self.is_thing)

    @cached_property
    def stuff_ids(self) -> np.ndarray:
        """``[S] int64`` class ids of the stuff classes."""
        return np.flatnonzero(~self.is_thing)

    @cached_property
    def colors(self) -> np.ndarray:
        """``[C, 3] uint8`` RGB colour of each class."""
        return np.array([c.color for c in self.classes], dtype=np.uint8).reshape(-1, 3)

    @cached_property
    def dataset_ids(self) -> np.ndarray:
        """``[C] int64`` dataset id of each class (class id -> dataset id)."""
        return np.array([c.dataset_id for c in self.classes], dtype=np.int64)

    @cached_property
    def dataset_to_class(self) -> np.ndarray:
        """Lookup table dataset id -> class id (``void_id`` for ids not in the set).

        ``[max_dataset_id + 1] uint16``; index it with a dataset-id image to get class ids.
        """
        lut = np.full(int(self.dataset_ids.max(initial=0)) + 1, self.void_id, dtype=np.uint16)
        lut[self.dataset_ids] = np.arange(self.num_classes, dtype=np.uint16)
        return lut

    def class_of_dataset_id(self, dataset_id: int) -> int:
        """Class id of a dataset id; raises :class:`PanopticError` when unknown."""
        lut = self.dataset_to_class
        if 0 <= dataset_id < len(lut) and lut[dataset_id] != self.void_id:
            return int(lut[dataset_id])
        raise PanopticError(f'category id {dataset_id} is not in label set {self.name!r} '
                            f'(known: {sorted(int(i) for i in self.dataset_ids)})')

    def to_categories(self) -> list[dict]:
        """COCO panoptic ``categories`` entries (``id`` is the dataset id)."""
        return [{'id': c.dataset_id, 'name': c.name, 'isthing': int(c.is_thing),
                 'color': list(c.color)} for c in self.classes]

    @classmethod
    def from_categories(cls, categories: Iterable[Mapping], name: str) -> 'LabelSet':
        """Build from COCO-style category dicts (``id``, ``name``, ``isthing``, ``color``).

        Class ids follow the order of the list; a missing colour gets a generated one.
        """
        classes = []
        for i, cat in enumerate(categories):
            if not isinstance(cat, Mapping):
                raise PanopticError(f'label set {name!r}: category {i} must be an object with '
                                    f'"id", "name" and "isthing", got {cat!r}')
            try:
                dataset_id, cat_name = int(cat['id']), str(cat['name'])
                is_thing = bool(int(cat.get('isthing', 0)))
            except (KeyError, TypeError, ValueError) as exc:
                raise PanopticError(
                    f'label set {name!r}: category {i} must have integer "id", "name" and '
                    f'"isthing" 0/1, got {dict(cat)!r}') from exc
            color = cat.get('color')
            try:
                color = tuple(int(v) for v in color) if color else _generated_color(i)
            except (TypeError, ValueError):
                color = None
            if color is None or len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise PanopticError(f'label set {name!r}: category {cat_name!r} "color" must be '
                                    f'three integers 0-255, got {cat.get("color")!r}')
            classes.append(ClassInfo(i, dataset_id, cat_name, is_thing, color))
        if not classes:
            raise PanopticError(f'label set {name!r}: no categories')
        return cls(name=name, classes=tuple(classes))


def _generated_color(index: int) -> tuple[int, int, int]:
    rng = np.random.default_rng(index + 7919)
    return tuple(int(v) for v in rng.integers(40, 256, size=3))


def cityscapes() -> LabelSet:
    """The 19 Cityscapes evaluation classes (11 stuff, 8 things) in trainId order.

    Ids, names and colours come from ``cityscapesscripts.helpers.labels``.
    """
    from cityscapesscripts.helpers.labels import labels as cs_labels

    evaluated = sorted((lab for lab in cs_labels if not lab.ignoreInEval and
                        0 <= lab.trainId < 255), key=lambda lab: lab.trainId)
    return LabelSet('cityscapes', tuple(
        ClassInfo(lab.trainId, lab.id, lab.name, bool(lab.hasInstances), tuple(lab.color))
        for lab in evaluated))


def coco_panoptic(categories_json: str | Path | None = None) -> LabelSet:
    """COCO panoptic: 133 categories (80 things, 53 stuff), from a categories JSON.

    Without an argument, the file shipped with panoptic_ros is used.
    """
    return from_categories_json(categories_json or COCO_CATEGORIES_JSON, name='coco_panoptic')


def from_categories_json(path: str | Path, name: str | None = None) -> LabelSet:
    """A label set from a JSON file: a list of categories or a dict with ``categories``."""
    path = Path(path)
    data = read_json(path, 'categories JSON')
    if isinstance(data, dict):
        data = data.get('categories')
    if not isinstance(data, list):
        raise PanopticError(f'{path}: expected a list of categories or an object with a '
                            '"categories" list')
    try:
        return LabelSet.from_categories(data, name=name or path.stem)
    except PanopticError as exc:
        raise PanopticError(f'{path}: {exc}') from None


_BUILTIN = {'cityscapes': cityscapes, 'coco_panoptic': coco_panoptic, 'coco': coco_panoptic}


def get_label_set(spec: str | Path) -> LabelSet:
    """A label set by name (``cityscapes``, ``coco_panoptic``) or categories JSON path."""
    if str(spec) in _BUILTIN:
        return _BUILTIN[str(spec)]()
    if Path(spec).suffix == '.json':
        return from_categories_json(spec)
    raise PanopticError(f'unknown label set {spec!r}: expected one of {sorted(_BUILTIN)} or a '
                        'categories JSON file')


def categories_by_id(categories: Sequence[Mapping]) -> dict[int, Mapping]:
    """``{category id: category}`` from a COCO ``categories`` list."""
    return {int(c['id']): c for c in categories}
