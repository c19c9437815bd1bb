#!/usr/bin/python3
import envmod
print("Content-Type: text/plain")
print()
print("mode", envmod.MODE)
