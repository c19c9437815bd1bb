#!/bin/sh
# Outlasts a 100 ms timeout.
sleep 1
echo "Content-Type: text/plain"
echo
