#!/bin/sh
# Ignores SIGTERM, and so does the sleep it starts: only SIGKILL ends them.
trap '' TERM
sleep 30
echo "Content-Type: text/plain"
echo
echo "survived"
