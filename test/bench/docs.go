// This file holds the fixed prose of docs/benchmarks.md around the generated results.
package main

import "strings"

// docsIntro explains the method; the results follow it.
const docsIntro = `# Benchmarks: cgibridge against fcgiwrap

This page is written by the benchmark command; edit ` + "`test/bench/docs.go`" + `, not the page.

## How it is measured

- **One nginx, two identical locations.** ` + "`/cgb/`" + ` goes to cgibridge and ` + "`/fw/`" + ` to
  fcgiwrap 1.1.0 (Debian's package, started by ` + "`spawn-fcgi -n … -- fcgiwrap -c N`" + `), with the
  same ` + "`fastcgi_params`" + `, a new FastCGI connection per request for both (nginx's default),
  and HTTP keep-alive between the load generator and nginx. fcgiwrap's worker count equals
  cgibridge's ` + "`--max-procs`" + `.
- **Same programs, same user.** Each server has its own copy of the same files: C hello, sh,
  Perl and Python hello (shebang lines with absolute interpreter paths, so both servers start
  them the same way), a C program that sleeps 100 ms, and a C program that echoes a 1 MiB POST
  body. Run as root, cgibridge keeps its default (programs as ` + "`nobody`" + `, the bridge itself
  drops to nobody) and fcgiwrap is started as nobody:nogroup, so both fork the same way.
- **cgibridge runs with ` + "`--log-level warn`" + `.** At the default info level it logs one
  access line per request, which fcgiwrap does not; nginx's own access log is on for both.
- **Alternation.** Every cell (program × concurrency, or program × offered rate) measures the two
  back to back, in the order A B, then B A for the next cell, so drift on a shared machine hits
  both. Ratios are computed per pair, then the median over repeats is reported with the range.
- **Closed loop** (maximum throughput): N workers, each sending its next request when the last
  one ended; every response's status and whole body are checked.
- **Open loop** (latency users feel): Poisson arrivals at a fixed offered rate, each request
  sent at its scheduled time whatever happened to earlier ones, latency measured from the
  scheduled time (so queueing is not hidden: no coordinated omission). The ladder of rates is
  a fraction of the higher of the two closed-loop throughputs at concurrency 64, up past
  saturation. A run is invalid if any request failed or the generator itself fell behind.
- **Cost per request**: bare ` + "`os/exec`" + ` of the C hello (stdout to a pipe, read all, wait)
  against one raw FastCGI request at a time to each server over its unix socket, nginx left out.
- **Memory**: VmRSS of the cgibridge process (peak from sampling every 2 ms and VmHWM after
  resetting it) and the VmRSS of fcgiwrap's master and workers summed, idle and during an upload
  to a program that counts its stdin.
- **Warm mode** (its own section after the exec-mode ones): FastCGI programs kept running, a
  libfcgi C hello and a php-cgi hello. A ` + "`cgibridge serve --fastcgi GLOB --fastcgi-procs N`" + `
  pool, reached through an nginx upstream with ` + "`keepalive 32`" + ` and ` + "`fastcgi_keep_conn on`" + `,
  against nginx talking straight to the same program under ` + "`spawn-fcgi -F N`" + `, and against
  the exec-mode cgibridge; CPU time per request of cgibridge, nginx and the programs; the
  bridge's resident set holding four pools of eight idle children.
- **Interpreter zygote** (its own section after warm mode): Python and Perl CGI scripts under
  ` + "`cgibridge serve --warm '*.cgi'`" + ` (a preloading helper per script, a fork per request)
  against the same files through the exec-mode cgibridge, at concurrency 1 and 8; whether each
  request was served warm is read from the bridge's status page; the RSS and PSS of sixteen
  warm scripts' helpers and their spares, and of the bridge.

## Reproduce

As root on a machine with ` + "`nginx-light fcgiwrap spawn-fcgi gcc perl python3 php-cgi libfcgi-dev`" + `, from the
module root:

    go run ./test/bench              # full run, about 12 minutes on 2 cores (4 of them warm mode)
    go run ./test/bench -quick       # the machinery only, numbers not meaningful
    go run ./test/bench -warm=false  # without the warm-mode section
    go run ./test/bench -zygote=false  # without the interpreter-zygote section
    go test ./test/bench/            # smoke test: a few hundred checked requests per program

Raw results: ` + "`test/bench/results/results.json`" + `; plots: ` + "`test/bench/results/*.svg`" + `.

## Caveat: noise

These numbers come from a 2-core virtual machine shared with other work running at the same
time. Absolute rates and latencies drift between runs and even within one; only the ratios of
back-to-back pairs from the same run mean much, and ratios within a few percent of 1 are ties.
The range next to each ratio shows the spread over repeats.

## Results

`

// DocsPage renders the whole of docs/benchmarks.md; plotDir is the directory of the
// SVG plots relative to the page.
func DocsPage(res *Results, plotDir string) string {
	var b strings.Builder
	b.WriteString(docsIntro)
	b.WriteString(Markdown(res, plotDir))
	return b.String()
}
