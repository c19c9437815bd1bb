# A module of the probe's own: its state must start fresh for every request.
hits = []
