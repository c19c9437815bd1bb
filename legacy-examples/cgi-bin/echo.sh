#!/bin/sh
# echo.sh: sends the request body back unchanged. Large uploads and bodies that
# arrive slowly both go through it; cat copies stdin until EOF.
printf 'Content-Type: application/octet-stream\r\n\r\n'
cat
