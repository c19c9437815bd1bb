#!/bin/sh
# Outlives any timeout a test sets: the bridge must end it.
sleep 30
echo "Content-Type: text/plain"
echo
echo "woke up"
