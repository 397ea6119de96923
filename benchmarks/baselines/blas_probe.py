"""Which BLAS a Python baseline really runs on, read from the running process.

Debian's PyTorch is built with BLAS_INFO=generic: it links `libblas.so.3`, and the library behind
that name is whatever `update-alternatives` selected (OpenBLAS from `libopenblas0-pthread`, or the
reference BLAS from `libblas3`, about 6x slower). So the build settings do not say which BLAS ran;
this module asks the dynamic loader instead: it looks up the address of `sgemm_` as libtorch_cpu
resolves it and names the file that holds it (`dladdr`), lists the BLAS libraries mapped into the
process (/proc/self/maps), and asks OpenBLAS for its core kernel and thread count.

    python3 blas_probe.py            # prints the probe as one JSON line (imports torch if present)
    from blas_probe import probe     # used by torch_cpu_lora_bench.py and openblas_worker.py
"""
import ctypes
import json
import os
import re
import subprocess
import sys

BLAS_NAME = re.compile(r"(blas|mkl|blis|atlas)", re.I)


def classify(path):
    """'openblas', 'mkl', 'blis', 'atlas', 'reference' (netlib libblas3) or 'unknown', from a file path."""
    if not path:
        return "unknown"
    low = os.path.realpath(path).lower()
    for kind in ("openblas", "mkl", "blis", "atlas"):
        if kind in low:
            return kind
    # Debian's libblas3 (netlib reference BLAS) lives in .../blas/libblas.so.3.x
    if re.search(r"/blas/libblas\.so", low) or re.search(r"/libblas\.so\.3\.\d+", low):
        return "reference"
    return "unknown"


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _symbol_file(lib_path, symbol):
    """The file that provides `symbol` as seen from the already-loaded library `lib_path`."""
    try:
        lib = ctypes.CDLL(lib_path)
        fn = getattr(lib, symbol)
    except (OSError, AttributeError):
        return None
    addr = ctypes.cast(fn, ctypes.c_void_p).value
    libc = ctypes.CDLL(None)
    info = _DlInfo()
    if not libc.dladdr(ctypes.c_void_p(addr), ctypes.byref(info)) or not info.dli_fname:
        return None
    return os.path.realpath(info.dli_fname.decode())


def mapped_libraries():
    """Shared objects mapped into this process, as real paths, in load order."""
    seen, out = set(), []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and ".so" in parts[5]:
                p = parts[5].strip()
                if p not in seen:
                    seen.add(p)
                    out.append(p)
    return out


def openblas_details(path):
    """Core kernel, build configuration and thread count of an OpenBLAS library, if it exports them."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for prefix, suffix in (("openblas", ""), ("scipy_openblas", "64_"), ("openblas", "64_")):
        try:
            core = getattr(lib, f"{prefix}_get_corename{suffix}")
            config = getattr(lib, f"{prefix}_get_config{suffix}")
            threads = getattr(lib, f"{prefix}_get_num_threads{suffix}")
        except AttributeError:
            continue
        core.restype = config.restype = ctypes.c_char_p
        threads.restype = ctypes.c_int
        return {"corename": core().decode(), "config": config().decode().strip(), "threads": threads()}
    return None


def ldconfig_libblas():
    """Where `ldconfig -p` says libblas.so.3 is, and the real file behind it."""
    try:
        text = subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"\blibblas\.so\.3 \(libc6,x86-64\) => (\S+)", text)
    return {"path": m.group(1), "realpath": os.path.realpath(m.group(1))} if m else None


def probe():
    out = {"python": sys.executable, "python_version": sys.version.split()[0]}
    try:
        import numpy as np
        out["numpy"] = np.__version__
        a = np.ones((64, 64), dtype=np.float32)
        a @ a  # loads a lazily opened BLAS
    except ImportError:
        out["numpy"] = None
    sgemm_from = None
    try:
        import torch
        x = torch.ones(64, 64)
        x @ x
        show = torch.__config__.show()
        m = re.search(r"BLAS_INFO=([^,\s]+)", show)
        out["torch"] = {
            "version": torch.__version__,
            "blas_info": m.group(1) if m else None,
            "config_show": show,
            "parallel_info": torch.__config__.parallel_info(),
            "num_threads": torch.get_num_threads(),
        }
        libtorch = next((p for p in mapped_libraries() if os.path.basename(p).startswith("libtorch_cpu.so")), None)
        if libtorch:
            sgemm_from = _symbol_file(libtorch, "sgemm_")
    except ImportError:
        out["torch"] = None
    libs = [p for p in mapped_libraries() if BLAS_NAME.search(os.path.basename(p))]
    out["blas_libraries"] = [{"path": p, "kind": classify(p), "openblas": openblas_details(p)} for p in libs]
    out["libblas_so_3"] = {
        "mapped": next((p for p in libs if "libblas.so.3" in p), None),
        "ldconfig": ldconfig_libblas(),
    }
    if sgemm_from:
        provider, via = sgemm_from, "dladdr(sgemm_) from libtorch_cpu"
    else:
        provider, via = (libs[0], "first BLAS library mapped") if libs else (None, "no BLAS library mapped")
    kind = classify(provider)
    out["blas"] = {"provider": provider, "via": via, "kind": kind,
                   "openblas": openblas_details(provider) if kind == "openblas" and provider else None}
    return out


if __name__ == "__main__":
    print(json.dumps(probe()))
