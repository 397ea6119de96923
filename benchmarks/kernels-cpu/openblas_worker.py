"""OpenBLAS SGEMM timings through numpy, for the SGEMM benchmark (driven by sgemm.mjs).

Started with OPENBLAS_NUM_THREADS set to the thread count under test and with
OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE removed from its environment, so OpenBLAS picks its own
kernel for this CPU. Protocol: one JSON request per stdin line, one JSON reply per stdout line.
  {"op": "info"}                                   -> {"numpy", "openblas", "threads", "source"}
  {"op": "time", "m", "n", "k", "ta", "tb", "calls"} -> {"seconds": [per-call wall times]}
"""
import ctypes
import glob
import json
import os
import sys
import time

import numpy as np


def openblas_info():
    """Name of the OpenBLAS core kernel in use and its thread count, by whatever means exist."""
    try:
        import threadpoolctl  # type: ignore

        for lib in threadpoolctl.threadpool_info():
            if lib.get("internal_api") == "openblas":
                return {"corename": lib.get("architecture"), "config": lib.get("version"),
                        "threads": lib.get("num_threads"), "source": "threadpoolctl"}
    except ImportError:
        pass
    # numpy wheels bundle scipy-openblas; its exported helpers carry a scipy_ prefix and 64_ suffix.
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "*openblas*.so*"))
    for path in libs:
        lib = ctypes.CDLL(path)
        for prefix, suffix in (("scipy_openblas", "64_"), ("openblas", "64_"), ("openblas", "")):
            try:
                core = getattr(lib, f"{prefix}_get_corename{suffix}")
                config = getattr(lib, f"{prefix}_get_config{suffix}")
                threads = getattr(lib, f"{prefix}_get_num_threads{suffix}")
            except AttributeError:
                continue
            core.restype = ctypes.c_char_p
            config.restype = ctypes.c_char_p
            threads.restype = ctypes.c_int
            return {"corename": core().decode(), "config": config().decode(), "threads": threads(),
                    "source": f"ctypes {os.path.basename(path)}"}
    return {"corename": "unknown", "config": "unknown", "threads": None, "source": "none"}


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
            reply = {"numpy": np.__version__, "threads_env": threads, **openblas_info()}
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
