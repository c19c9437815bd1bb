// This file holds the answer: how a run's Result and the program's output
// become the response's status, the log line that explains it, and the
// outcome counted. Every status the handler gives is decided here.

package cgi

import (
	"context"
	"errors"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/cgibridge/cgibridge/bridge"
	"github.com/cgibridge/cgibridge/bridge/cgiresp"
	"github.com/cgibridge/cgibridge/bridge/runner"
	"github.com/cgibridge/cgibridge/bridge/status"
	"github.com/cgibridge/cgibridge/cgienv"
)

// conclude answers the request from how its run ended. It returns a local
// redirect's location, or "".
func (h *Handler) conclude(x *exchange, cfg *Config, job *runner.Job, out *cgiOutput, errSink *stderrSink, log *reqLog) string {
	res := &x.res
	log.with("runner", res.Runner)
	if res.PID != 0 {
		log.with("pid", res.PID)
	}
	if res.Cold != "" {
		log.Debug("served in exec mode", "cold", res.Cold)
	}
	if out.started() {
		// Whatever happens next, this status has gone to the front end.
		x.status = out.head.Status
	}
	switch {
	case res.Err != nil && !res.Started:
		h.notStarted(x, job, log, res.Err)
	case res.Cause != nil && res.TimedOut():
		x.outcome = status.Timeout
		log.Warn("program timed out", "timeout", cfg.Timeout, "exit", res.ExitString(), "killed", res.Killed)
		if !out.started() {
			h.refuse(x, status.Timeout, 504, "the program did not answer in time")
		}
	case res.Cause != nil:
		x.outcome = status.Aborted
		log.Info("program stopped: request ended", "cause", res.Cause, "exit", res.ExitString(), "killed", res.Killed)
	case res.Err != nil:
		// A persistent child failed the request after it began.
		x.outcome = status.Failed
		log.Error("program failed mid-request", "error", res.Err, "program", job.Program, "stderr_tail", errSink.tail())
		if !out.started() {
			h.refuse(x, status.Failed, 502, "the program failed before it answered")
		}
	case out.started():
		if res.Lingered {
			log.Warn("descendants held the output open after the program exited; ended them")
		}
	default:
		if out.head != nil && out.head.Kind == cgiresp.LocalRedirect {
			return out.head.Location
		}
		ferr := out.finish()
		log.Error("bad CGI response", "error", ferr, "exit", res.ExitString(), "stderr_tail", errSink.tail())
		h.refuse(x, status.Failed, 502, "the program's response was not valid CGI output")
	}
	return ""
}

// notStarted answers a job that never ran: the classic causes of a failed
// exec get their own message, so a missing shebang is not an unexplained 502.
func (h *Handler) notStarted(x *exchange, job *runner.Job, log *reqLog, err error) {
	var se *runner.StartError
	switch {
	case errors.Is(err, runner.ErrOverloaded):
		active, queued, limit := h.disp.Limits(job)
		log.Warn("overloaded: no free slot", "limit", limit, "running", active, "queued", queued)
		h.refuse(x, status.Refused, 503, "too many programs running; try again shortly")
	case errors.Is(err, runner.ErrDraining):
		log.Info("refused: the bridge is shutting down")
		h.refuse(x, status.Refused, 503, "the bridge is shutting down")
	case errors.As(err, &se):
		h.startFailed(x, job, log, se)
	default:
		log.Error("no runner could serve the request", "error", err)
		h.refuse(x, status.Failed, 503, "no runner could serve the request")
	}
}

func (h *Handler) startFailed(x *exchange, job *runner.Job, log *reqLog, se *runner.StartError) {
	switch {
	case se.Kind == runner.StartNotExecutable:
		log.Error("cannot execute: no #! line and not a binary; add a shebang or map its extension with --interpreter", "error", se.Err)
		h.refuse(x, status.Failed, 502, "the program cannot be executed")
	case se.Kind == runner.StartNotFound && job.Interpreted:
		log.Error("interpreter not found; install it or change --interpreter", "interpreter", job.Program, "error", se.Err)
		h.refuse(x, status.Failed, 502, "the program's interpreter is missing")
	case se.Kind == runner.StartNotFound:
		log.Error("cannot execute: the program or its #! interpreter is missing", "error", se.Err)
		h.refuse(x, status.Failed, 502, "the program cannot be executed")
	case se.Kind == runner.StartPermission:
		log.Error("cannot execute: permission denied", "user", userName(job), "error", se.Err)
		h.refuse(x, status.Refused, 403, "the program may not be executed")
	case se.Kind == runner.StartSandbox:
		log.Error("cannot set up the program's sandbox; not running it unconfined", "error", se.Err)
		h.refuse(x, status.Failed, 503, "the program's sandbox could not be set up; try again shortly")
	default:
		log.Error("cannot start the program", "error", se.Err)
		h.refuse(x, status.Failed, 502, "the program could not be started")
	}
}

// refuseResolve answers a request the resolver or environment builder
// turned down.
func (h *Handler) refuseResolve(x *exchange, err error) {
	var ce *cgienv.Error
	if errors.As(err, &ce) {
		x.log.Info("refused", "status", ce.Status, "reason", ce.LogReason(), "path", ce.Path)
		h.refuse(x, status.Refused, ce.Status, ce.Reason)
		return
	}
	x.log.Error("cannot prepare the program", "error", err)
	h.refuse(x, status.Failed, 500, "internal error")
}

// refuse gives the request an answer of the bridge's own.
func (h *Handler) refuse(x *exchange, o status.Outcome, code int, reason string) {
	x.outcome = o
	x.r.Refuse(code, reason)
}

// accessLine writes the request's access line and counts it.
func (h *Handler) accessLine(x *exchange, cfg *Config) {
	r := x.r
	d := time.Since(r.Start)
	code, outcome := x.status, x.outcome
	if ref := r.Refused(); ref != 0 && code == 0 {
		code = ref
		if outcome == status.OK {
			outcome = status.Refused // refused by the server itself (413, 431, 503)
		}
	}
	switch cause := context.Cause(r.Context()); {
	case cause == nil:
	case outcome == status.Timeout:
		// The timeout came first; cutting its blocked write to the front
		// end is what closed the connection.
	case errors.Is(cause, bridge.ErrAborted), errors.Is(cause, bridge.ErrConnClosed):
		outcome = status.Aborted
	case errors.Is(cause, bridge.ErrShutdown) && outcome == status.OK:
		outcome = status.Aborted
	}
	slow := cfg.Slow > 0 && d >= cfg.Slow
	h.stats.Done(code, outcome, d, r.Body.Size(), r.Stdout.Written(), slow)
	if !h.log.IsInfo() {
		return // --log-level warn: no access lines, and nothing built for one
	}
	args := []any{
		"req", r.Serial,
		"method", r.Param("REQUEST_METHOD"),
		"uri", r.Param("REQUEST_URI"),
		"script", x.script,
		"status", code,
		"outcome", outcome.String(),
		"bytes_in", r.Body.Size(),
		"bytes_out", r.Stdout.Written(),
		"duration", d.Round(time.Microsecond),
		"exit", x.res.ExitString(),
		"runner", x.res.Runner,
	}
	if x.res.Cold != "" {
		args = append(args, "cold", x.res.Cold)
	}
	h.log.Info("request", args...)
}

// userName names the user a job runs as, for log lines.
func userName(job *runner.Job) string {
	if job.Identity != nil {
		return job.Identity.String()
	}
	if u, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return u.Username
	}
	return strconv.Itoa(os.Geteuid())
}
