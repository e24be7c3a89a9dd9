from dataclasses import dataclass


class DistilcacheError(Exception):
    """Something the user can fix: an option, a file given to a command, a cache or a student directory.
    The command line reports it in one line (its traceback with -v); any other exception is a bug."""


class ConfigError(DistilcacheError, ValueError):
    """An option outside its range, or options that do not work together."""


class DataFileError(DistilcacheError, ValueError):
    """A file given to a command (a corpus, a similarity set, an IDF table) cannot be read as asked."""


class CacheError(DistilcacheError):
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
