"""`python -m cortex_ray`: the driver of one group (see `cortex_ray.driver`)."""

import sys

from cortex_ray.driver import main

sys.exit(main())
