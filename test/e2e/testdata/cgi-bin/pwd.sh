#!/bin/sh
# pwd.sh: prints its working directory, which the bridge must set to the script's own.
printf 'Content-Type: text/plain\r\n\r\n'
pwd
