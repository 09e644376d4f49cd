"""ml_scoring: scikit-learn models kept in each session (runs on Debian's
python3, where scikit-learn is installed; not in the embedded 3.13t)."""

import os

import numpy as np
import slither
from sklearn.linear_model import LogisticRegression


def train(batch):
    """[shift, seed] -> a ref to a model whose boundary is x1 + x2 = shift."""
    shift, seed = batch
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=shift / 2, scale=2.0, size=(400, 2))
    y = (X[:, 0] + X[:, 1] > shift).astype(int)
    model = LogisticRegression().fit(X, y)
    handle = slither.ref(model)
    return [handle, {"model_id": id(model), "pid": os.getpid(), "worker": slither.context().worker_id}]


def score(batch):
    """[[ref, x1, x2], ...] -> [prediction, model id, pid]."""
    out = []
    for handle, x1, x2 in batch:
        model = slither.deref(handle)
        out.append([int(model.predict([[x1, x2]])[0]), id(model), os.getpid()])
    return out
