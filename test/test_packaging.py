"""Install routes: the tests run the installed package, which has every file the package reads;
messages built from msg/, package manifests, executables where ``ros2 run`` looks, and a colcon
workspace build."""

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from importlib.metadata import distribution
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
VENV = VENV_BIN.parent
SITE_DIRS = {Path(sysconfig.get_paths()[k]).resolve() for k in ('purelib', 'platlib')}
MARKER = 'installed where `ros2 run` and launch files look'   # setup.py's launchers

# Publishes one PanopticSegmentArray and receives it over DDS in the same process.
PUBSUB = textwrap.dedent('''
    import rclpy, sys, time
    from rclpy.qos import QoSProfile
    from panoptic_ros_msgs.msg import PanopticSegment, PanopticSegmentArray
    rclpy.init()
    node = rclpy.create_node('msg_check')
    got = []
    node.create_subscription(PanopticSegmentArray, 'segments', got.append, QoSProfile(depth=5))
    pub = node.create_publisher(PanopticSegmentArray, 'segments', QoSProfile(depth=5))
    msg = PanopticSegmentArray(height=4, width=6, label_divisor=1000)
    msg.header.frame_id = 'camera'
    msg.segments = [PanopticSegment(id=13002, instance_id=2, class_id=13, class_name='car',
                                    is_thing=True, score=0.9, area=12)]
    deadline = time.time() + 20
    while not got and time.time() < deadline:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.2)
    assert got, 'nothing received'
    seg = got[0].segments[0]
    assert (seg.id, seg.class_name, got[0].header.frame_id) == (13002, 'car', 'camera')
    import panoptic_ros, panoptic_ros_msgs
    print('OK', panoptic_ros.__file__, panoptic_ros_msgs.__file__)
    rclpy.shutdown()
''')


def _env(domain: int) -> dict:
    env = dict(os.environ)
    env['ROS_DOMAIN_ID'] = str(domain)
    return env


def _installed_package() -> Path:
    import panoptic_ros

    return Path(panoptic_ros.__file__).resolve().parent


def test_tests_import_the_installed_package_not_the_source_tree():
    here = _installed_package()
    assert here != ROOT / 'panoptic_ros', (
        'panoptic_ros was imported from the source tree: run the tests with `make test` or '
        '.venv/bin/pytest (pytest.ini: --import-mode=importlib, test/conftest.py)')
    assert here.parent in SITE_DIRS, f'{here} is not in site-packages {sorted(SITE_DIRS)}'


@pytest.mark.skipif(sys.version_info < (3, 11), reason='PYTHONSAFEPATH needs Python 3.11')
def test_processes_the_tests_start_in_the_repository_import_the_installed_package():
    code = 'import panoptic_ros; print(panoptic_ros.__file__)'
    out = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True)
    assert Path(out.stdout.strip()).resolve().parent.parent in SITE_DIRS, out.stdout


def test_every_data_file_of_the_package_is_installed():
    """Every non-Python file of the source package is in the installed one, unchanged (a file
    missing from setup.py's package_data fails here, not in a user's `pip install .`)."""
    src = ROOT / 'panoptic_ros'
    data = sorted(p.relative_to(src) for p in src.rglob('*')
                  if p.is_file() and '__pycache__' not in p.parts and p.suffix != '.py'
                  and not p.name.startswith('.') and not p.name.endswith('~'))
    assert {Path('export/tensorrt_onnx_ops.txt'),
            Path('data/coco_panoptic_categories.json')} <= set(data)
    installed = _installed_package()
    missing = [str(r) for r in data if not (installed / r).is_file()]
    assert not missing, f'not installed (name them in setup.py package_data): {missing}'
    stale = [str(r) for r in data if (installed / r).read_bytes() != (src / r).read_bytes()]
    assert not stale, f'installed copies differ from the source (make install): {stale}'


