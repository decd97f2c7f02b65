"""The python shim's tests (stdlib unittest), one module per concern of `cortex_runtime`.

Run: cd src/runtime/python && python3 -m unittest discover -s tests -t .
"""
