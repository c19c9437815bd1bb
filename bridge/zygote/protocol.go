// Package zygote is the warm runner for legacy Python and Perl CGI scripts
// that know nothing of FastCGI (--warm GLOB). For each (script, interpreter,
// interpreter flags, user) it starts a helper — a small Python or Perl
// program shipped inside the bridge's binary — that loads the interpreter
// and the script's own imports once, compiles the script, and keeps spare
// forked children. Each request goes to a spare, which takes the request's
// stdin, stdout and stderr as descriptors, installs its environment and runs
// the script as a fresh process would: nothing leaks between requests,
// because every request is a new process forked from the same pristine
// state. The script's stdio are the bridge's ordinary pipes, so header
// parsing, the output hold, streaming, stderr, timeouts and aborts are exec
// mode's own code (process.Supervise).
//
// Where a script cannot be warmed safely — a module that reads the request's
// environment at import, a Perl modulino, -T or unknown interpreter flags,
// threads or open files left by preloading — or no helper is ready, the
// request runs in exec mode, and the reason is logged and counted.
package zygote

// This file holds the protocol between the bridge and a helper; the helpers
// (helper.py, helper.pl) implement the other side.
//
// A helper is started as
//
//	INTERPRETER [FLAGS] -c|-e HELPER_SOURCE SCRIPT
//
// with the same interpreter, flags, user, rlimits and base environment exec
// mode would give the script, plus CGIBRIDGE_ZYGOTE_UID (the bridge's uid)
// and CGIBRIDGE_ZYGOTE_SPARES (how many spare children to keep). Its
// descriptors:
//
//	0  a listening unix socket in a private 0700 directory: one connection
//	   per request, from the bridge only (the helper checks SO_PEERCRED)
//	1  the control pipe, helper → bridge, line-oriented. The helper moves
//	   it to another descriptor at once and points 1 at 2, so what a
//	   preloaded module prints cannot garble it.
//	2  its own output, logged by the bridge
//
// Control lines, each "<letter> <text>\n":
//
//	F <path>    a file the helper's state depends on: the script, each module
//	            it preloaded. A change of one starts a new helper generation.
//	W <text>    a warning for the log (a module evicted from the preload)
//	C <reason>  the script cannot be warmed; the helper exits
//	R <n>       ready, n files preloaded: requests may come
//	X <pid> <s> request child pid exited with wait status s
//
// A request: the bridge connects and sends, in one sendmsg, SCM_RIGHTS with
// three descriptors (the script's stdin, stdout and stderr) and the start of
// the payload:
//
//	"CGB1" uint32 big-endian length, then that many bytes: NUL-terminated
//	fields: SCRIPT, CWD, ARGC, ARGV[0..ARGC-1], then NAME=VALUE until the end
//
// A spare child takes it, puts the descriptors on 0, 1 and 2, makes itself
// a process group, and answers "P<pid>\n" — from then on the request has
// started and is not retried elsewhere — or "E<reason>\n" when it refuses
// (another script, a bad payload). The connection then closes. The child's
// exit comes as an X line on the control pipe, from the helper, which waits
// for it. No P before the connection closes: the request never started, and
// exec mode serves it.

const (
	protoMagic = "CGB1"
	// maxPayload bounds a request's payload, as the params of a FastCGI
	// request are bounded (--max-params) plus the argv.
	maxPayload = 1 << 20

	envUID    = "CGIBRIDGE_ZYGOTE_UID"
	envSpares = "CGIBRIDGE_ZYGOTE_SPARES"
)
