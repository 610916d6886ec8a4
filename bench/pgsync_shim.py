"""Run a PGSync entry point (bin/pgsync, bin/bootstrap) with the pgsync venv's python.

    .pgsync-venv/bin/python bench/pgsync_shim.py .pgsync-venv/bin/pgsync --config schema.json

Without BENCH_PGSYNC_SHIM=1 this only runs the script, unchanged. With it, one
thing is patched, and nothing on the data path: PGSync pins elasticsearch-py
7.17.13, whose client starts by calling `GET /` (version discovery and the
"product check"), and the integ-test-zip Elasticsearch this project runs locally
answers `GET /` with 405. The shim answers that one call from the client side
(a 9.x version, product verified); every other request (index creation,
_bulk, refresh, search) goes to the real server unchanged.
"""

from __future__ import annotations

import os
import runpy
import sys


def _patch() -> None:
    import elasticsearch
    from elasticsearch import transport

    def verified(self, headers=None, timeout=None):
        self._verified_elasticsearch = True

    transport.Transport._do_verify_elasticsearch = verified

    def info(self, params=None, headers=None):
        return {"version": {"number": "9.2.4", "build_flavor": "default"}, "tagline": "You Know, for Search"}

    elasticsearch.Elasticsearch.info = info


if __name__ == "__main__":
    if os.environ.get("BENCH_PGSYNC_SHIM") == "1":
        _patch()
    script = sys.argv[1]
    sys.argv = [script, *sys.argv[2:]]
    runpy.run_path(script, run_name="__main__")
