#!/bin/sh
# Dumps its environment and its open descriptors.
echo "Content-Type: text/plain"
echo
env
echo "--- fds"
ls /proc/self/fd
