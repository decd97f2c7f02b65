# A BatchAPI predictor (cortex 0.2x batch interface): each batch is a list of numbers; the sum
# of each batch, times `scale` from the config, is written to the directory `results_dir`
# names (when the job's config gives one), one file per batch. on_job_complete writes the
# total once every batch is done.

import json
import os


class PythonPredictor:
    def __init__(self, config, job_spec):
        self.scale = config.get("scale", 1)
        self.results_dir = config.get("results_dir")
        self.job_id = job_spec["job_id"]
        print("worker of job %s ready (scale %s)" % (self.job_id, self.scale))

    def predict(self, payload, batch_id):
        total = sum(payload) * self.scale
        if self.results_dir:
            with open(os.path.join(self.results_dir, batch_id + ".json"), "w") as f:
                json.dump({"batch_id": batch_id, "sum": total}, f)
        print("batch %s: sum %s" % (batch_id, total))

    def on_job_complete(self):
        if not self.results_dir:
            return
        total = 0
        for name in os.listdir(self.results_dir):
            if name.endswith(".json") and name != "total.json":
                with open(os.path.join(self.results_dir, name)) as f:
                    total += json.load(f)["sum"]
        with open(os.path.join(self.results_dir, "total.json"), "w") as f:
            json.dump({"total": total}, f)
