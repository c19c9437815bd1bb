#!/bin/sh
# Fails after a valid header.
echo "Content-Type: text/plain"
echo
echo "failing"
exit 1
