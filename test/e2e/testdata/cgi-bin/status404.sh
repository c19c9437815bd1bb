#!/bin/sh
# status404.sh: a script choosing its own status; it must reach the client unchanged.
printf 'Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n'
echo 'no such thing'
