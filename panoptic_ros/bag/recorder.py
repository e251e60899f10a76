"""The output bag: every message of a replay, as serialized, in an MCAP rosbag2 bag with zstd
chunk compression (label images shrink a hundredfold). Written under ``.<name>.partial/`` and
moved into place on close, so a reader never opens a half bag."""

from __future__ import annotations

import shutil
from pathlib import Path

from panoptic_ros.bag import types


class OutputBag:
    """Append-only bag writer that adds a topic on its first message.

    Args:
        path: bag folder to create; an existing one is replaced on close.
    """

    def __init__(self, path: str | Path) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.rosbag2.enums import CompressionFormat, CompressionMode

        self.path = Path(path)
        self._tmp = self.path.with_name(f'.{self.path.name}.partial')
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._store = types.typestore()
        self._writer = Writer(self._tmp / self.path.name, version=9,
                              storage_plugin=StoragePlugin.MCAP)
        self._writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self._writer.open()
        self._conns: dict[str, object] = {}
        self.messages = 0

    def write(self, topic: str, msgtype: str, log_ns: int, raw: bytes) -> None:
        """``raw``: CDR bytes of a ``msgtype`` message (``pkg/msg/Type``)."""
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._conns[topic] = self._writer.add_connection(topic, msgtype,
                                                                    typestore=self._store)
        self._writer.write(conn, log_ns, raw)
        self.messages += 1

    def close(self) -> Path:
        self._writer.close()
        if self.path.exists():
            shutil.rmtree(self.path)
        (self._tmp / self.path.name).rename(self.path)
        self._tmp.rmdir()
        return self.path
