"""Recipes (``config/models/*.yaml``) and the one mapping from config to constructor arguments.

A recipe has three sections:

- ``model``: ``architecture`` (registry name), ``labels`` (label set: ``cityscapes``, ``coco``
  or a categories JSON), ``input_size`` ``[H, W]`` of the network, ``params`` (constructor
  keyword arguments besides the classes) and ``postprocess`` (inference parameters);
- ``train``: the optimisation recipe (:class:`TrainSpec`);
- ``data``: where the training data lives (overridable on the command line).

The ``model`` section also travels inside every weights file (:mod:`panoptic_ros.weights`), so
a weights file alone rebuilds its model.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from panoptic_ros.errors import PanopticError
from panoptic_ros.labels import LabelSet, get_label_set


def _check_keys(section: str, given: Mapping, allowed: set[str], required: set[str]) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise PanopticError(f'config section {section!r}: unknown keys {sorted(unknown)}; '
                            f'expected some of {sorted(allowed)}')
    missing = required - set(given)
    if missing:
        raise PanopticError(f'config section {section!r}: missing keys {sorted(missing)}')


# Model constructor arguments that only choose where initial weights come from (see
# :func:`panoptic_ros.models.backbones.build_backbone`); their default batch norm is frozen
# when pretrained.
INIT_PARAMS = ('pretrained', 'backbone_weights')


@dataclass(frozen=True)
class ModelSpec:
    """What builds a model and its post-processing."""

    architecture: str
    labels: str
    input_size: tuple[int, int]
    params: dict = field(default_factory=dict)
    postprocess: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'ModelSpec':
        if not isinstance(d, Mapping):
            raise PanopticError(f'config section "model" must be a mapping, got {d!r}')
        _check_keys('model', d, {f.name for f in dataclasses.fields(cls)},
                    {'architecture', 'labels', 'input_size'})
        size = d['input_size']
        if (not isinstance(size, (list, tuple)) or len(size) != 2 or
                not all(isinstance(v, int) and v > 0 for v in size)):
            raise PanopticError(f'model.input_size must be [height, width] in pixels, got '
                                f'{size!r}')
        for key in ('params', 'postprocess'):
            if not isinstance(d.get(key, {}), Mapping):
                raise PanopticError(f'model.{key} must be a mapping, got {d[key]!r}')
        return cls(str(d['architecture']), str(d['labels']), (int(size[0]), int(size[1])),
                   dict(d.get('params', {})), dict(d.get('postprocess', {})))

    def to_dict(self) -> dict:
        return {'architecture': self.architecture, 'labels': self.labels,
                'input_size': list(self.input_size), 'params': dict(self.params),
                'postprocess': dict(self.postprocess)}

    def label_set(self) -> LabelSet:
        return get_label_set(self.labels)

    def model_kwargs(self) -> dict:
        """Constructor arguments: the classes from the label set plus ``params``."""
        labels = self.label_set()
        return {'num_classes': labels.num_classes,
                'thing_classes': [int(c) for c in labels.thing_ids], **self.params}

    def build(self, *, initial_weights: bool = True):
        """The model. ``initial_weights=False`` when a weights file's tensors replace every
        weight anyway: the arguments that only choose initial weights (:data:`INIT_PARAMS`)
        are dropped, so no ImageNet file is read (nor need be installed), and batch norm
        keeps the kind (frozen or not) the model was trained with."""
        from panoptic_ros.models.registry import build_model, get_architecture

        _check_arguments('model.params', self.params, get_architecture(self.architecture).build)
        kwargs = self.model_kwargs()
        if not initial_weights and any(k in kwargs for k in INIT_PARAMS):
            pretrained = any(bool(kwargs.pop(k, None)) for k in INIT_PARAMS)
            kwargs.setdefault('frozen_bn', pretrained)
        return build_model(self.architecture, **kwargs)

    def postprocessor(self, **overrides):
        from panoptic_ros.models.registry import build_postprocess, get_architecture

        values = {**self.postprocess, **overrides}
        _check_arguments('model.postprocess', values,
                         get_architecture(self.architecture).postprocess)
        labels = self.label_set()
        return build_postprocess(self.architecture, void_id=labels.void_id, **values)

    def objective(self, **params):
        from panoptic_ros.models.registry import build_objective

        labels = self.label_set()
        kw = self.model_kwargs()
        return build_objective(self.architecture, num_classes=kw['num_classes'],
                               thing_classes=kw['thing_classes'], void_id=labels.void_id,
                               **params)


_NUMBER = {'int': (int,), 'float': (int, float)}


def _check_type(name: str, value: Any, annotation: str) -> None:
    """:class:`PanopticError` naming the field unless ``value`` fits ``annotation`` (the
    field's annotation as written: ``int``, ``float``, ``bool``, ``str``, any of them ``|
    None``, ``dict``, ``tuple[int, ...]``, ``tuple[float, float]``, ``float |
    Sequence[float]``)."""
    def number(v, kind: str) -> bool:
        return isinstance(v, _NUMBER[kind]) and not isinstance(v, bool)

    if annotation.endswith(' | None'):
        if value is None:
            return
        annotation = annotation[:-len(' | None')]
    if annotation in _NUMBER:
        ok, expected = number(value, annotation), f'a number ({annotation})'
    elif annotation == 'bool':
        ok, expected = isinstance(value, bool), 'true or false'
    elif annotation == 'str':
        ok, expected = isinstance(value, str), 'a string'
    elif annotation == 'dict':
        ok, expected = isinstance(value, Mapping), 'a mapping'
    elif annotation == 'float | Sequence[float]':
        ok = number(value, 'float') or (isinstance(value, (list, tuple)) and bool(value)
                                         and all(number(v, 'float') for v in value))
        expected = 'a number or a list of numbers'
    elif annotation.startswith('tuple['):
        kinds = annotation[len('tuple['):-1].split(', ')
        kind = kinds[0]
        if kinds[-1] == '...':
            ok = isinstance(value, (list, tuple)) and all(number(v, kind) for v in value)
            expected = f'a list of numbers ({kind})'
        else:
            ok = (isinstance(value, (list, tuple)) and len(value) == len(kinds)
                  and all(number(v, kind) for v in value))
            expected = f'a list of {len(kinds)} numbers ({kind})'
    else:
        raise TypeError(f'no check for the annotation {annotation!r} of {name}')
    if not ok:
        raise PanopticError(f'{name} must be {expected}, got {value!r}')


_PLAIN = ('int', 'float', 'bool', 'str', 'float | Sequence[float]')   # each also '... | None'


def _check_arguments(section: str, values: Mapping, fn) -> None:
    """Each of ``values`` checked against the annotation of ``fn``'s parameter of that name
    (a model constructor, a post-processing dataclass) where it is a plain one (``int``,
    ``float``, ``bool``, ``str``, ...), so that ``sigma: "abc"`` in a card or a recipe fails at
    load naming the field instead of in the middle of a frame; unknown names are left to the
    call itself. A builder taking only ``**kwargs`` is checked against the class it returns."""
    parameters = inspect.signature(fn).parameters
    if all(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        built = typing.get_type_hints(fn).get('return')
        parameters = inspect.signature(built).parameters if inspect.isclass(built) else {}
    for key, value in values.items():
        annotation = parameters[key].annotation if key in parameters else None
        if isinstance(annotation, str) and annotation.removesuffix(' | None') in _PLAIN:
            _check_type(f'{section}.{key}', value, annotation)


@dataclass(frozen=True)
class TrainSpec:
    """The optimisation recipe.

    ``steps`` iterations of ``batch_size`` images per process; learning rate warmed up
    linearly over ``warmup_steps`` then multiplied by ``lr_gamma`` at each of
    ``lr_milestones`` and, with ``lr_poly_power``, by ``(1 - step / steps) ** power``;
    ``crop`` ``[H, W]`` after random scaling by ``scale``.
    ``init_weights``: start from an earlier run's weights (its ``model.safetensors`` or a
    ``checkpoints/last.pt``) instead of the model's own initialisation: the later stage of a
    multi-stage schedule.
    """

    steps: int
    batch_size: int
    lr: float
    optimizer: str = 'sgd'              # sgd (momentum), adamw or adadelta
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    lr_milestones: tuple[int, ...] = ()
    lr_gamma: float = 0.1
    lr_poly_power: float = 0.0          # > 0: lr x (1 - step / steps) ** power ("poly")
    crop: tuple[int, int] = (512, 1024)
    scale: tuple[float, float] = (0.5, 2.0)
    grad_clip: float = 0.0              # max gradient norm, 0: off
    amp: bool = True                    # bfloat16 autocast on CUDA (ignored on CPU)
    seed: int = 0
    workers: int = 2                    # data loading processes per training process
    log_every: int = 20
    checkpoint_every: int = 500
    val_every: int = 1000               # 0: only at the end
    val_images: int = 50
    objective: dict = field(default_factory=dict)   # architecture objective arguments
    init_weights: str | None = None     # weights of an earlier stage to start from
    init_map: dict = field(default_factory=dict)    # model prefix -> file prefix (partial)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> 'TrainSpec':
        if not isinstance(d, Mapping):
            raise PanopticError(f'config section "train" must be a mapping, got {d!r}')
        fields = {f.name: f for f in dataclasses.fields(cls)}
        _check_keys('train', d, set(fields), {'steps', 'batch_size', 'lr'})
        kw = dict(d)
        for key, value in d.items():
            _check_type(f'train.{key}', value, fields[key].type)
        for key in ('lr_milestones', 'crop', 'scale'):
            if key in kw:
                kw[key] = tuple(kw[key])
        if kw.get('optimizer', 'sgd') not in ('sgd', 'adamw', 'adadelta'):
            raise PanopticError(f'train.optimizer must be sgd, adamw or adadelta, got '
                                f'{kw["optimizer"]!r}')
        if int(kw['steps']) <= 0 or int(kw['batch_size']) <= 0:
            raise PanopticError('train.steps and train.batch_size must be positive')
        return cls(**kw)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for key in ('lr_milestones', 'crop', 'scale'):
            d[key] = list(d[key])
        return d


@dataclass(frozen=True)
class Recipe:
    model: ModelSpec
    train: TrainSpec
    data: dict
    path: str = ''

    def to_dict(self) -> dict:
        return {'model': self.model.to_dict(), 'train': self.train.to_dict(),
                'data': dict(self.data)}


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe YAML; errors name the file and what was expected."""
    try:
        with open(path) as f:
            d = yaml.safe_load(f)
    except OSError as exc:
        raise PanopticError(f'cannot read config {path}: {exc.strerror}') from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, 'problem_mark', None)
        where = f' (line {mark.line + 1}, column {mark.column + 1})' if mark else ''
        what = getattr(exc, 'problem', None) or str(exc).splitlines()[0]
        raise PanopticError(f'config {path} is not valid YAML{where}: {what}') from exc
    if not isinstance(d, dict):
        raise PanopticError(f'config {path}: expected a mapping with sections model, train, '
                            f'data; got {type(d).__name__}')
    try:
        _check_keys('(top level)', d, {'model', 'train', 'data'}, {'model', 'train'})
        return Recipe(ModelSpec.from_dict(d['model']), TrainSpec.from_dict(d['train']),
                      dict(d.get('data') or {}), str(path))
    except (PanopticError, TypeError, ValueError) as exc:
        raise PanopticError(f'config {path}: {exc}') from exc
