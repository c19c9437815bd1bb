#!/usr/bin/python3
import os
import versionmod
print("Content-Type: text/plain")
print()
print("script=s1 module=%s" % versionmod.VERSION)
