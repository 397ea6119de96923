"""OpenBLAS SGEMM timings through numpy, for the SGEMM benchmark (driven by sgemm.mjs).

Started with OPENBLAS_NUM_THREADS set to the thread count under test and with
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its environment, so OpenBLAS picks its own
kernel for this CPU. Protocol: one JSON request per stdin line, one JSON reply per stdout line.
  {"op": "info"}                                   -> the BLAS probe of this process (../baselines/blas_probe.py)
  {"op": "time", "m", "n", "k", "ta", "tb", "calls"} -> {"seconds": [per-call wall times]}
"""
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "baselines"))
from blas_probe import probe  # noqa: E402


def operands(m, n, k, ta, tb):
    rng = np.random.default_rng(1)
    a = rng.random((k, m) if ta else (m, k), dtype=np.float32)
    b = rng.random((n, k) if tb else (k, n), dtype=np.float32)
    return (a.T if ta else a), (b.T if tb else b), np.empty((m, n), dtype=np.float32)


def main():
    cache = {}
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "1"))
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "info":
            reply = {"threads_env": threads, **probe()}
        else:
            key = (req["m"], req["n"], req["k"], req["ta"], req["tb"])
            if key not in cache:
                cache.clear()
                cache[key] = operands(*key)
            a, b, c = cache[key]
            seconds = []
            for _ in range(req["calls"]):
                t0 = time.perf_counter()
                np.matmul(a, b, out=c)
                seconds.append(time.perf_counter() - t0)
            if threads > 1:
                # OpenBLAS workers spin for a while after a call; let them go to sleep before the
                # next measurement (ours) starts, so they do not steal its cores.
                time.sleep(0.3)
            reply = {"seconds": seconds}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
