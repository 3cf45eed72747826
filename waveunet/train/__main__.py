"""``python -m waveunet.train RECIPE --out RUN_DIR ...`` is ``waveunet train RECIPE --out RUN_DIR ...``,
as a module so that ``torchrun --nproc_per_node=N -m waveunet.train ...`` can start it per process."""

import sys

from ..cli import main

if __name__ == "__main__":
    main(["train", *sys.argv[1:]], prog_name="waveunet")
