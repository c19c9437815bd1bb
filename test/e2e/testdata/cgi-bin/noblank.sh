#!/bin/sh
# noblank.sh: a header line but no blank line ending the header block.
printf 'Content-Type: text/plain\r\n'
