"""``python -m avlib.train [--name value ...]``, also under ``torchrun -m avlib.train`` (see ``avlib.train.launch``)."""

import sys

from avlib.train.launch import main

sys.exit(main())