def test_console_scripts_are_installed_where_ros2_run_looks():
    """pip route: <prefix>/lib/panoptic_ros/ has every console script (bin/ has them too),
    executable, run by this environment's interpreter, and recorded for pip uninstall."""
    dist = distribution('panoptic_ros')
    names = sorted(ep.name for ep in dist.entry_points if ep.group == 'console_scripts')
    assert {'panoptic', 'panoptic_node'} <= set(names)
    recorded = {Path(dist.locate_file(f)).resolve() for f in dist.files}
    for name in names:
        exe = VENV / 'lib' / 'panoptic_ros' / name
        assert exe.is_file() and os.access(exe, os.X_OK), exe
        lines = exe.read_text().splitlines()
        interpreter = Path(lines[0].removeprefix('#!'))
        assert interpreter.parent == VENV_BIN and interpreter.samefile(sys.executable), lines[0]
        assert MARKER in lines[1]
        assert exe.resolve() in recorded, f'{name}: not in the RECORD (pip uninstall)'
    out = subprocess.run([str(VENV / 'lib' / 'panoptic_ros' / 'panoptic'), '--help'],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and 'usage: panoptic' in out.stdout, out.stderr[-2000:]


@pytest.mark.ros
def test_messages_installed_by_pip_route_work_over_dds(tmp_path):
    out = subprocess.run([sys.executable, '-c', PUBSUB], cwd=tmp_path, env=_env(61),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert 'site-packages/panoptic_ros_msgs' in out.stdout


def test_manifests_are_valid_format_3():
    from catkin_pkg.package import parse_package

    root = parse_package(ROOT / 'package.xml')
    msgs = parse_package(ROOT / 'msg' / 'package.xml')
    assert (root.name, root.package_format) == ('panoptic_ros', 3)
    assert (msgs.name, msgs.package_format) == ('panoptic_ros_msgs', 3)
    assert root.get_build_type() == 'ament_python'
    assert msgs.get_build_type() == 'ament_cmake'
    assert 'rosidl_interface_packages' in [g.name for g in msgs.member_of_groups]
    exec_deps = {d.name for d in root.exec_depends}
    assert {'rclpy', 'sensor_msgs', 'diagnostic_msgs', 'python3-numpy'} <= exec_deps


@pytest.mark.slow
@pytest.mark.ros
def test_colcon_workspace_build(tmp_path):
    """The repository cloned into src/ builds with colcon; messages work from install/."""
    if shutil.which('colcon', path=str(VENV_BIN)) is None:
        pytest.skip('colcon is not installed in this environment')
    src = tmp_path / 'ws' / 'src' / 'panoptic_ros'
    files = subprocess.run(['git', 'ls-files', '--cached', '--others', '--exclude-standard'],
                           cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, src / rel)
    ws = tmp_path / 'ws'
    env = _env(62)
    env['PATH'] = f'{VENV_BIN}{os.pathsep}{env["PATH"]}'
    build = subprocess.run([str(VENV_BIN / 'colcon'), 'build', '--event-handlers',
                            'console_direct+'], cwd=ws, env=env, capture_output=True,
                           text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    install = ws / 'install' / 'panoptic_ros'
    for exe in ('panoptic', 'panoptic_node'):                        # where ros2 run looks
        assert (install / 'lib' / 'panoptic_ros' / exe).is_file()
        # setuptools' scripts (setup.cfg install_scripts); setup.py adds no second copy there
        assert MARKER not in (install / 'lib' / 'panoptic_ros' / exe).read_text()
    assert not list((src / 'build').glob('*/ros_executables'))
    share = install / 'share'
    assert (share / 'ament_index' / 'resource_index' / 'packages' / 'panoptic_ros').is_file()
    assert (share / 'ament_index' / 'resource_index' / 'packages' /
            'panoptic_ros_msgs').is_file()
    for rel in ('package.xml', 'launch/panoptic.launch.py', 'config/panoptic.yaml',
                'config/panoptic.rviz'):
        assert (share / 'panoptic_ros' / rel).is_file(), rel
    assert (share / 'panoptic_ros_msgs' / 'msg' / 'PanopticSegment.msg').is_file()
    check = subprocess.run(
        ['bash', '-c', f'source {ws}/install/setup.bash && cd {tmp_path} && '
         f'{sys.executable} -c "$PUBSUB" && {sys.executable} -c '
         '"from ament_index_python.packages import get_package_share_directory as g; '
         'print(g(\'panoptic_ros\'))"'],
        env={**env, 'PUBSUB': PUBSUB}, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-4000:]
    assert f'{install}/lib/python' in check.stdout          # imported from the workspace
    assert str(share / 'panoptic_ros') in check.stdout
