# noshebang.py: no shebang line and no exec bit (mode 0644), on purpose. A bridge
# that picks the interpreter by extension (--interpreter .py=python3) still runs it;
# fcgiwrap answers 502.
import os
import sys

sys.stdout.write("Content-Type: text/plain\r\n\r\n")
print("ran without a shebang via", os.path.basename(sys.executable))
print("QUERY_STRING=" + os.environ.get("QUERY_STRING", ""))
