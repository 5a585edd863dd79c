import sys

from avlib.study.main import main

sys.exit(main())
