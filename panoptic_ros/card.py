"""``panoptic card``: turn a training run's weights into a shippable model with its card.

- ``--out F [--fp16]``: copy the weights (optionally as float16) with their card;
- ``--eval results.json``: put the metrics ``panoptic eval --out`` measured into the card
  and write the human-readable card ``<weights>.md`` next to the file, with its sha256;
- ``--postprocess name=value ...``: set post-processing parameters (e.g. thresholds tuned on a
  validation split) in the card's spec, which every engine and the node then use;
- ``--param name=value ...``: set model arguments that hold no weights (e.g. the contours
  model's ``output_stride``); the model is rebuilt with them and the weights must fit it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from panoptic_ros.errors import PanopticError


def _metrics(results: dict, labels) -> dict:
    names = dict(zip((int(i) for i in labels.dataset_ids), labels.names))
    return {
        'pq': round(100 * results['All']['pq'], 2), 'sq': round(100 * results['All']['sq'], 2),
        'rq': round(100 * results['All']['rq'], 2),
        'pq_things': round(100 * results['Things']['pq'], 2),
        'pq_stuff': round(100 * results['Stuff']['pq'], 2),
        'miou': round(100 * results['miou'], 2),
        'per_class_pq': {names[int(k)]: round(100 * v['pq'], 2)
                         for k, v in results['per_class'].items()},
        'eval': results.get('meta', {}),
    }


def _curve(training: dict) -> list[str]:
    """The learning curve: validation PQ during training (the run's own val split)."""
    history = training.get('history') or []
    if not history:
        return []
    per_step = training.get('train_seconds', 0) / max(training.get('steps') or 1, 1)
    lines = ['## Learning curve', '',
             f'Validation during training on {training.get("val_images", "?")} images of the '
             "recipe's val split (not the held-out images of the metrics below); minutes of "
             'training time (validation excluded):', '',
             '| step | min | PQ | PQ things | PQ stuff | mIoU |', '|---:|---:|---:|---:|---:|---:|']
    lines += [f'| {h["step"]} | {h.get("seconds", h["step"] * per_step) / 60:.0f} | '
              f'{100 * h["pq"]:.1f} | '
              f'{100 * h["pq_things"]:.1f} | {100 * h["pq_stuff"]:.1f} | {100 * h["miou"]:.1f} |'
              for h in history]
    return lines + ['']


def _markdown(path: Path, card: dict, sha256: str) -> str:
    spec = card['spec']
    m, tr = card.get('metrics', {}), card.get('training', {})
    ev = m.get('eval', {})
    lines = [
        f'# {path.stem}',
        '',
        f'Architecture `{spec.architecture}` ({card.get("paper", "")}), parameters '
        f'`{json.dumps(spec.params)}`; network input {spec.input_size[0]}x'
        f'{spec.input_size[1]} RGB (the node resizes camera images to it); label set '
        f'`{spec.labels}`, {len(card["classes"])} classes: {", ".join(card["classes"])}.',
        '',
        f'- File: `{path.name}`, {path.stat().st_size / 2 ** 20:.1f} MiB, weights in '
        f'{card.get("dtype")}, sha256 `{sha256}`',
        f'- Recipe: `{card.get("recipe_file", "")}`',
        *([f'- Model arguments set after training with `panoptic card --param`: '
           f'`{json.dumps(card["params_set"])}`'] if card.get('params_set') else []),
        f'- Post-processing: `{json.dumps(spec.postprocess)}`'
        + (f' (set after training with `panoptic card --postprocess`: '
           f'`{json.dumps(card["postprocess_set"])}`)' if card.get('postprocess_set') else ''),
        f'- Training: {tr.get("steps")} steps in {tr.get("train_seconds", 0) / 60:.0f} min on '
        f'{tr.get("hardware")} (torch {tr.get("torch")}), '
        f'{tr.get("train_seconds", 0) / max(tr.get("steps") or 1, 1):.2f} s per step of '
        f'{card.get("recipe", {}).get("train", {}).get("batch_size", "?")} images',
        *([f'- Starts from `{init}` (an earlier stage, whose own training is not counted '
           'above)'] if (init := card.get('recipe', {}).get('train', {}).get('init_weights'))
          else []),
        '',
        *_curve(tr),
        '## Metrics',
        '',
        f'{ev.get("images")} images of `{ev.get("data")}` (split `{ev.get("split")}`), engine '
        f'{ev.get("engine")}, measured with `panoptic eval`:',
        '',
        '| PQ | SQ | RQ | PQ things | PQ stuff | mIoU |',
        '|---|---|---|---|---|---|',
        f'| {m.get("pq")} | {m.get("sq")} | {m.get("rq")} | {m.get("pq_things")} | '
        f'{m.get("pq_stuff")} | {m.get("miou")} |',
        '',
        '| class | PQ |',
        '|---|---|',
    ]
    lines += [f'| {k} | {v} |' for k, v in m.get('per_class_pq', {}).items()]
    return '\n'.join(lines) + '\n'


def _assignment(text: str, flag: str) -> tuple[str, object]:
    """``name=value`` with a JSON value (``0.25``, ``true``) or else a string."""
    name, sep, value = text.partition('=')
    if not sep or not name:
        raise PanopticError(f'{flag} expects name=value, got {text!r}')
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _set_params(model, spec, overrides: dict):
    """``model`` rebuilt with ``overrides`` of its arguments, holding the same weights; a
    :class:`PanopticError` when the new arguments change what weights the model has."""
    import dataclasses

    from panoptic_ros.models.backbones.norm import state_dict_problems

    spec = dataclasses.replace(spec, params={**spec.params, **overrides})
    new = spec.build(initial_weights=False)
    problems = state_dict_problems(new.state_dict(), model.state_dict())
    if problems:
        raise PanopticError(f'--param {overrides} changes the weights of the model, not only '
                            f'how it runs: ' + '; '.join(problems))
    new.load_state_dict(model.state_dict())
    return new.eval(), spec


def run_card(args: argparse.Namespace) -> int:
    from panoptic_ros.export.artifacts import file_sha256
    from panoptic_ros.fileio import atomic_write_text
    from panoptic_ros.weights import load_model, read_card, save_weights

    src = Path(args.weights)
    card = read_card(src)
    dst = Path(args.out) if args.out else src
    model, spec, _ = load_model(src)
    half = args.fp16 or card.get('dtype') == 'float16'
    extra = {k: v for k, v in card.items() if k not in ('spec', 'model', 'classes', 'dtype')}
    if args.paper:
        extra['paper'] = args.paper
    if args.param:
        params = dict(_assignment(a, '--param') for a in args.param)
        model, spec = _set_params(model, spec, params)
        extra['params_set'] = {**extra.get('params_set', {}), **params}
    if args.postprocess:
        import dataclasses

        overrides = dict(_assignment(a, '--postprocess') for a in args.postprocess)
        spec = dataclasses.replace(spec, postprocess={**spec.postprocess, **overrides})
        spec.postprocessor()               # unknown names or bad values fail here
        extra['postprocess_set'] = {**extra.get('postprocess_set', {}), **overrides}
    if args.eval:
        from panoptic_ros.fileio import read_json

        results = read_json(args.eval, 'panoptic eval results')
        if 'miou' not in results or 'All' not in results:
            raise PanopticError(f'{args.eval}: expected the JSON written by panoptic eval --out')
        if results.get('meta', {}).get('weights') not in (None, str(src), str(dst)):
            raise PanopticError(f'{args.eval} evaluated {results["meta"]["weights"]}, not {src}')
        extra['metrics'] = _metrics(results, spec.label_set())
    save_weights(dst, model, spec, extra, half=half)
    card = read_card(dst)
    if args.eval:
        sha = file_sha256(dst)
        atomic_write_text(dst.with_suffix('.md'), _markdown(dst, card, sha))
        print(f'card written into {dst} and {dst.with_suffix(".md")} (sha256 {sha})')
    else:
        print(f'weights written to {dst} ({"float16" if half else "float32"})')
    return 0
