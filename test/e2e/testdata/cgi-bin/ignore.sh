#!/bin/sh
# ignore.sh: answers without reading its request body at all.
printf 'Content-Type: text/plain\r\n\r\n'
echo ignored
