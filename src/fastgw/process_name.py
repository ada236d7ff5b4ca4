"""The name a process shows in ``top``, ``pgrep``, ``ps -o comm`` and /proc/<pid>/comm.

Every process of ``fastgw serve`` is the same Python interpreter, so without this they all read
"python3": an operator can't tell the exporter that burns a core from a worker, nor signal one by
name. Linux keeps 15 bytes of it per thread; a thread started later inherits its starter's (chDB
names its own). Elsewhere nothing happens.
"""

from __future__ import annotations

PR_SET_NAME = 15
LIMIT = 15  # the kernel's TASK_COMM_LEN, less its terminating NUL


def worker_name(index: int) -> str:
    """``fastgw-worker-3``, whole within the kernel's 15 bytes for workers 0-9; from 10 on,
    ``fastgw-worker10`` (to 99), then ``fastgw-w100``: cut at 15 bytes, workers 10-19 would all
    read ``fastgw-worker-1``, and ``pkill -x`` would hit eleven of them."""
    if index < 10:
        return f"fastgw-worker-{index}"
    return f"fastgw-worker{index}" if index < 100 else f"fastgw-w{index}"


def name_this_process(name: str) -> bool:
    """Name the calling thread (the main one, when called first thing in a child). False where the
    platform can't."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:LIMIT]), 0, 0, 0)) == 0
    except (OSError, AttributeError, ImportError):  # ImportError: a Python built without ctypes
        return False
