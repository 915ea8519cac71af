"""Process-wide settings for the long-running server: the garbage collector and glibc's malloc.

Both are measured by bench/history.py on a 2-core machine; `python -m webapp` applies them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number (malloc.h)
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's own starting value


def steady_malloc(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Keep glibc's mmap threshold fixed, so large short-lived buffers go back to the system.

    glibc raises the threshold every time it frees a large mmap'd block (up to 32 MiB); after
    that, buffers of a few hundred KB (a page's config, event payloads) come from the heap and
    leave holes it never returns. Each idle browser session grew the server by ~460 KB of RSS,
    ~300 KB of it such free heap; with the threshold fixed, ~150 KB. Same effect as
    MALLOC_MMAP_THRESHOLD_=131072 in the environment. False where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def freeze_startup_objects() -> None:
    """Leave the objects alive after start-up out of every later garbage collection.

    Once Gradio and the app are built the process tracks ~260,000 objects, and each full
    (generation 2) collection walked them all with the event loop stopped: 120-280 ms on a busy
    2-core machine, hit by about one in eight openings of a 1,000-message conversation (its
    p95 went from ~50 ms to ~200 ms). Frozen, a full collection takes ~1 ms. Objects made
    afterwards are collected as before.
    """
    gc.collect()
    gc.freeze()
