#!/bin/sh
# slow.sh: sleeps for the number of seconds given as the query string (?5, default
# 30), then answers. For exercising --timeout: the bridge should answer 504 and kill it.
secs=${QUERY_STRING:-30}
case $secs in *[!0-9]*|'') secs=30 ;; esac
sleep "$secs"
printf 'Content-Type: text/plain\r\n\r\n'
echo "slept $secs"
