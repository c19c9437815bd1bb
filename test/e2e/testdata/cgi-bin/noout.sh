#!/bin/sh
# noout.sh: fails before writing anything; its stderr should end up in the log.
echo boom >&2
exit 1
