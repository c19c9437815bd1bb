// This file holds the translation of a CGI program's output into the
// response sent to the front end: the header block is collected (bounded),
// validated and normalised, then the body streams through unbuffered.

package cgi

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/cgibridge/cgibridge/bridge/cgiresp"
)

// errStopOutput tells a runner to stop reading the program's output: its
// header block was invalid, or it asked for a local redirect.
var errStopOutput = errors.New("program output no longer wanted")

// cgiOutput is the sink a runner copies program output into.
type cgiOutput struct {
	out       io.Writer
	maxHeader int

	acc  []byte
	head *cgiresp.Head
	err  error // the header block's fault, once known
}

func newCGIOutput(out io.Writer, maxHeader int) *cgiOutput {
	return &cgiOutput{out: out, maxHeader: maxHeader}
}

// Write takes program output. Until the header block is complete it is
// collected; after that it goes straight to the front end.
func (o *cgiOutput) Write(p []byte) (int, error) {
	switch {
	case o.err != nil:
		return 0, errStopOutput
	case o.head != nil:
		if o.head.Kind == cgiresp.LocalRedirect {
			return 0, errStopOutput
		}
		return o.out.Write(p)
	}
	o.acc = append(o.acc, p...)
	end := headerEnd(o.acc)
	if end < 0 {
		if len(o.acc) > o.maxHeader {
			o.parse() // reports the oversized block
			return 0, errStopOutput
		}
		return len(p), nil
	}
	if !o.parse() {
		return 0, errStopOutput
	}
	if o.head.Kind == cgiresp.LocalRedirect {
		return 0, errStopOutput
	}
	block := o.head.AppendHeader(nil)
	body := o.acc[o.head.Size:]
	o.acc = nil
	if _, err := o.out.Write(append(block, body...)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Interrupt abandons a write to the front end blocked on a slow web server
// (the program was stopped).
func (o *cgiOutput) Interrupt() {
	if i, ok := o.out.(interface{ Interrupt() }); ok {
		i.Interrupt()
	}
}

// Hold passes on that the program has finished: the rest of the output may
// go out with the request's end.
func (o *cgiOutput) Hold() {
	if h, ok := o.out.(interface{ Hold() }); ok {
		h.Hold()
	}
}

// parse runs the header parser over what was collected.
func (o *cgiOutput) parse() bool {
	br := bufio.NewReaderSize(bytes.NewReader(o.acc), max(len(o.acc), 16))
	h, err := cgiresp.ReadHead(br, cgiresp.Options{MaxHeaderBytes: o.maxHeader})
	if err != nil {
		o.err = err
		return false
	}
	o.head = h
	return true
}

// finish is called at the end of the program's output. It returns the
// fault of an output that never produced a valid header block.
func (o *cgiOutput) finish() error {
	if o.head == nil && o.err == nil {
		if len(o.acc) == 0 {
			o.err = cgiresp.ErrNoOutput
		} else {
			o.parse()
		}
	}
	return o.err
}

// started reports whether a response header has gone to the front end.
func (o *cgiOutput) started() bool {
	return o.head != nil && o.head.Kind != cgiresp.LocalRedirect
}

// headerEnd returns the index just past the blank line ending a header
// block, or -1.
func headerEnd(b []byte) int {
	if bytes.HasPrefix(b, []byte("\n")) || bytes.HasPrefix(b, []byte("\r\n")) {
		return bytes.IndexByte(b, '\n') + 1 // an empty block: the parser refuses it
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 {
		if j := bytes.Index(b[:i+1], []byte("\n\r\n")); j >= 0 {
			return j + 3
		}
		return i + 2
	}
	if j := bytes.Index(b, []byte("\n\r\n")); j >= 0 {
		return j + 3
	}
	return -1
}
