"""Where a gateway instance keeps its rings, spill files and rejected records.

Rings live in shared memory (``/dev/shm``) so they outlive a worker that dies; spill files live on
disk so they outlive everything. Both are per worker index, so a restarted worker takes over its
predecessor's ring and the exporter keeps draining it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from fastgw.config import Config


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
