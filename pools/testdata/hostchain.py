"""A batch function for host-call chains across pools."""

import slither


def call(batch):
    """Each item [name, *args] -> slither.host_call(name, *args), or the
    HostError's text after "error: "."""
    out = []
    for name, *args in batch:
        try:
            out.append(slither.host_call(name, *args))
        except slither.HostError as e:
            out.append("error: " + str(e))
    return out
