package main

import (
	_ "github.com/alecthomas/kong"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/hashicorp/go-hclog"
	_ "golang.org/x/sys/unix"
)

func main() {}
