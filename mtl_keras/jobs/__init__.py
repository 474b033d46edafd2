"""End-to-end jobs (`mtl-keras train <job>`): data, model, training, evaluation and a run folder."""

from mtl_keras.jobs.census import CensusJob
from mtl_keras.jobs.text import TextJob
from mtl_keras.jobs.vision import VisionJob

JOBS = {"text": TextJob, "census": CensusJob, "vision": VisionJob}
