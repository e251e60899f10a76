"""``panoptic train``: single process on CPU or GPU, or one process per GPU under ``torchrun``.

- Data: :mod:`.data` (batches depend on seed and step only).
- Optimisation: SGD with momentum or AdamW, linear warm-up then step decay, optional gradient
  clipping, bfloat16 autocast on CUDA (``train.amp``).
- Checkpoints: ``<out>/checkpoints/last.pt`` every ``checkpoint_every`` steps, on Ctrl-C and at
  the end, written atomically; ``resume`` restores model, optimizer, scheduler, step and RNG
  states, so a killed run continues as if it had not stopped.
- Logs: TensorBoard under ``<out>/tensorboard`` (losses, learning rate, validation PQ/mIoU), a
  progress bar, and ``<out>/summary.json``.
- Result: ``<out>/model.safetensors`` with its card (see :mod:`panoptic_ros.weights`).
"""

from __future__ import annotations

import os
import platform
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from panoptic_ros.config import Recipe
from panoptic_ros.errors import PanopticError
from panoptic_ros.fileio import atomic_write_json
from panoptic_ros.models.backbones.norm import state_dict_problems
from panoptic_ros.training.checkpoint import (load_checkpoint, rng_state, save_checkpoint,
                                             set_rng_state)
from panoptic_ros.training.data import StepSampler, TrainingSet, collate


def _dist_setup(device: str | None) -> tuple[int, int, torch.device]:
    world = int(os.environ.get('WORLD_SIZE', '1'))
    if world == 1:
        return 0, 1, torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    rank, local = int(os.environ['RANK']), int(os.environ.get('LOCAL_RANK', '0'))
    if torch.cuda.is_available() and device != 'cpu':
        torch.cuda.set_device(local)
        dev, backend = torch.device('cuda', local), 'nccl'
    else:
        dev, backend = torch.device('cpu'), 'gloo'
    dist.init_process_group(backend)
    return rank, world, dev


def _lr_factor(train) -> callable:
    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / train.warmup_steps) if train.warmup_steps else 1.0
        poly = (1 - min(step, train.steps) / train.steps) ** train.lr_poly_power \
            if train.lr_poly_power else 1.0
        return warm * poly * train.lr_gamma ** sum(step >= m for m in train.lr_milestones)
    return factor


def _hardware(device: torch.device, world: int) -> str:
    if device.type == 'cuda':
        return f'{world} x {torch.cuda.get_device_name(device)}'
    return f'{world} x CPU ({os.cpu_count()} cores, {platform.processor() or platform.machine()})'


def open_dataset(data: dict, root: str | Path, split: str, labels):
    """The dataset a recipe's ``data`` section names (``format``: cityscapes or coco)."""
    fmt = data.get('format', 'cityscapes')
    if fmt == 'cityscapes':
        from panoptic_ros.datasets.cityscapes import CityscapesDataset

        return CityscapesDataset(root, split)
    if fmt == 'coco':
        from panoptic_ros.datasets.coco import CocoPanopticDataset

        root = Path(root)
        ann = root / 'annotations'
        return CocoPanopticDataset(root / f'{split}2017', ann / f'panoptic_{split}2017.json',
                                   ann / f'panoptic_{split}2017', label_set=labels)
    raise PanopticError(f'data.format must be cityscapes or coco, got {fmt!r}')


def validate(model: torch.nn.Module, recipe: Recipe, dataset, num: int) -> dict:
    """PQ and mIoU of ``model`` on the first ``num`` images of ``dataset``."""
    from panoptic_ros.engines.torch_engine import TorchEngine
    from panoptic_ros.evaluation.evaluate import evaluate
    from panoptic_ros.inference import Predictor

    device = next(model.parameters()).device
    engine = TorchEngine(model, recipe.model.input_size, device=device)
    predictor = Predictor(engine, recipe.model)
    samples = (dataset[i] for i in range(min(num, len(dataset))))
    results, _ = evaluate(predictor, samples, recipe.model.label_set(), batch_size=1)
    model.train()
    return results


