"""A SparkSession with defaults that suit botify's jobs, local or on a cluster.

Spark's own defaults are tuned for big clusters: 200 shuffle partitions (each a
task: seconds of overhead on a laptop), a web UI on port 4040 (a fixed port,
clashes in parallel tests), INFO logs on every stage. Locally we want few
partitions, no UI and quiet logs; on a cluster (`master` is a URL) only the
settings that affect results (UTC session time zone) are forced, the rest is
left to spark-defaults.conf / spark-submit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


class SparkUnavailableError(RuntimeError):
    """pyspark or Java is missing: a setup problem, reported in one line."""


def java_available() -> bool:
    """True when a `java` executable can be found (JAVA_HOME or PATH)."""
    home = os.environ.get("JAVA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "java")):
        return True
    return shutil.which("java") is not None


def check_available() -> None:
    """Raise SparkUnavailableError with a fix-it message when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkUnavailableError(
            "pyspark is not installed: make install-spark, or pip install 'botify[spark]' (needs Java 17+)"
        ) from None
    if not java_available():
        raise SparkUnavailableError("Java not found: install OpenJDK 17+ or set JAVA_HOME")


_LOG4J = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
logger.gateway.name = org.apache.spark.api.python.PythonGatewayServer
logger.gateway.level = error
"""


def _log4j_file() -> str:
    """A log4j2 config that prints errors only (Spark's default prints INFO from JVM start)."""
    path = os.path.join(tempfile.gettempdir(), f"botify-spark-log4j2-{os.getuid()}-v3.properties")
    if not os.path.exists(path):
        tmp = path + f".{os.getpid()}"
        with open(tmp, "w") as fh:
            fh.write(_LOG4J)
        os.replace(tmp, path)
    return path


def is_local(master: str) -> bool:
    return master.startswith("local")


def get_spark(
    master: str | None = None,
    app_name: str = "botify-offline",
    *,
    shuffle_partitions: int | None = None,
    conf: Mapping[str, Any] | None = None,
    log_level: str = "ERROR",
) -> SparkSession:
    """Get (or create) the SparkSession for `master` (default `local[*]`).

    An already running session is reused (Spark allows one per JVM); the
    SQL settings that matter for results are applied to it anyway.
    """
    check_available()
    from pyspark.sql import SparkSession

    master = master or os.environ.get("BOTIFY_SPARK_MASTER") or "local[*]"
    b = SparkSession.builder.appName(app_name).master(master)
    settings: dict[str, Any] = {
        # Results must not depend on the machine's zone: naive ISO timestamps are UTC.
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.ansi.enabled": "false",
    }
    if is_local(master):
        settings.update(
            {
                "spark.ui.enabled": "false",
                "spark.ui.showConsoleProgress": "false",
                "spark.sql.shuffle.partitions": str(shuffle_partitions or 4),
                "spark.default.parallelism": str(shuffle_partitions or 4),
                "spark.sql.adaptive.enabled": "true",
                "spark.driver.memory": os.environ.get("BOTIFY_SPARK_DRIVER_MEMORY", "2g"),
                "spark.sql.execution.arrow.pyspark.enabled": "true",
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.driver.host": "127.0.0.1",
                "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile={_log4j_file()}",
            }
        )
    elif shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    settings.update({k: str(v) for k, v in (conf or {}).items()})
    for k, v in settings.items():
        b = b.config(k, v)
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    for k in ("spark.sql.session.timeZone", "spark.sql.ansi.enabled"):
        spark.conf.set(k, settings[k])
    if shuffle_partitions:
        spark.conf.set("spark.sql.shuffle.partitions", str(shuffle_partitions))
    return spark


__all__ = ["SparkUnavailableError", "check_available", "get_spark", "is_local", "java_available"]
