"""The jars of the embedded Kafka broker: fetched by Maven at install time into a local cache.

The versions are pinned in kafka_dist/pom.xml; `make install` runs `install_jars` through
`privtrail install-kafka`, and the launcher runs the broker from the same directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

# Keep in step with kafka.version in kafka_dist/pom.xml and the image in docker-compose.yml.
KAFKA_VERSION = "4.4.0"
DIST_DIR = Path(__file__).resolve().parent / "kafka_dist"
POM = DIST_DIR / "pom.xml"
LOG4J_CONFIG = DIST_DIR / "log4j2.xml"
# The one jar whose presence says the copy is there: copies are moved into place whole.
MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
MAVEN_TIMEOUT_SECONDS = 900.0


class JarsUnavailable(RuntimeError):
    """Maven is missing, or could not fetch the jars."""


def default_lib_dir() -> Path:
    """Outside the checkout, shared by every clone, one directory per Kafka version."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "privtrail" / f"kafka-{KAFKA_VERSION}" / "lib"


def missing_jars(lib_dir: Path) -> str | None:
    """Why the jars in `lib_dir` cannot run the broker, or None when they can."""
    if (lib_dir / MARKER_JAR).is_file():
        return None
    return (
        f"the Kafka {KAFKA_VERSION} jars are not in {lib_dir} "
        f"(`privtrail install-kafka` fetches them with Maven)"
    )


def install_jars(lib_dir: Path, mvn: str | None) -> None:
    """Copy the jars the POM names into `lib_dir`, replacing what was there.

    Maven copies into a sibling directory that is then swapped in, so an interrupted or failed
    fetch never leaves a half-filled `lib_dir` that looks installed.
    """
    if mvn is None:
        raise JarsUnavailable("Maven (mvn) is not on PATH")
    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{lib_dir.name}-", dir=lib_dir.parent))
    try:
        _copy_dependencies(mvn, staging)
        if missing_jars(staging) is not None:
            raise JarsUnavailable(f"Maven ran but did not produce {MARKER_JAR}")
        _swap_in(staging, lib_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _copy_dependencies(mvn: str, output: Path) -> None:
    argv = [
        mvn,
        "--batch-mode",
        "--quiet",
        "--file",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={output}",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=MAVEN_TIMEOUT_SECONDS, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise JarsUnavailable(f"Maven could not run: {error}") from error
    if done.returncode != 0:
        raise JarsUnavailable(
            f"Maven could not fetch the Kafka jars (is Maven Central reachable?): "
            f"{_first_error(done.stdout + done.stderr)}"
        )


def _first_error(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("[ERROR]")]
    return (errors or lines or ["no output"])[0]


def _swap_in(staging: Path, lib_dir: Path) -> None:
    retired = staging.with_name(staging.name + "-old")
    if lib_dir.exists():
        lib_dir.rename(retired)
    staging.rename(lib_dir)
    shutil.rmtree(retired, ignore_errors=True)
