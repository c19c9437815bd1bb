// This file holds the stderr sink: a program's standard error goes to the
// web server (FastCGI STDERR records) and/or the bridge's log, and its last
// bytes are kept for the log line of a failed request.

package cgi

import (
	"bytes"
	"io"
	"strings"
)

type stderrSink struct {
	fcgi io.Writer // the request's STDERR stream, or nil
	log  *reqLog
	mode StderrMode
	line []byte // partial line for the log
	last []byte // tail, at most tailLen
}

const (
	tailLen    = 1024
	maxLogLine = 2048
)

func newStderrSink(fcgi io.Writer, log *reqLog, mode StderrMode) *stderrSink {
	return &stderrSink{fcgi: fcgi, log: log, mode: mode}
}

func (s *stderrSink) Write(p []byte) (int, error) {
	s.last = append(s.last, p...)
	if len(s.last) > tailLen {
		s.last = append(s.last[:0], s.last[len(s.last)-tailLen:]...)
	}
	if s.mode != StderrLog {
		s.fcgi.Write(p)
	}
	if s.mode != StderrFCGI {
		s.line = append(s.line, p...)
		for {
			i := bytes.IndexByte(s.line, '\n')
			if i < 0 {
				break
			}
			s.emit(s.line[:i])
			s.line = s.line[i+1:]
		}
		if len(s.line) > maxLogLine {
			s.emit(s.line)
			s.line = s.line[:0]
		}
	}
	return len(p), nil
}

func (s *stderrSink) emit(line []byte) {
	line = bytes.TrimRight(line, "\r")
	if len(line) > maxLogLine {
		line = line[:maxLogLine]
	}
	s.log.Info("stderr", "line", string(line))
}

func (s *stderrSink) flush() {
	if len(s.line) > 0 && s.mode != StderrFCGI {
		s.emit(s.line)
		s.line = nil
	}
}

func (s *stderrSink) tail() string {
	return strings.TrimSpace(strings.ToValidUTF8(string(s.last), "?"))
}
