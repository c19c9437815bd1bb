#!/bin/sh
# Starts a background subshell that inherits stdout, then answers and exits:
# the response must not wait for the subshell.
(sleep 30) &
echo "Content-Type: text/plain"
echo
echo "answered"
