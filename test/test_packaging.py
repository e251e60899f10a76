"""Install routes: messages built from msg/, package manifests, and a colcon workspace build."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent

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
