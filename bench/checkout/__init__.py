"""Checkout (issue 5): complete checkouts over HTTP on PostgreSQL against the raw transaction.

``python -m bench --only checkout --postgres URL [--checkouts 2000] [--clients 8] [--skus 5000]
[--hot 5] [--hot-units N] [--cases spread,hot] [--profile-checkouts 100]``

On a fresh database (``seamline_bench_checkout``, dropped afterwards): ``seamline db upgrade``
and ``seamline keys create`` through the CLI, ``seamline serve`` as a subprocess as deployed (JSON
logs, embedded worker; ``SEAMLINE_TEST_PAYMENTS=true`` for the sandbox provider). The web
channel and the locations (a warehouse, two stores, all shipping) come from the API; products,
variants, EUR prices, listings, stock (with its ledger rows) and a flat shipping rate are
written directly in the tables; 2-line carts are built in the carts tables as
``tests/orders/conftest.py`` does — all before the clock starts.

Cases: ``spread`` — lines on random SKUs among ``--skus`` (plenty of stock); ``hot`` — lines on
the ``--hot`` hot SKUs with ``--hot-units`` each (default a fifth of the carts), so they sell out
and some checkouts get 409 ``insufficient_stock``. Per case, N client threads in a separate
process, each with a keep-alive ``httpx.Client``, POST ``/api/v1/carts/{id}/checkout`` with the
test provider's success token and an ``Idempotency-Key``, each cart once.

Baseline, same run, database and number of threads: the same carts' work as one minimal psycopg
transaction per checkout — a conditional ``UPDATE`` of ``stock_levels`` per line (reserve and
commit collapsed into an ``on_hand`` decrement where ``on_hand - reserved >= qty``), then INSERT
the order, its fulfilment group, its 2 lines and the payment — on raw twins of the same SKUs.

Audits after each run: orders against 201s, units sold per variant against units received
(oversold), nothing left reserved or held, cart and checkout states. Statements per checkout and
a cProfile are measured in-process afterwards (bench/checkout/inprocess.py)."""

from bench.checkout.runner import run

__all__ = ["run"]
