"""Build script of the ament_python package ``panoptic_ros``.

The interface package in ``msg/`` (``panoptic_ros_msgs``) is compiled with CMake during
``build_py`` into a staging prefix under ``build/``; its libraries, ``share/`` tree and generated
Python package are then installed with this package, into the same prefix. ``colcon build`` and
``pip install`` therefore build the messages the same way, and colcon sees a single package at the
repository root (it does not discover packages nested inside another one).

Build folders are per interpreter (``build/py3XX-<hash>/``): two venvs installing from one
checkout never share a CMake cache or staged files.

``ros2 run`` and launch files look for executables in ``<prefix>/lib/panoptic_ros/``. colcon puts
the console scripts there (setup.cfg); pip puts them only in ``bin/``, so for pip (and any install
whose scripts do not land there) ``install_data`` also writes small launchers into that folder.
"""

import hashlib
import os
import subprocess
import sys
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
# setuptools has no install_data of its own; after importing setuptools this is its distutils
from distutils.command.install_data import install_data  # isort: skip

ROOT = Path(__file__).resolve().parent
MSG_SRC = ROOT / 'msg'
PACKAGE = 'panoptic_ros'
MSG_PACKAGE = 'panoptic_ros_msgs'


def _interpreter_key() -> str:
    """Name of this interpreter's build folder: Python version and a hash of its path.

    Hashed: the folder of ``sys.executable`` as given (a venv's ``bin/python`` links to the base
    interpreter, and two venvs of one base Python must not share a folder), the file it
    resolves to (``python`` and ``python3`` of one venv share) and the full version string.
    """
    exe = os.path.abspath(sys.executable)
    ident = f'{os.path.dirname(exe)}\n{os.path.realpath(exe)}\n{sys.version}'
    digest = hashlib.sha256(ident.encode()).hexdigest()[:10]
    return f'py{sys.version_info[0]}{sys.version_info[1]}-{digest}'


BUILD = ROOT / 'build' / _interpreter_key()

# Filled in place by BuildWithMessages: install_data holds a reference to this list.
DATA_FILES = [
    ('share/ament_index/resource_index/packages', ['resource/panoptic_ros']),
    (f'share/{PACKAGE}', ['package.xml']),
    (f'share/{PACKAGE}/launch', glob('launch/*.py')),
    (f'share/{PACKAGE}/config', glob('config/*.yaml') + glob('config/*.rviz') + glob('config/*.xml')),
    (f'share/{PACKAGE}/config/models', glob('config/models/*.yaml')),
    (f'share/{PACKAGE}/models', [p for p in glob('models/*') if os.path.isfile(p)]),
    (f'share/{PACKAGE}/models/demo_bag', glob('models/demo_bag/*')),
]


def _build_messages(build_temp: Path) -> Path:
    """Configure, build and install msg/ into ``build_temp/msgs_stage``; return that prefix."""
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
        stage = _build_messages(BUILD)
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


def _shebang(exe: str) -> str:
    """``#!exe``, or a /bin/sh trampoline where the kernel cannot take it (as pip does)."""
    if ' ' not in exe and len(exe) <= 127:
        return f'#!{exe}\n'
    return f"#!/bin/sh\n'''exec' \"{exe}\" \"$0\" \"$@\"\n' '''\n"


def _write_launchers(folder: Path, console_scripts: list[str]) -> list[str]:
    """One executable per console script, run by this interpreter; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for spec in console_scripts:
        name, target = (part.strip() for part in spec.split('=', 1))
        module, _, attr = target.partition(':')
        path = folder / name
        path.write_text(
            _shebang(os.path.abspath(sys.executable))
            + '# panoptic_ros console script, installed where `ros2 run` and launch files look.\n'
            + 'import re\nimport sys\n'
            + f'from {module} import {attr.split(".")[0]}\n'
            + "if __name__ == '__main__':\n"
            + "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
            + f'    sys.exit({attr}())\n')
        path.chmod(0o755)
        paths.append(str(path))
    return paths


class InstallWithRosExecutables(install_data):
    """install_data that also puts the console scripts into ``<prefix>/lib/panoptic_ros/``.

    Skipped where the scripts go there already (colcon and ``setup.py install`` honour
    setup.cfg's ``install_scripts``), so that folder never holds two copies. In a wheel (pip)
    the launchers are data files: pip keeps their mode but does not rewrite their first line,
    so they name the interpreter that builds the wheel, which for ``pip install .`` is the
    installing one (a wheel built for another environment is not relocatable anyway: the
    message libraries are built against this one).
    """

    def run(self) -> None:
        install = self.get_finalized_command('install')
        target = os.path.join(self.install_dir, 'lib', PACKAGE)
        if os.path.normpath(install.install_scripts) != os.path.normpath(target):
            scripts = (self.distribution.entry_points or {}).get('console_scripts', [])
            entry = (f'lib/{PACKAGE}', _write_launchers(BUILD / 'ros_executables', scripts))
            if entry not in self.data_files:
                self.data_files.append(entry)
        super().run()


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(include=[PACKAGE, f'{PACKAGE}.*']),
    # Every non-Python file the package reads next to its modules (test_packaging checks).
    package_data={PACKAGE: ['data/*.json', 'export/tensorrt_onnx_ops.txt']},
    data_files=DATA_FILES,
    install_requires=['setuptools'],
    zip_safe=False,
    python_requires='>=3.10',
    maintainer='panoptic_ros maintainers',
    maintainer_email='maintainers@panoptic-ros.dev',
    description='Real-time panoptic segmentation for ROS 2',
    license='Apache-2.0',
    tests_require=['pytest'],
    cmdclass={'build_py': BuildWithMessages, 'install_data': InstallWithRosExecutables},
    # Per-interpreter setuptools build folder too (build/lib holds the staged message
    # extensions); colcon passes its own --build-base.
    options={'build': {'build_base': str(BUILD)}},
    entry_points={
        'console_scripts': [
            'panoptic = panoptic_ros.cli:main',
            'panoptic_node = panoptic_ros.ros.node:main',
        ],
    },
)
