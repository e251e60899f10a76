"""Nothing reaches the network at run time: evaluation, export and the node open no socket
other than loopback and local (Unix) ones.

Python's audit hooks (PEP 578) see every socket connect, bind, sendto and name lookup made
from Python, including those of libraries (urllib, http.client, a model hub download). They do
not see the sockets DDS opens in C (Fast DDS's UDP discovery and shared memory), which are the
ROS 2 graph itself and allowed.
"""

import ipaddress
import sys

import pytest

from ros_peer import Peer, camera_image, new_domain, start_node, stop_node

EVENTS = ('socket.connect', 'socket.bind', 'socket.sendto', 'socket.sendmsg',
          'socket.getaddrinfo', 'socket.gethostbyname', 'socket.gethostbyaddr')


def is_local(event: str, args: tuple) -> bool:
    """Whether a socket audit event stays on this machine: Unix sockets, loopback addresses,
    ``localhost``. Binding to all interfaces (``0.0.0.0``, ``::``) is not local."""
    host = args[0] if event.startswith('socket.get') else args[1]
    if event in ('socket.connect', 'socket.bind', 'socket.sendto', 'socket.sendmsg'):
        if isinstance(host, (str, bytes)):       # AF_UNIX path
            return True
        if not isinstance(host, tuple) or not host:
            return False
        host = host[0]
    if host is None or host in ('localhost', b'localhost'):
        return True
    try:
        return ipaddress.ip_address(host.decode() if isinstance(host, bytes) else host).is_loopback
    except ValueError:
        return False


_seen: list = []
_recording = [False]


def _hook(event, args):
    if _recording[0] and event in EVENTS and not is_local(event, args):
        _seen.append((event, repr(args)[:200]))


sys.addaudithook(_hook)


@pytest.fixture
def network_audit():
    """Records the non-local socket events made while the test runs."""
    _seen.clear()
    _recording[0] = True
    yield _seen
    _recording[0] = False


def test_the_audit_sees_a_network_connection(network_audit):
    import socket

    with pytest.raises(OSError):        # TEST-NET-1 (RFC 5737): never routed
        socket.create_connection(('192.0.2.1', 9), timeout=0.01)
    socket.getaddrinfo('127.0.0.1', 80)
    assert [e for e, _ in network_audit] == ['socket.getaddrinfo', 'socket.connect']


def test_eval_and_export_reach_no_network(network_audit, tmp_path):
    from panoptic_ros import cli
    from panoptic_ros.synth.writer import write_dataset

    write_dataset(tmp_path / 'val', 'val', num=1, height=256, width=512, seed=40, workers=1,
                  progress=False)
    assert cli.main(['eval', '--data', str(tmp_path / 'val'), '--num', '1', '--quiet']) == 0
    assert cli.main(['export', '--format', 'onnx', '--out', str(tmp_path / 'm.onnx')]) == 0
    assert network_audit == []


def _node_prelude() -> str:
    """Python run in the node's process before ``main()``: the same audit, printing each
    non-local event to stderr (the node's log)."""
    import inspect

    return '\n'.join(['import ipaddress, sys', f'EVENTS = {EVENTS!r}',
                      inspect.getsource(is_local),
                      'def _hook(event, args):',
                      '    if event in EVENTS and not is_local(event, args):',
                      "        print('NETWORK:', event, repr(args)[:200], file=sys.__stderr__,"
                      ' flush=True)',
                      'sys.addaudithook(_hook)',
                      "print('network audit on', file=sys.__stderr__, flush=True)"])


@pytest.mark.ros
@pytest.mark.slow
def test_the_node_reaches_no_network(tmp_path):
    import numpy as np

    from panoptic_ros_msgs.msg import PanopticSegmentArray
    from sensor_msgs.msg import Image

    from panoptic_ros.synth.scene import SceneRenderer

    domain = new_domain()
    proc = start_node(domain, {'autostart': 'true'}, prelude=_node_prelude())
    peer = Peer(domain)
    try:
        peer.subscribe('segments', PanopticSegmentArray, 'panoptic/segments')
        pub = peer.node.create_publisher(Image, 'image', 2)
        rgb, _, _ = SceneRenderer(128, 256).render(np.random.default_rng(1))
        stamp = 1_700_004_000_000_000_000
        for k in range(60):
            pub.publish(camera_image(rgb, stamp + k, 'camera'))
            if peer.wait_for(lambda: peer.received['segments'], 2.0, proc):
                break
        answered = bool(peer.received['segments'])
    finally:
        peer.close()
        log = stop_node(proc)
    assert answered and 'Traceback' not in log, log[-3000:]
    assert 'network audit on' in log and 'NETWORK:' not in log, log[-3000:]
