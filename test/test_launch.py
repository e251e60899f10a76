"""launch/panoptic.launch.py against the node's real parameters and the installed tree.

``launch`` and ``launch_ros`` are not installable here (environment.md), so this test runs the
launch file against minimal stand-ins for the five launch classes it uses, which record their
arguments. What it checks: the file compiles, every argument has a description, every
parameter it passes exists on the node, the parameters file it defaults to is installed and
loads, and the executable it starts is installed. Starting it with ``ros2 launch`` needs a full
ROS 2 install and is not tested here.
"""

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest
import yaml

from panoptic_ros.ros.params import PARAMS

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent


class _Recorder:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class _LaunchConfiguration(_Recorder):
    def perform(self, context):
        return context.launch_configurations[self.args[0]]


def _stub_modules(monkeypatch):
    mods = {name: types.ModuleType(name) for name in
            ('launch', 'launch.actions', 'launch.substitutions', 'launch_ros',
             'launch_ros.actions')}
    mods['launch'].LaunchDescription = _Recorder
    mods['launch.actions'].DeclareLaunchArgument = _Recorder
    mods['launch.actions'].OpaqueFunction = _Recorder
    mods['launch.substitutions'].LaunchConfiguration = _LaunchConfiguration
    mods['launch_ros.actions'].LifecycleNode = _Recorder
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.fixture
def launch_file(monkeypatch):
    _stub_modules(monkeypatch)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(VENV))   # the installed package (make install)
    spec = importlib.util.spec_from_file_location('panoptic_launch',
                                                  ROOT / 'launch' / 'panoptic.launch.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(module, **overrides):
    description = module.generate_launch_description()
    actions = description.args[0]
    declared = {a.args[0]: a.kwargs for a in actions if 'default_value' in a.kwargs}
    context = types.SimpleNamespace(launch_configurations={
        name: kw['default_value'] for name, kw in declared.items()} | overrides)
    (opaque,) = [a for a in actions if 'function' in a.kwargs]
    (node,) = opaque.kwargs['function'](context)
    return declared, node.kwargs


def test_arguments_are_described_and_parameters_exist_on_the_node(launch_file):
    declared, node = _run(launch_file)
    assert {'model', 'weights', 'engine', 'device', 'image', 'namespace', 'params_file',
            'use_sim_time', 'autostart', 'log_level'} <= set(declared)
    for name, kw in declared.items():
        assert len(kw['description']) > 15, name
    assert (node['package'], node['executable'], node['name']) == (
        'panoptic_ros', 'panoptic_node', 'panoptic')
    params_file, overrides = node['parameters']
    known = {p.name for p in PARAMS} | {'use_sim_time'}
    assert set(overrides) <= known
    # the default parameters file is the installed one and matches the node
    assert Path(params_file).is_file()
    assert Path(params_file).parent.parent == VENV / 'share' / 'panoptic_ros'
    installed = yaml.safe_load(Path(params_file).read_text())['panoptic']['ros__parameters']
    assert installed == yaml.safe_load(
        (ROOT / 'config' / 'panoptic.yaml').read_text())['panoptic']['ros__parameters']
    assert node['remappings'] == [('image', 'image'), ('image/compressed', 'image/compressed')]
    assert node['additional_env'] == {}                   # LARGE_DATA is opt-in
    exe = VENV / 'bin' / 'panoptic_node'                   # pip route; colcon: lib/panoptic_ros
    assert exe.is_file() and os.access(exe, os.X_OK)


def test_arguments_override_the_parameters_file(launch_file):
    _, node = _run(launch_file, engine='onnxruntime', image='/cam/front/image_raw',
                   autostart='false', namespace='front', large_data='true')
    _, overrides = node['parameters']
    assert overrides['engine'] == 'onnxruntime' and overrides['autostart'] is False
    assert 'model' not in overrides                        # empty: the file's value stays
    assert node['namespace'] == 'front'
    assert ('image', '/cam/front/image_raw') in node['remappings']
    assert ('image/compressed', '/cam/front/image_raw/compressed') in node['remappings']
    assert node['additional_env'] == {'FASTDDS_BUILTIN_TRANSPORTS': 'LARGE_DATA'}
