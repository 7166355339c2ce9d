"""The paper's Table 1 (and Table 3's RHN sizes) timed on this CPU.

    python benchmarks/table1.py [--quick] [--out benchmarks/results/table1.json]

A thin script: the benchmark lives in ``l0ref/experiments/table1.py`` (also ``l0ref bench``).
"""
import sys

from l0ref.experiments.table1 import main

if __name__ == "__main__":
    sys.exit(main())
