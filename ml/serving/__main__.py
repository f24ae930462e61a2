"""``python -m ml.serving [--host H] [--port P]``: one uvicorn worker serving the scoring API.

Numeric libraries are pinned to one thread before numpy or scikit-learn load: gradient-boosted
trees with the default OpenMP threads answer one row with a p99 of 100-500 ms on a busy machine
(scikit-learn#30662), and one worker per core scales better than threads inside one. Run more
replicas (Kubernetes) or processes, not threads, for more throughput.
"""

from __future__ import annotations

import argparse
import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_variable] = "1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("PAYDATA_SCORER_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PAYDATA_SCORER_PORT", "8000")))
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    import logging

    import uvicorn
    from threadpoolctl import threadpool_limits

    from ml.serving.app import create_app_from_env

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    threadpool_limits(limits=1)  # whatever a library set up on import, keep it at one thread
    uvicorn.run(create_app_from_env(), host=args.host, port=args.port, workers=1, access_log=False,
                log_level=args.log_level, timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
