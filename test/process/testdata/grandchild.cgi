#!/bin/sh
# Leaves a grandchild behind (stdout redirected, so it does not hold the
# response open) and then blocks: an abort must end both.
sleep 300 >/dev/null 2>&1 &
sleep 30
echo "Content-Type: text/plain"
echo
echo "done"
