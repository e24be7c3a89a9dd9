"""The CPU side's worker processes: one group serves a whole precompute run, the IDF pass and then the teacher
pass's preparation.

Each worker has its own task queue and runs its tasks in order; a task goes to the worker its key names (key mod
the group's size) and results are taken back in submission order. Both passes key their work by sort window (the
IDF pass counts a window's rows as one chunk), so a worker prepares the rows it segmented in the IDF pass and its
segmentation memo already holds their pieces; and each worker starts once, not once per pass.

Processes, not threads: jieba, the weighting and the tokenizers' Python side hold the GIL. Spawned, not forked: the
parent holds threads and torch's thread pools, which a fork would copy in an unknown state. Queues, not bare pipes:
their feeder threads send, so neither side blocks on a large message the other is not reading yet.
"""

import multiprocessing
import os
import pickle
import queue
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

from distilcache.inputs import InputSpec

BYTES_PER_WORKER = 4 << 20  # of input: below this a process costs more to start than it saves
_POLL_SECONDS = 1.0  # how often a wait for a result checks that its worker is still alive


def spare_cores() -> int:
    """The machine's cores but one, for the main process (reading, the teacher, writing); at least one."""
    return max(1, (os.cpu_count() or 1) - 1)


def workers_for(specs: list[InputSpec], workers: int) -> int:
    """Processes worth starting for these inputs: at most one per BYTES_PER_WORKER of input."""
    size = sum(spec.path.stat().st_size for spec in specs)
    return max(1, min(workers, size // BYTES_PER_WORKER))


@contextmanager
def worker_group(size: int) -> Iterator["WorkerGroup | None"]:
    """A WorkerGroup of `size` processes, or None (the work stays in this process) when size is 1."""
    if size <= 1:
        yield None
        return
    with WorkerGroup(size) as group:
        yield group


class WorkerGroup:
    def __init__(self, size: int):
        context = multiprocessing.get_context("spawn")
        self._tasks = [context.Queue() for _ in range(size)]
        self._results = [context.Queue() for _ in range(size)]
        self._processes = [context.Process(target=_serve, args=(tasks, results), name=f"distilcache-worker-{i}", daemon=True)
                           for i, (tasks, results) in enumerate(zip(self._tasks, self._results))]
        for process in self._processes:
            process.start()
        self._pending: deque[int] = deque()  # the worker of each task not taken back yet, oldest first

    @property
    def size(self) -> int:
        return len(self._processes)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, key: int, function: Callable[..., Any], *args: Any) -> None:
        """Run function(*args) (both picklable) in worker key mod size, after the tasks already sent to it."""
        worker = key % self.size
        self._tasks[worker].put((function, args))
        self._pending.append(worker)

    def oldest(self) -> Any:
        """The result of the oldest task not taken back; a worker's exception is raised here."""
        worker = self._pending.popleft()
        while True:
            try:
                succeeded, value = self._results[worker].get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                process = self._processes[worker]
                if not process.is_alive():
                    raise RuntimeError(f"worker process {process.name} (pid {process.pid}) ended with exit code {process.exitcode} "
                                       "before returning its result (killed, or out of memory?)") from None
        if not succeeded:
            raise value
        return value

    def everywhere(self, function: Callable[..., Any], *args: Any) -> None:
        """Run function(*args) once in every worker (set up state for later tasks); no other task may be pending."""
        assert not self._pending, "everywhere() would take back other tasks' results"
        for worker in range(self.size):
            self.submit(worker, function, *args)
        while self._pending:
            self.oldest()

    def close(self, failed: bool = False) -> None:
        """Let every worker finish and stop; with failed, stop them now."""
        for tasks, process in zip(self._tasks, self._processes):
            if failed:
                process.terminate()
            elif process.is_alive():
                tasks.put(None)
        for process in self._processes:
            process.join()
        for channel in self._tasks + self._results:
            if failed:  # what is still buffered for a stopped worker is dropped, not waited on
                channel.cancel_join_thread()
            channel.close()

    def __enter__(self) -> "WorkerGroup":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close(failed=kind is not None)


def _serve(tasks: multiprocessing.Queue, results: multiprocessing.Queue) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # one thread per worker: the workers are the parallelism
    if hasattr(os, "nice"):
        # the main process feeds the teacher: where both want a core, it goes first (a worker works ahead of need)
        os.nice(10)
    while (task := tasks.get()) is not None:
        function, args = task
        try:
            results.put((True, function(*args)))
        except BaseException as error:  # handed to the parent, which raises it
            error.add_note(f"in {multiprocessing.current_process().name}:\n{traceback.format_exc()}")
            try:
                pickle.dumps(error)  # the queue pickles in its feeder thread, where a failure would be lost
            except Exception:
                error = RuntimeError(f"{error!r}\n{traceback.format_exc()}")  # one that does not pickle arrives as text
            results.put((False, error))
