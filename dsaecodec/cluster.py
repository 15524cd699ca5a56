"""Ray for `dsaecodec encode DIR --ray ADDRESS`: a connection, and one task per file.

Ray is an optional extra (`pip install -e ".[ray]"`), imported only here and only when asked for. The tasks read
their inputs and write their outputs themselves, so the cluster must share the file system with this machine.
"""
from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

Result = TypeVar("Result")

ADDRESS = re.compile(r"auto|local|(ray://)?[^\s/]+:\d+")
"""What --ray takes: auto (the cluster running here), local (a Ray instance started for the run), HOST:PORT or
ray://HOST:PORT."""
CANCEL_WAIT_S = 30
"""How long Ctrl-C waits for cancelled tasks to end (and remove their temporary files)."""


class ClusterError(Exception):
    """Ray is not installed, or the cluster cannot be reached."""


def check_address(address: str) -> None:
    """ValueError unless `address` is one that --ray takes."""
    if not ADDRESS.fullmatch(address):
        raise ValueError(f"--ray takes auto, local, HOST:PORT or ray://HOST:PORT, not {address!r}")


@contextlib.contextmanager
def connection(address: str, cpus: int) -> Iterator[None]:
    """Connected to Ray for the block: to the cluster at `address`, or, for "local", to a Ray instance of `cpus`
    CPUs started for the block and stopped after it. A process that is connected already (a program that runs the
    command in-process, such as the tests) keeps its connection. ClusterError if Ray is missing or unreachable."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install -e '.[ray]'") from None
    if ray.is_initialized():
        yield
        return
    local = {"num_cpus": cpus, "include_dashboard": False} if address == "local" else {}
    try:
        ray.init(address=address, logging_level=logging.WARNING, **local)
    except Exception as error:  # ConnectionError, RuntimeError or ValueError, depending on the address and Ray
        reason = str(error).strip() or type(error).__name__
        raise ClusterError(f"cannot connect to Ray at {address}: {reason}") from None
    try:
        yield
    finally:
        ray.shutdown()


def run_tasks(function: Callable[..., Result], calls: list[tuple[Any, ...]], gpu: bool = False) -> Iterator[Result]:
    """`function(*call)` for every call, one Ray task each on one CPU (and one GPU if `gpu`), yielding the results
    as the tasks end. A worker process runs task after task, so what it caches (the models of
    `codec.loaded_model`) it loads once. An exception (Ctrl-C included) while the tasks run cancels those not
    done and waits for them to end: a running task is cancelled by a KeyboardInterrupt, on which it removes its
    temporary file."""
    import ray

    task = ray.remote(num_cpus=1, num_gpus=1 if gpu else 0, max_calls=0)(function)  # 0: no limit, GPU tasks too
    pending = [task.remote(*call) for call in calls]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])
    finally:
        for cancelled in pending:
            ray.cancel(cancelled)
        if pending:
            ray.wait(pending, num_returns=len(pending), timeout=CANCEL_WAIT_S)
