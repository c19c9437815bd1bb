#!/bin/sh
# bodylen.sh: prints CONTENT_LENGTH and how many bytes stdin really held.
printf 'Content-Type: text/plain\r\n\r\n'
echo "CONTENT_LENGTH=$CONTENT_LENGTH"
echo "READ=$(wc -c | tr -d ' ')"
