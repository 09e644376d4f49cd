"""image_pipeline: Pillow stages (on Debian's python3, where Pillow is
installed)."""

import io
import os
import resource

import slither
from PIL import Image, ImageDraw


def generate(batch):
    """Items {"id", "w", "h"} -> PNG bytes of a w x h picture."""
    out = []
    for it in batch:
        w, h = it["w"], it["h"]
        img = Image.new("RGB", (w, h), (20, 40, 80))
        d = ImageDraw.Draw(img)
        for i in range(0, max(w, h), max(1, max(w, h) // 16)):
            d.line([(i, 0), (0, i)], fill=(200, 120, 40), width=max(1, w // 200))
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=1)
        out.append(buf.getvalue())
    return out


def thumbnail(batch):
    """PNG bytes -> {"w", "h", "bytes", "peak_mb", "pid"}: a 128 px
    thumbnail, decoding the whole picture first."""
    out = []
    for data in batch:
        try:
            img = Image.open(io.BytesIO(data))
            img.load()
        except Exception as e:  # one bad picture fails alone, not its batch
            out.append(slither.failed(f"{type(e).__name__}: {e}"))
            continue
        img.thumbnail((128, 128))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append({"w": img.width, "h": img.height, "bytes": len(buf.getvalue()),
                    "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "pid": os.getpid()})
    return out
