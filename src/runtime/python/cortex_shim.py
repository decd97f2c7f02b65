"""The cortex python predictor shim: what the cortex server runs (`python3 -u cortex_shim.py`)
for a python predictor. The shim is the `cortex_runtime` package beside this file (its doc:
cortex_runtime/main.py); run as a script, this file puts the package's directory first on
sys.path, where predictor code finds it too (`import cortex_runtime`)."""

from cortex_runtime.main import run

run()