def _initial_state(path: str, model: torch.nn.Module, init_map: dict | None = None) -> dict:
    """The tensors of an earlier stage (``train.init_weights``): a weights file written by
    ``panoptic train``/``card`` or a training checkpoint. They must fit ``model`` exactly; with
    ``init_map`` (``{model prefix: file prefix}``) the file's tensors under each file prefix
    must fit the model's under the model prefix, and the rest keeps ``model``'s own values."""
    if str(path).endswith('.safetensors'):
        from panoptic_ros.weights import read_weights

        state = read_weights(path)[0]
    else:
        state = load_checkpoint(path)['model']
    own = model.state_dict()
    if init_map:
        mapped = {}
        for dst, src in init_map.items():
            part = {dst + k[len(src):]: v for k, v in state.items() if k.startswith(src)}
            if not part:
                raise PanopticError(f'train.init_map: {path} has no tensors under {src!r}')
            mapped.update(part)
        prefixes = tuple(init_map)
        problems = state_dict_problems({k: v for k, v in own.items()
                                        if k.startswith(prefixes)}, mapped)
        state = {**own, **mapped}
    else:
        problems = state_dict_problems(own, state)
    if problems:
        raise PanopticError(f'train.init_weights {path} does not fit this recipe\'s model: '
                            + '; '.join(problems))
    return state


