"""The process-wide settings `python -m webapp` applies (measured by bench/history.py)."""

from __future__ import annotations

import gc
import platform

from webapp import process_tuning


def test_steady_malloc_fixes_glibcs_mmap_threshold() -> None:
    applied = process_tuning.steady_malloc()
    assert applied == (platform.libc_ver()[0] == "glibc")


def test_freeze_leaves_startup_objects_out_of_later_collections() -> None:
    try:
        process_tuning.freeze_startup_objects()
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
