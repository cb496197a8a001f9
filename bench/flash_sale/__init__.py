"""Flash sale: N buyers hold units of one hot SKU over HTTP until it sells out.

A real ``seamline serve`` (a subprocess started as a user starts it) serves a fresh PostgreSQL
database (``seamline_flash``, dropped afterwards). Buyers are asyncio tasks in a separate
process (its GIL is not the server's), each with its own ``httpx.AsyncClient`` and keep-alive
connection, looping ``POST /api/v1/reservations`` for one unit until 409 ``insufficient_stock``.

Phases, each on its own variant:

- ``one row``: the stock in one row at one location (every hold takes the same row lock);
- ``16 buckets``: the same after ``PUT /stock/variants/{id}/split`` (hot-SKU buckets);
- ``3 locations``: the stock spread over three locations, buyers naming them round-robin;
- ``channel picks``: the same stock, lines without ``location_id`` and a top-level
  ``channel_id``: the server chooses the location.

Measured in the same run on the same database, the raw baseline: the conditional hold itself
through psycopg, 64 threads with one autocommit connection each: (a) on one row, (b) on 16 rows,
one picked at random with ``FOR UPDATE SKIP LOCKED``, (c) on 16 rows, one picked at random whose
lock the hold waits for. The HTTP figures are compared with the best of the three.

Besides holds per second and latency: the server's peak memory (RSS and PSS over its process
tree), the CPU seconds of the server, PostgreSQL's backends, the client and anything else on the
machine, PostgreSQL commits per hold, SQL statements per request (in-process, SQLAlchemy events),
and with ``--profile`` a py-spy profile of the server. Server logs stay in the printed directory.

After every phase the database is read back: held reservations against the units received
(oversold), ``reserved`` against the held reservations, the CHECK invariants per row; at the end
``seamline inventory verify`` runs against the database.
"""

from bench.flash_sale.runner import run

__all__ = ["run"]
