"""``python -m edged.tools.pipeline_bench``: the benchmark, or one of its worker processes."""

import sys

from edged.tools.pipeline_bench.cli import main

sys.exit(main())
