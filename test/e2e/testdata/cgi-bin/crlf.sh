#!/bin/sh
# crlf.sh: a header block with CRLF line ends.
printf 'Content-Type: text/plain\r\nX-Line-Ends: crlf\r\n\r\n'
echo 'crlf body'
