"""`make bench`: run every benchmarks/bench_*.py in turn and print what each measures."""
import os
import runpy
import sys
from pathlib import Path

# Measure what the daemon runs: one BLAS thread (digestd.cli sets the same before numpy loads).
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

here = Path(__file__).parent
names = sys.argv[1:] or sorted(p.stem for p in here.glob("bench_*.py"))
for name in names:
    print(f"== {name}", flush=True)
    runpy.run_path(str(here / f"{name}.py"), run_name="__main__")
