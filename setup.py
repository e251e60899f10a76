"""Build script of the ament_python package ``panoptic_ros``.

The interface package in ``msg/`` (``panoptic_ros_msgs``) is compiled with CMake during
``build_py`` into a staging prefix under ``build/``; its libraries, ``share/`` tree and generated
Python package are then installed with this package, into the same prefix. ``colcon build`` and
``pip install`` therefore build the messages the same way, and colcon sees a single package at the
repository root (it does not discover packages nested inside another one).
"""

import os
import subprocess
import sys
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
MSG_SRC = ROOT / 'msg'
PACKAGE = 'panoptic_ros'
MSG_PACKAGE = 'panoptic_ros_msgs'

# Filled in place by BuildWithMessages: install_data holds a reference to this list.
DATA_FILES = [
    ('share/ament_index/resource_index/packages', ['resource/panoptic_ros']),
    (f'share/{PACKAGE}', ['package.xml']),
    (f'share/{PACKAGE}/launch', glob('launch/*.py')),
    (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.rviz')),
    (f'share/{PACKAGE}/config/models', glob('config/models/*.yaml')),
    (f'share/{PACKAGE}/models', [p for p in glob('models/*') if os.path.isfile(p)]),
    (f'share/{PACKAGE}/models/demo_bag', glob('models/demo_bag/*')),
]


def _build_messages(build_temp: Path) -> Path:
    """Configure, build and install msg/ into ``build_temp/stage``; return the stage prefix."""
    build_dir = build_temp / 'msgs_build'
    stage = build_temp / 'msgs_stage'
    env = dict(os.environ)
    # The ROS 2 wheels install ament and rosidl into the interpreter's environment (a venv).
    # colcon overrides sys.prefix with the install base, so derive it from the interpreter path.
    # With a full ROS 2 install (sourced setup.bash) this prefix has no ament and is not added.
    venv_prefix = str(Path(sys.executable).parent.parent)
    if (Path(venv_prefix) / 'share' / 'ament_cmake').is_dir():
        for var in ('AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH'):
            env[var] = os.pathsep.join(p for p in (env.get(var, ''), venv_prefix) if p)
    generator = ['-G', 'Ninja'] if _which('ninja') else []
    subprocess.check_call(
        ['cmake', '-S', str(MSG_SRC), '-B', str(build_dir), *generator,
         f'-DCMAKE_INSTALL_PREFIX={stage}', '-DCMAKE_BUILD_TYPE=Release',
         '-DBUILD_TESTING=OFF', f'-DPython3_EXECUTABLE={sys.executable}'], env=env)
    subprocess.check_call(
        ['cmake', '--build', str(build_dir), '--parallel', str(os.cpu_count() or 1)], env=env)
    subprocess.check_call(['cmake', '--install', str(build_dir)], env=env)
    return stage


def _which(name: str) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK)
               for d in os.environ.get('PATH', '').split(os.pathsep))


class BuildWithMessages(build_py):
    """build_py that first compiles the interface package and adds its outputs."""

    def run(self) -> None:
        build_temp = ROOT / 'build'
        stage = _build_messages(build_temp)
        # Generated Python package: <stage>/lib/pythonX.Y/site-packages/panoptic_ros_msgs.
        init = next(stage.glob(f'**/{MSG_PACKAGE}/__init__.py'))
        msg_pkg_dir = init.parent
        for sub in [msg_pkg_dir, *sorted(p for p in msg_pkg_dir.rglob('*') if p.is_dir())]:
            if sub.name == '__pycache__':
                continue
            rel = sub.relative_to(msg_pkg_dir.parent)
            name = '.'.join(rel.parts)
            self.package_dir[name] = str(sub)
            if name not in self.packages:
                self.packages.append(name)
            self.package_data[name] = ['*.so', '*.pyi']
        # Libraries and the share/ tree (ament index, .msg/.idl files, CMake config).
        for path in sorted(p for p in stage.rglob('*') if p.is_file() or p.is_symlink()):
            rel = path.relative_to(stage)
            if rel.parts[0] == 'lib' and rel.parts[1].startswith('python'):
                continue
            if rel.parts[0] not in ('lib', 'share'):
                continue  # headers are for C/C++ users, not needed by Python
            DATA_FILES.append((str(rel.parent), [str(path)]))
        super().run()


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    package_data={PACKAGE: ['data/*.json']},
    data_files=DATA_FILES,
    install_requires=['setuptools'],
    zip_safe=False,
    python_requires='>=3.10',
    maintainer='panoptic_ros maintainers',
    maintainer_email='maintainers@panoptic-ros.dev',
    description='Real-time panoptic segmentation for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    cmdclass={'build_py': BuildWithMessages},
    entry_points={
        'console_scripts': [
            'panoptic = panoptic_ros.cli:main',
            'panoptic_node = panoptic_ros.ros.node:main',
        ],
    },
)