def train(recipe: Recipe, data_root: str | Path, out: str | Path, *, resume: bool = False,
          device: str | None = None, progress: bool = True) -> dict:
    """Train ``recipe`` on the dataset at ``data_root``; returns the summary."""
    import cv2
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from panoptic_ros.datasets.transforms import training_transforms
    from panoptic_ros.weights import save_weights

    cv2.setNumThreads(1)        # loader workers are forked from here (see parallel.py)
    out = Path(out)
    rank, world, dev = _dist_setup(device)
    main = rank == 0
    tr = recipe.train
    labels = recipe.model.label_set()
    ckpt_path = out / 'checkpoints' / 'last.pt'
    state = None
    if resume:
        state = load_checkpoint(ckpt_path)
        if state['recipe'] != recipe.to_dict():
            raise PanopticError(f'--resume: the recipe differs from the one {ckpt_path} was '
                                f'trained with; use a new --out or the same config')
    elif main and ckpt_path.exists():
        raise PanopticError(f'{out} already holds a run ({ckpt_path}); pass --resume to '
                            f'continue it or choose another --out')

    torch.manual_seed(tr.seed)
    model = recipe.model.build().to(dev)
    if tr.init_weights and state is None:
        model.load_state_dict(_initial_state(tr.init_weights, model, tr.init_map))
    objective = recipe.model.objective(**tr.objective)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{'params': decay, 'weight_decay': tr.weight_decay},
              {'params': no_decay, 'weight_decay': 0.0}]
    if tr.optimizer == 'sgd':
        opt = torch.optim.SGD(groups, lr=tr.lr, momentum=tr.momentum)
    elif tr.optimizer == 'adadelta':
        opt = torch.optim.Adadelta(groups, lr=tr.lr)
    else:
        opt = torch.optim.AdamW(groups, lr=tr.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(tr))
    start, seconds, history = 0, 0.0, []
    if state is not None:
        model.load_state_dict(state['model'])
        opt.load_state_dict(state['optimizer'])
        sched.load_state_dict(state['scheduler'])
        start, seconds, history = state['step'], state['seconds'], list(state['history'])
        set_rng_state(state['rng'])
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model

    data = recipe.data
    train_set = TrainingSet(open_dataset(data, data_root, data.get('train_split', 'train'),
                                         labels),
                            training_transforms(tuple(tr.crop), tuple(tr.scale)), objective,
                            tr.seed)
    val_set = open_dataset(data, data_root, data.get('val_split', 'val'), labels) if main else None
    loader = DataLoader(train_set, batch_sampler=StepSampler(start, tr.steps, tr.batch_size,
                                                             rank, world),
                        collate_fn=collate, num_workers=tr.workers,
                        prefetch_factor=2 if tr.workers else None)
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out / 'tensorboard'), purge_step=start)
    amp = (torch.autocast('cuda', dtype=torch.bfloat16) if tr.amp and dev.type == 'cuda'
           else nullcontext())

    def checkpoint(step: int) -> None:
        if main:
            save_checkpoint(ckpt_path, {
                'step': step, 'seconds': seconds, 'history': history,
                'model': model.state_dict(), 'optimizer': opt.state_dict(),
                'scheduler': sched.state_dict(), 'rng': rng_state(),
                'recipe': recipe.to_dict()})

    def run_validation(step: int) -> None:
        res = validate(model, recipe, val_set, tr.val_images)
        history.append({'step': step, 'seconds': round(seconds, 1), 'pq': res['All']['pq'],
                        'pq_things': res['Things']['pq'],
                        'pq_stuff': res['Stuff']['pq'], 'miou': res['miou']})
        for k, v in history[-1].items():
            if k not in ('step', 'seconds'):
                writer.add_scalar(f'val/{k}', 100 * v, step)
        bar.write(f'step {step}: val PQ {100 * res["All"]["pq"]:.1f} (things '
                  f'{100 * res["Things"]["pq"]:.1f}, stuff {100 * res["Stuff"]["pq"]:.1f}), '
                  f'mIoU {100 * res["miou"]:.1f} on {min(tr.val_images, len(val_set))} images')

    bar = tqdm(total=tr.steps, initial=start, disable=not (progress and main), unit='step',
               dynamic_ncols=True)
    model.train()
    step = start
    try:
        t_last = time.perf_counter()
        for images, targets in loader:
            with amp:
                raw = net(images.to(dev, non_blocking=True))
            losses = objective(raw, targets)
            opt.zero_grad(set_to_none=True)
            losses['total'].backward()
            if tr.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
            opt.step()
            sched.step()
            step += 1
            now = time.perf_counter()
            seconds += now - t_last
            t_last = now
            bar.update(1)
            if main and (step % tr.log_every == 0 or step == tr.steps):
                for k, v in losses.items():
                    writer.add_scalar(f'loss/{k}', v.item(), step)
                writer.add_scalar('lr', sched.get_last_lr()[0], step)
                bar.set_postfix(loss=f'{losses["total"].item():.3f}',
                                lr=f'{sched.get_last_lr()[0]:.2e}')
            if main and tr.val_every and step % tr.val_every == 0 and step < tr.steps:
                run_validation(step)
                t_last = time.perf_counter()
            if step % tr.checkpoint_every == 0 or step == tr.steps:
                checkpoint(step)
    except KeyboardInterrupt:
        checkpoint(step)
        bar.close()
        raise PanopticError(f'interrupted at step {step}; checkpoint written, continue with '
                            f'--resume') from None
    bar.close()
    summary = {}
    if main:
        run_validation(step)
        summary = {'steps': step, 'train_seconds': round(seconds, 1),
                   'hardware': _hardware(dev, world), 'torch': torch.__version__,
                   'final_val': history[-1], 'val_images': min(tr.val_images, len(val_set)),
                   'history': history}
        card = {'recipe': recipe.to_dict(), 'recipe_file': recipe.path,
                'training': {k: summary[k] for k in ('steps', 'train_seconds', 'hardware',
                                                     'torch', 'val_images', 'history')}}
        save_weights(out / 'model.safetensors', model, recipe.model, card)
        atomic_write_json(out / 'summary.json', summary)
        writer.close()
    if world > 1:
        dist.destroy_process_group()
    return summary
