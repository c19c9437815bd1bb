#!/bin/sh
# Holds a --max-procs slot for two seconds.
sleep 2
echo "Content-Type: text/plain"
echo
echo "slow done"
