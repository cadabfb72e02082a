"""Training: corpus data, length-grouped batches, frozen-encoder feature cache, the accelerate loop.

``alarm train`` / :func:`alarm.training.trainer.train` run the paper's recipe by default;
``alarm features extract`` / :func:`alarm.training.cache.extract_features` fill the cache.
"""
