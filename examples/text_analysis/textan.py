"""text_analysis: the Python stage (runs in the embedded pool: it only
keeps per-worker state)."""

import os

import slither

POSITIVE = {"good", "great", "excellent", "happy", "bright", "calm", "strong", "clear"}
NEGATIVE = {"bad", "poor", "terrible", "sad", "dark", "noisy", "weak", "broken"}

# Per-worker state, keyed by worker id: a worker runs one batch at a time,
# so each entry has one writer. Not threading.local: the embedded pool's
# Direct mode runs a worker's batches on whichever OS thread submits them.
_docs = {}


@slither.thread_safe
def analyze(batch):
    """Items {"id", "words"} -> frequencies, readability, sentiment, and the
    worker's running document count."""
    out = []
    for doc in batch:
        words = doc["words"]
        freq = {}
        for w in words:
            freq[w] = freq.get(w, 0) + 1
        score = sum(1 for w in words if w in POSITIVE) - sum(1 for w in words if w in NEGATIVE)
        wid = slither.context().worker_id
        _docs[wid] = _docs.get(wid, 0) + 1
        out.append({
            "id": doc["id"], "freq": freq, "sentiment": score,
            "readability": round(sum(len(w) for w in words) / max(1, len(words)), 3),
            "worker": slither.context().worker_id, "pid": os.getpid(), "worker_docs": _docs[wid],
        })
    return out
