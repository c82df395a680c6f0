"""One module per analysis; each keeps its SQL beside the function that runs it and
returns plain dicts. `common` holds what they share."""
