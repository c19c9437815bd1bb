#!/usr/bin/python3
import os
print("Content-Type: text/plain")
print()
print("hello version=v1 pid=%d" % os.getpid())
