"""launch/panoptic.launch.py against the node's real parameters and the installed tree, and the
installed node started for real with ``ros2 launch`` and ``ros2 run``.

``launch`` and ``launch_ros`` are not on PyPI (environment.md), so the first tests run the
launch file against minimal stand-ins for the five launch classes it uses, which record their
arguments. What they check: the file compiles, every argument has a description, every
parameter it passes exists on the node, the parameters file it defaults to is installed and
loads, and the executable it starts is installed where launch_ros looks. The last tests use the
real ``ros2`` CLI and ``ros2 launch`` from the ros2cli kit (``../shared/ros2cli``, installed into
the venv on first use; skipped where neither the kit nor ``.venv/bin/ros2`` is there) on the
package as pip installed it (``AMENT_PREFIX_PATH`` = the venv) and see the node become active.
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import yaml

from panoptic_ros.ros.params import PARAMS
from ros_peer import Peer, new_domain

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(sys.executable).parent.parent
ROS2CLI_KIT = ROOT.parent / 'shared' / 'ros2cli'


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
    mods['launch.actions'].LogInfo = _Recorder
    mods['launch.substitutions'].LaunchConfiguration = _LaunchConfiguration
    mods['launch_ros.actions'].LifecycleNode = _Recorder
    for name, mod in mods.items():
        monkeypatch.setitem(sys.modules, name, mod)


@pytest.fixture
def launch_file(monkeypatch):
    _stub_modules(monkeypatch)
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(VENV))   # the installed package (make install)
    for name in ('FASTDDS_DEFAULT_PROFILES_FILE', 'FASTDDS_BUILTIN_TRANSPORTS'):
        monkeypatch.delenv(name, raising=False)
    installed = VENV / 'share' / 'panoptic_ros' / 'launch' / 'panoptic.launch.py'
    assert installed.read_bytes() == (ROOT / 'launch' / 'panoptic.launch.py').read_bytes(), \
        'the installed launch file differs from the source: make install'
    spec = importlib.util.spec_from_file_location('panoptic_launch', installed)
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
    *notes, node = opaque.kwargs['function'](context)
    assert all('msg' in n.kwargs for n in notes), notes
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
    # LARGE_DATA is opt-in; the node's own Fast DDS profile (big shared-memory segment) is
    # the installed one
    assert node['additional_env'] == {'FASTDDS_DEFAULT_PROFILES_FILE': str(
        VENV / 'share' / 'panoptic_ros' / 'config' / 'fastdds_node.xml')}
    assert (VENV / 'share' / 'panoptic_ros' / 'config' / 'fastdds_node.xml').read_bytes() == \
        (ROOT / 'config' / 'fastdds_node.xml').read_bytes()
    _, node = _run(launch_file, dds_profile='none')
    assert node['additional_env'] == {}
    exe = VENV / 'lib' / 'panoptic_ros' / 'panoptic_node'  # where launch_ros looks (pip, colcon)
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


def test_the_node_dds_profile_yields_to_the_user_and_to_a_small_shared_memory(
        monkeypatch, tmp_path):
    """The node's Fast DDS profile: a profile or builtin transports the user set win; a
    missing profile file fails with its name; without room for the segment in /dev/shm (a
    container's default 64 MB, or no /dev/shm) the node keeps Fast DDS's defaults and says
    why."""
    from panoptic_ros.ros import dds

    env, warning = dds.node_environment('default', environ={})
    assert Path(env['FASTDDS_DEFAULT_PROFILES_FILE']).name == 'fastdds_node.xml'
    assert warning is None
    for user in ({'FASTDDS_DEFAULT_PROFILES_FILE': '/etc/mine.xml'},
                 {'FASTDDS_BUILTIN_TRANSPORTS': 'UDPv4'}):
        assert dds.node_environment('default', environ=user) == ({}, None)
    mine = tmp_path / 'mine.xml'
    mine.write_text('<dds/>')
    assert dds.node_environment(str(mine), environ={}) == (
        {'FASTDDS_DEFAULT_PROFILES_FILE': str(mine)}, None)
    with pytest.raises(FileNotFoundError, match='missing.xml'):
        dds.node_environment(str(tmp_path / 'missing.xml'), environ={})
    monkeypatch.setattr(dds, 'SHM_DIR', tmp_path / 'no_shm')
    env, warning = dds.node_environment('default', environ={})
    assert env == {} and 'MiB free' in warning and 'shm-size' in warning


# --- the real ros2 CLI on the installed package ---------------------------------------------

@pytest.fixture(scope='module')
def ros2():
    """``.venv/bin/ros2``, installed from the ros2cli kit when missing."""
    exe = VENV / 'bin' / 'ros2'
    if not exe.is_file():
        if not (ROS2CLI_KIT / 'install.sh').is_file():
            pytest.skip(f'no ros2 CLI: {exe} is missing and the ros2cli kit that installs it '
                        f'({ROS2CLI_KIT}) is absent')
        out = subprocess.run(['bash', str(ROS2CLI_KIT / 'install.sh'), str(VENV),
                              str(ROOT / 'requirements' / 'constraints.txt')],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return exe


def _start(ros2: Path, args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, int]:
    """``ros2 ARGS`` in a new session and domain; its output goes to ``proc.log_path``."""
    domain = new_domain()
    env = {**os.environ, 'ROS_DOMAIN_ID': str(domain), 'ROS_LOG_DIR': str(tmp_path / 'log'),
           # the pip-installed package: its share/ and lib/panoptic_ros/ in the venv
           'AMENT_PREFIX_PATH': os.pathsep.join(
               p for p in (str(VENV), os.environ.get('AMENT_PREFIX_PATH', '')) if p)}
    log_path = tmp_path / 'ros2.log'
    with open(log_path, 'w') as log:
        proc = subprocess.Popen([str(ros2), *args], cwd=tmp_path, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log_path = log_path
    return proc, domain


def _stop(proc: subprocess.Popen, group: bool) -> str:
    """SIGINT to ``ros2`` (launch passes it on to the node) or, where ``group``, to its process
    group (``ros2 run`` leaves that to the terminal); returns the log."""
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.log_path.read_text()


def _wait_active(proc: subprocess.Popen, domain: int, timeout: float = 180.0) -> str:
    """The lifecycle state label of /panoptic once active (or at the timeout, or once the log
    has an error: the node will not become active then)."""
    from lifecycle_msgs.srv import GetState

    peer = Peer(domain)
    try:
        client = peer.node.create_client(GetState, '/panoptic/get_state')
        label, deadline = 'no /panoptic/get_state service', time.monotonic() + timeout
        while (time.monotonic() < deadline and proc.poll() is None
               and '[ERROR]' not in proc.log_path.read_text()):
            if client.service_is_ready():
                future = client.call_async(GetState.Request())
                peer.wait_for(future.done, 10.0)
                if future.done():
                    label = future.result().current_state.label
                    if label == 'active':
                        return label
            peer.spin(0.5)
        return label
    finally:
        peer.close()


def _child_commands(pid: int) -> list[str]:
    """Command lines of the processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            if int(stat.read_text().rsplit(')', 1)[1].split()[1]) == pid:
                out.append((stat.parent / 'cmdline').read_bytes().replace(b'\0', b' ').decode())
        except (OSError, IndexError, ValueError):
            continue
    return out


NODE_EXE = f'{VENV}/lib/panoptic_ros/panoptic_node'


@pytest.mark.ros
@pytest.mark.slow
def test_ros2_launch_starts_the_installed_node_and_it_becomes_active(ros2, tmp_path):
    proc, domain = _start(ros2, ['launch', 'panoptic_ros', 'panoptic.launch.py'], tmp_path)
    try:
        state = _wait_active(proc, domain)
        children = _child_commands(proc.pid)
    finally:
        log = _stop(proc, group=False)
    assert state == 'active', log[-4000:]
    assert any(NODE_EXE in c for c in children), children        # the pip-installed executable
    assert 'process has finished cleanly' in log, log[-4000:]
    assert 'Traceback' not in log, log[-4000:]


@pytest.mark.ros
@pytest.mark.slow
def test_ros2_run_starts_the_installed_node_and_it_becomes_active(ros2, tmp_path):
    proc, domain = _start(ros2, ['run', 'panoptic_ros', 'panoptic_node', '--ros-args', '-p',
                                 'autostart:=true'], tmp_path)
    try:
        state = _wait_active(proc, domain)
        children = _child_commands(proc.pid)
    finally:
        log = _stop(proc, group=True)
    assert state == 'active', log[-4000:]
    assert any(NODE_EXE in c for c in children), children
    assert proc.returncode == 0, log[-4000:]
    assert 'Traceback' not in log, log[-4000:]
