#!/bin/sh
# hello.sh: the smallest useful CGI program — a header block, a blank line, then a
# plain-text page with the request basics the server passed in the environment.
printf 'Content-Type: text/plain\r\n\r\n'
echo "Hello from $(basename "$0")"
echo "REQUEST_METHOD=$REQUEST_METHOD"
echo "SCRIPT_NAME=$SCRIPT_NAME"
echo "PATH_INFO=$PATH_INFO"
echo "QUERY_STRING=$QUERY_STRING"
echo "REMOTE_ADDR=$REMOTE_ADDR"
echo "SERVER_SOFTWARE=$SERVER_SOFTWARE"
