#!/bin/sh
# stream.sh: writes, waits a second, writes again. The first line must reach the
# client before the second exists — output is streamed, not buffered to the end.
printf 'Content-Type: text/plain\r\nX-Accel-Buffering: no\r\n\r\n'
echo first
sleep 1
echo second
