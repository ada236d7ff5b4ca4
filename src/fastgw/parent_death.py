"""A child process that outlives its parent is an orphan nobody supervises: a worker still holding
the port and the request-log folders, so the next ``fastgw serve`` cannot start. Linux can send a
child a signal when its parent dies, however it dies (``kill -9`` included); this asks for it.

Elsewhere (macOS, BSD) there is no such call and nothing happens: the supervisor's own SIGTERM
handler is then the only way the children hear of a shutdown.
"""

from __future__ import annotations

import os

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, signum: int) -> bool:
    """Have ``signum`` sent to this process when ``parent`` (its parent at the fork) dies, or sent
    now if it is already gone. False where the platform cannot do it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # it died between the fork and the call: no signal will come
        os.kill(os.getpid(), signum)
    return True
