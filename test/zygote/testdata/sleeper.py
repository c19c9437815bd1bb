#!/usr/bin/python3
import os, subprocess, sys, time
print("Content-Type: text/plain")
print()
sys.stdout.flush()
# A grandchild in the script's process group, and a long sleep.
open(os.environ["QUERY_STRING"], "w").write(str(subprocess.Popen(["sleep", "300"]).pid))
time.sleep(300)
