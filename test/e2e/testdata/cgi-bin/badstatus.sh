#!/bin/sh
# badstatus.sh: a Status header that is not a number: an invalid CGI response.
printf 'Status: abc\r\nContent-Type: text/plain\r\n\r\n'
echo 'should not be seen'
