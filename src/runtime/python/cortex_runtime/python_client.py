"""The `python_client` handed to `PythonPredictor.__init__` when the API names its models
(`predictor.model_path` or `predictor.models`), as cortex 0.22 had it: `get_model(model_name,
model_version)` returns what the predictor's `load_model(model_path)` made of that version."""


class PythonClient:
    def __init__(self, store):
        self._store = store

    def get_model(self, model_name=None, model_version="latest"):
        """The model `model_name` (any name, or none, when the API has one `model_path`) at
        `model_version` (a number, or "latest"/None for the highest there is now)."""
        return self._store.get(model_name, model_version)
