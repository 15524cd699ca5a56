"""`ordered_map`: a function applied to a stream of items in worker processes, results in order (`--jobs`).

The codec codes segments independently, so N processes code N segments at once. Each worker runs the
codec's one-thread rule (`codec_threads`), which is what makes its bytes and frames those of `jobs=1`.
At most `2 * jobs` items are in flight, so memory stays bounded by the segment whatever the clip's length.
"""
from __future__ import annotations

import collections
import itertools
import multiprocessing
import os
import signal
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Callable, Iterable, Iterator, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fork server that has imported the codec (torch included) once per process, so a pool
    starts in a fraction of a second after the first; spawned afresh where there is no fork server (Windows).
    Neither forks this process, whose torch threads a fork would copy mid-flight."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["dsaecodec.codec"])
    _start_quiet_fork_server()
    return context


def start_workers_early(jobs: int) -> None:
    """With `jobs > 1`, start the fork server that worker pools fork from now, before this process imports torch:
    the server's own import of the codec (seconds) then runs on another core beside this process's, not after it
    when the first pool starts. Call it first thing in a command; with `jobs == 1` it does nothing."""
    if jobs > 1:
        _worker_context()


def _start_quiet_fork_server() -> None:
    """Start the fork server (if it is not running) with its stderr, which every worker inherits, on the null
    device: a worker cut off while it starts (Ctrl-C) would print a traceback there. A worker's errors reach
    the parent through its results, which re-raise them."""
    from multiprocessing import forkserver

    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        forkserver.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer(*initargs)


def ordered_map(function: Callable[[Item], Result], items: Iterable[Item], jobs: int,
                initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()) -> Iterator[Result]:
    """`map(function, items)` on `jobs` worker processes, yielding results in the order of `items`.

    `function` and the items must pickle (a module-level function or a `functools.partial` of one). As with
    any multiprocessing, a script that calls this with `jobs > 1` must guard its top level with
    `if __name__ == "__main__":` (workers import the main module).
    `initializer(*initargs)` runs once in each worker, before its first item. With `jobs == 1`, or fewer than
    two items, everything runs in this process and no worker is started. An exception raised by
    `function` (or by iterating `items`) is raised here, after the workers have stopped; so is Ctrl-C.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    iterator = iter(items)
    head = [item for _, item in zip(range(2), iterator)]
    if jobs == 1 or len(head) < 2:
        yield from map(function, itertools.chain(head, iterator))
        return
    pool = ProcessPoolExecutor(jobs, mp_context=_worker_context(), initializer=_start_worker,
                               initargs=(initializer, initargs))
    pending: collections.deque[Future] = collections.deque()
    try:
        for item in itertools.chain(head, iterator):
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)

