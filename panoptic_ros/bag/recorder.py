"""The output bag: every message of a replay, as serialized, in an MCAP rosbag2 bag with zstd
chunk compression (label images shrink a hundredfold). Written under ``.<name>.partial/`` and
moved into place on close, so a reader never opens a half bag. A bag that cannot be written
(full disk) is given up, not left half written: the replay and its report go on."""

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
        self.error: str | None = None   # why the bag was given up, if it was

    def _give_up(self, exc: OSError) -> None:
        """Close the writer without its index, drop the partial bag (which frees the space it
        took) and record why."""
        self.error = f'{exc.strerror or exc} after {self.messages} messages'
        try:
            self._writer.abort()        # closes the file even when its last flush fails
        except OSError:
            pass
        shutil.rmtree(self._tmp, ignore_errors=True)

    def write(self, topic: str, msgtype: str, log_ns: int, raw: bytes) -> None:
        """``raw``: CDR bytes of a ``msgtype`` message (``pkg/msg/Type``). Ignored once the
        bag was given up (:attr:`error`)."""
        if self.error:
            return
        conn = self._conns.get(topic)
        try:
            if conn is None:
                conn = self._conns[topic] = self._writer.add_connection(
                    topic, msgtype, typestore=self._store)
            self._writer.write(conn, log_ns, raw)
        except OSError as exc:
            self._give_up(exc)
            return
        self.messages += 1

    def close(self) -> Path | None:
        """Finish the bag and move it into place; None if it was given up."""
        if not self.error:
            try:
                self._writer.close()
            except OSError as exc:
                self._give_up(exc)
        if self.error:
            return None
        if self.path.exists():
            shutil.rmtree(self.path)
        (self._tmp / self.path.name).rename(self.path)
        self._tmp.rmdir()
        return self.path
