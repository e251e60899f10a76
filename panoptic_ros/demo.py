"""``panoptic demo``: the main job on bundled defaults.

Replays the bundled demo bag (a 2-second synthetic drive: 20 frames at 512x1024, JPEG, with
panoptic ground truth whose ids follow objects; a seed the default model never saw) through
``panoptic_node`` live over DDS with the bundled default model (or ``--model NAME``), at a
fifth of its recorded 10 Hz so that a CPU keeps up, and writes the replay report (PQ, and
STQ/VPQ/id switches of the node's track ids), plots, montage, strip of consecutive overlays and
output bag.
"""

from __future__ import annotations

from pathlib import Path

RATE_FACTOR = 0.2


def run_demo(out: Path, model: str | None = None) -> int:
    from panoptic_ros.bag.run import run_bag_eval
    from panoptic_ros.cli import build_parser
    from panoptic_ros.errors import PanopticError
    from panoptic_ros.weights import models_dir, resolve_model

    bag = models_dir() / 'demo_bag'
    if not bag.is_dir():
        raise PanopticError(f'demo bag {bag} is missing: reinstall the package (make install)')
    weights = resolve_model(model)
    print(f'replaying {bag} through panoptic_node (live, DDS) with {weights.name} at '
          f'{RATE_FACTOR:g} x its recorded rate; writing {out}/', flush=True)
    args = build_parser().parse_args(['bag', 'eval', '--bag', str(bag), '--mode', 'live',
                                      '--weights', str(weights),
                                      '--rate-factor', str(RATE_FACTOR), '--out', str(out)])
    code = run_bag_eval(args)
    print(f'\nopen {out / "report.md"} (plots, montage {out / "montage.png"}: camera | ground '
          f'truth | node overlay, {out / "strip.png"}: consecutive overlays, one colour per '
          f'tracked object) and the output bag {out / "output_bag"}.\n'
          'Your own recording: panoptic bag eval --bag YOUR_BAG [--image-topic /camera/...] '
          '--out DIR (README: "Evaluate on your own bags").')
    return code
