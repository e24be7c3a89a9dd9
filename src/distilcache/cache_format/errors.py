from dataclasses import dataclass


class CacheError(Exception):
    """A cache directory cannot be used as asked."""


class CacheMismatchError(CacheError):
    """An existing cache was built with different settings than the ones requested."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cache, named by the file it is in."""

    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


class CacheVerifyError(CacheError):
    def __init__(self, cache_dir: str, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"cache {cache_dir} failed verification ({len(problems)} problem(s)):\n{lines}")
