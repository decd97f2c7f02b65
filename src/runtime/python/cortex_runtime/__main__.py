"""`python3 -m cortex_runtime`, with this package's directory on sys.path: the shim, as
`cortex_shim.py` runs it."""

from cortex_runtime.main import run

run()
