"""Index point lookups per second, beside a raw dict and a raw py-lmdb txn.get loop.

    python tools/bench_index.py [--keys 100000] [--rounds 3]

Prints lookups/s for each and the index's ratio to both, so a regression in Index.get's own
overhead shows even on a slower or busier machine. Target: Index.get >= 200,000 lookups/s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import lmdb

from objstore import model
from objstore.index import Index


def best_rate(fn, n: int, rounds: int) -> float:
    best = 0.0
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    keys = [os.urandom(20).hex() for _ in range(args.keys)]
    n = len(keys)
    with tempfile.TemporaryDirectory() as tmp:
        ix = Index(os.path.join(tmp, "ix"), model.TABLES)
        t0 = time.perf_counter()
        ix.apply([("put", "objects", k, "value") for k in keys])
        load = time.perf_counter() - t0

        def index_get():
            get = ix.get
            for k in keys:
                get("objects", k)

        def index_get_many():
            ix.get_many("objects", keys)

        d = {k: "value" for k in keys}

        def dict_get():
            get = d.get
            for k in keys:
                get(k)

        env = lmdb.open(os.path.join(tmp, "raw"), map_size=1 << 30, max_dbs=2, sync=False)
        db = env.open_db(b"objects")
        bkeys = [k.encode() for k in keys]
        with env.begin(write=True) as txn:
            for k in bkeys:
                txn.put(k, b"value", db=db)

        def raw_lmdb():
            with env.begin() as txn:
                get = txn.get
                for k in bkeys:
                    get(k, db=db)

        rates = {
            "Index.get (fresh txn per lookup)": best_rate(index_get, n, args.rounds),
            "Index.get_many (one txn)": best_rate(index_get_many, n, args.rounds),
            "raw lmdb txn.get loop (one txn, bytes)": best_rate(raw_lmdb, n, args.rounds),
            "raw python dict.get": best_rate(dict_get, n, args.rounds),
        }
        ix.close()
        env.close()
    print(f"{n} keys; bulk load in one txn: {n / load:,.0f} entries/s")
    width = max(map(len, rates))
    for name, rate in rates.items():
        print(f"{name:<{width}}  {rate:>12,.0f} /s")
    index_rate = rates["Index.get (fresh txn per lookup)"]
    print(f"Index.get / raw lmdb: {index_rate / rates['raw lmdb txn.get loop (one txn, bytes)']:.2f}")
    print(f"Index.get / dict:     {index_rate / rates['raw python dict.get']:.3f}")
    print(f"target 200,000/s: {'met' if index_rate >= 200_000 else 'NOT met'}")


if __name__ == "__main__":
    main()
