"""COCO panoptic datasets: ``images/``, ``panoptic_<split>.json`` and its PNG folder."""

from __future__ import annotations

from pathlib import Path

from panoptic_ros.datasets.cityscapes import read_rgb
from panoptic_ros.datasets.sample import Sample, sample_from_panoptic
from panoptic_ros.encoding import read_id_png
from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import read_json
from panoptic_ros.labels import LabelSet


class CocoPanopticDataset:
    """Indexable dataset of :class:`Sample` from COCO panoptic files.

    Args:
        image_dir: folder of the images (``images[].file_name``).
        panoptic_json: annotations (``annotations[].segments_info``, ``categories``).
        panoptic_dir: folder of the RGB-id PNGs (``annotations[].file_name``).
        label_set: classes; default: the JSON's own categories.
    """

    def __init__(self, image_dir: str | Path, panoptic_json: str | Path,
                 panoptic_dir: str | Path, label_set: LabelSet | None = None) -> None:
        self.image_dir, self.panoptic_dir = Path(image_dir), Path(panoptic_dir)
        data = read_json(panoptic_json, 'panoptic JSON')
        if 'annotations' not in data or 'images' not in data:
            raise PanopticError(f'{panoptic_json}: expected COCO panoptic JSON with "images" '
                                'and "annotations"')
        self.label_set = label_set or LabelSet.from_categories(
            data.get('categories') or [], name=Path(panoptic_json).stem)
        files = {img['id']: img['file_name'] for img in data['images']}
        self.items = [(files[a['image_id']], a) for a in data['annotations']]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Sample:
        file_name, ann = self.items[index]
        image = read_rgb(self.image_dir / file_name)
        ids = read_id_png(self.panoptic_dir / ann['file_name'])
        if ids.shape != image.shape[:2]:
            raise PanopticError(f'{ann["file_name"]}: panoptic PNG {ids.shape} and image '
                                f'{image.shape[:2]} sizes differ')
        return sample_from_panoptic(image, ids, ann['segments_info'], self.label_set,
                                    Path(file_name).stem)
