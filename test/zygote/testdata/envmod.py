# Reads the request's environment when imported: it must not be preloaded.
import os
MODE = os.environ.get("HTTP_X_MODE", "none")
