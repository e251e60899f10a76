"""Test-side ROS 2 participant: starts panoptic_node as a separate process and talks to it
over real DDS (each test gets its own ROS_DOMAIN_ID)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_DOMAINS = itertools.count(100 + os.getpid() % 50 * 2)


def new_domain() -> int:
    """A ROS_DOMAIN_ID no other test run on this host uses at the same time."""
    return next(_DOMAINS) % 230 + 1


def start_node(domain: int, params: dict, prelude: str = '',
               env: dict | None = None) -> subprocess.Popen:
    """``panoptic_node`` in its own process; ``prelude`` is Python run before ``main()``,
    ``env`` added to its environment."""
    args = []
    for k, v in params.items():
        args += ['-p', f'{k}:={v}']
    code = f'{prelude}\nfrom panoptic_ros.ros.node import main\nmain()'
    env = {**os.environ, **(env or {}), 'ROS_DOMAIN_ID': str(domain)}     # the installed package
    return subprocess.Popen([sys.executable, '-c', code, '--ros-args', *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def stop_node(proc: subprocess.Popen) -> str:
    """SIGINT (Ctrl-C) the node; returns its log."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.stdout.read()


class Peer:
    """Camera publisher, output subscribers and service clients in the test process."""

    def __init__(self, domain: int) -> None:
        import rclpy
        import rclpy.executors

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node('test_peer', context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received: dict[str, list] = {}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)

    def subscribe(self, name: str, msg_type, topic: str, qos=10) -> None:
        self.received.setdefault(name, [])
        self.node.create_subscription(msg_type, topic, self.received[name].append, qos)

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def wait_for(self, predicate, timeout: float, proc: subprocess.Popen | None = None):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f'node exited: {proc.stdout.read()[-3000:]}')
            self.executor.spin_once(timeout_sec=0.05)
        return predicate()

    def call(self, srv_type, name: str, request, timeout: float = 30.0,
             idempotent: bool = False):
        """One service call. A request sent just after discovery can be lost (the server may
        not have matched this client's response reader yet, a known DDS race); an
        ``idempotent`` request (get/set parameters, get state) is sent again every 2 s until
        answered. A state change is sent once."""
        client = self.node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
        deadline = time.monotonic() + timeout
        future = client.call_async(request)
        while idempotent and time.monotonic() < deadline - 2.0:
            self.wait_for(future.done, 2.0)
            if future.done():
                break
            future = client.call_async(request)
        self.wait_for(future.done, max(0.0, deadline - time.monotonic()))
        assert future.done(), f'{name} did not answer'
        self.node.destroy_client(client)
        return future.result()

    def diagnostics(self) -> dict | None:
        """Latest /diagnostics status of the node as ``{'level', 'message', key: value}``."""
        msgs = self.received.get('diagnostics') or []
        for msg in reversed(msgs):
            for st in msg.status:
                if 'panoptic segmentation' in st.name:
                    out = {kv.key: kv.value for kv in st.values}
                    out.update(level=st.level[0] if isinstance(st.level, bytes) else st.level,
                               message=st.message)
                    return out
        return None


def camera_image(rgb: np.ndarray, stamp_ns: int, frame_id: str = 'camera'):
    from sensor_msgs.msg import Image

    h, w = rgb.shape[:2]
    msg = Image(height=h, width=w, encoding='rgb8', step=w * 3, data=rgb.tobytes())
    msg.header.frame_id = frame_id
    set_stamp(msg.header, stamp_ns)
    return msg


def set_stamp(header, stamp_ns: int) -> None:
    header.stamp.sec, header.stamp.nanosec = divmod(stamp_ns, 10 ** 9)


def stamp_ns(header) -> int:
    return header.stamp.sec * 10 ** 9 + header.stamp.nanosec
