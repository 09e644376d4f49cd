"""data_etl: validation against the schema the Go side attached to each row,
with a per-worker audit log."""

import os

_audit = []  # this worker's log: (row id, schema version)


def validate(batch):
    out = []
    for item in batch:
        row, schema = item["row"], item["schema"]
        errors = [f"missing {f}" for f in schema["required"] if not row.get(f)]
        if schema["email_at"] and "@" not in (row.get("email") or ""):
            errors.append("email without @")
        _audit.append((row["id"], schema["version"]))
        out.append({"row": row, "valid": not errors, "errors": errors, "schema": schema["version"],
                    "pid": os.getpid(), "audit": len(_audit)})
    return out
