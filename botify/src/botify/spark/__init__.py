"""The offline pipeline on Apache Spark: sessionization, the A/B table, top_pop and i2i.

Same inputs, same semantics and the same numbers as the embedded (pandas) engine;
see docs/spark.md. pyspark is an optional dependency (`pip install 'botify[spark]'`)
and needs Java 17+; nothing here imports it at module import time.
"""
