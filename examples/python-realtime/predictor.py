import json
import math
import os


class PythonPredictor:
    def __init__(self, config):
        # the working directory is the project directory; resolve relative paths against it
        path = config["model_path"]
        with open(os.path.abspath(path)) as f:
            model = json.load(f)
        self.features = model["features"]
        self.centroids = model["centroids"]

    def predict(self, payload):
        # accepts {"sepal_length": ..., ...} or a list of the 4 features in model order
        if isinstance(payload, dict):
            x = [float(payload[name]) for name in self.features]
        else:
            x = [float(v) for v in payload]
        if len(x) != len(self.features):
            raise ValueError("expected %d features, got %d" % (len(self.features), len(x)))
        return min(self.centroids, key=lambda label: math.dist(x, self.centroids[label]))
