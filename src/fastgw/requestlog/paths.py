"""Where a gateway instance keeps its rings, spill files and rejected records.

Rings live in shared memory (``/dev/shm``) so they outlive a worker that dies; spill files live on
disk so they outlive everything. Both are per worker index, so a restarted worker takes over its
predecessor's ring and the exporter keeps draining it.

That takeover also means two gateways given the same folders would push into each other's rings
and commit each other's spill segments, losing records without a word. So ``fastgw serve`` takes
a lock on both folders (``LogPaths.lock``) before it starts anything, and a second gateway is
refused at start, naming the key and the process that holds the folder.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from dataclasses import dataclass

from fastgw.config import Config

LOCK_NAME = ".fastgw.lock"


class FolderInUse(Exception):
    def __init__(self, key: str, folder: str, holder: str) -> None:
        super().__init__(f"{key}: {folder} is in use by another fastgw (pid {holder or 'unknown'}); "
                         f"give each gateway its own {key}")
        self.key, self.folder = key, folder


@dataclass(frozen=True, slots=True)
class LogPaths:
    run_dir: str  # the rings
    spill_root: str  # the spill files, one folder per worker
    rejected_file: str  # records the sink can never take, kept for a human

    @classmethod
    def for_config(cls, config: Config) -> LogPaths:
        lc = config.logging
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()
        run_dir = lc.run_dir or os.path.join(shm, f"fastgw-{config.server.port}")
        spill_root = lc.spill_dir or os.path.abspath("fastgw-spill")
        os.makedirs(run_dir, exist_ok=True)
        os.makedirs(spill_root, exist_ok=True)
        return cls(run_dir, spill_root, os.path.join(spill_root, "rejected.jsonl"))

    def ring_file(self, worker: int) -> str:
        return os.path.join(self.run_dir, f"ring-{worker}.shm")

    def spill_dir(self, worker: int) -> str:
        return os.path.join(self.spill_root, f"worker-{worker}")

    @property
    def parked_dir(self) -> str:
        """The exporter's parked batches (``parking.py``), under the same lock as the spill files."""
        return os.path.join(self.spill_root, "parked")

    def lock(self) -> list[int]:
        """Lock the ring and spill folders for this gateway; raises FolderInUse when another holds one.

        The locks are ``flock``s on open files: the processes this one forks (workers, the
        exporter) inherit them, so they last until every process that may touch a ring or a spill
        file has exited, and no longer. The caller closes the returned descriptors once its
        children are gone.
        """
        fds: list[int] = []
        folders = [("logging.run_dir", self.run_dir)]
        if not os.path.samefile(self.spill_root, self.run_dir):  # one folder for both: one lock
            folders.append(("logging.spill_dir", self.spill_root))
        try:
            for key, folder in folders:
                fd = os.open(os.path.join(folder, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
                fds.append(fd)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                    raise FolderInUse(key, folder, os.pread(fd, 32, 0).decode("ascii", "replace").strip()) from None
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds
