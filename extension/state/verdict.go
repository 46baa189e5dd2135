package state

import "strings"

// Cause is why an outcome (a stream, or an invocation that started none) did
// not end complete. It is decided once, in finalize; sinks read it, never a
// string rebuilt from it.
type Cause uint8

// The causes. Each is written as the TruncationReason property by Reason.
const (
	Complete  Cause = iota // not truncated
	NoEnd                  // no-end: the invocation ended normally, the stream's end never came
	EndStatus              // status-<end status>: the function ended the stream so (error, aborted, …)
	Short                  // short: the end reported fewer chunks than the stream announced
	Platform               // runtime-<status>: the platform says the invocation failed
	Shutdown               // shutdown-<reason>: the environment shut down with the stream open
)

// Class is whose failure an outcome is, which decides which SLOs count it.
type Class uint8

// The classes.
const (
	// Good: not truncated.
	Good Class = iota
	// Service: the service truncated a stream after its first byte; bad for
	// the completeness SLO.
	Service
	// BeforeFirstByte: the service failed before the caller got a byte (a
	// stream with nothing delivered, or an invocation that failed before
	// any stream started); bad for the completeness and the TTFB SLOs.
	BeforeFirstByte
	// Caller: the caller went away (status-aborted); neither SLO counts it.
	Caller
	// Unobserved: streamlens could not judge it (open at a spin-down, its
	// end never sent); neither SLO counts it.
	Unobserved
)

var classNames = [...]string{"good", "service", "before-first-byte", "caller", "unobserved"}

func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Verdict is the judgement of one outcome: its cause, the status or reason
// the cause names (the end's status, the platform's status, the shutdown
// reason; normalised), and its class.
type Verdict struct {
	Cause  Cause
	Detail string
	Class  Class
}

// Truncated reports whether the outcome did not end complete.
func (v Verdict) Truncated() bool { return v.Cause != Complete }

// Reason is the verdict as the TruncationReason property: "" when complete.
func (v Verdict) Reason() string {
	switch v.Cause {
	case NoEnd:
		return "no-end"
	case EndStatus:
		return "status-" + v.Detail
	case Short:
		return "short"
	case Platform:
		return "runtime-" + v.Detail
	case Shutdown:
		return "shutdown-" + v.Detail
	}
	return ""
}

// Failure is why an invocation ended abnormally, as the lifecycle learns it
// (the platform's status, a SHUTDOWN), before any stream is judged. The zero
// Failure is none.
type Failure struct {
	Cause  Cause // Platform or Shutdown; Complete for none
	Detail string
}

// Failed reports whether f is a failure.
func (f Failure) Failed() bool { return f.Cause != Complete }

// PlatformFailure is the failure the platform reports with status (from
// runtimeDone, or platform.report on Managed Instances); none for success.
func PlatformFailure(status string) Failure {
	if status = NormalStatus(status); status == "" || status == "success" {
		return Failure{}
	}
	return Failure{Cause: Platform, Detail: status}
}

// ShutdownFailure is the failure of a SHUTDOWN with reason, normalised
// (NormalShutdownReason).
func ShutdownFailure(reason string) Failure {
	return Failure{Cause: Shutdown, Detail: NormalShutdownReason(reason)}
}

// NormalShutdownReason maps a SHUTDOWN reason to Lambda's own words:
// spindown, timeout, failure. AWS's Runtime Interface Emulator (sam local)
// says Timeout, ReleaseFail, ReserveFail and SandboxTerminated where Lambda
// says timeout, failure and spindown; anything else is kept, made safe as a
// property value (lower case letters, digits and '-', at most 32).
func NormalShutdownReason(reason string) string {
	switch reason {
	case "Timeout":
		return "timeout"
	case "ReleaseFail", "ReserveFail":
		return "failure"
	case "SandboxTerminated":
		return "spindown"
	}
	return safeWord(reason)
}

// NormalStatus is a platform status (success, error, failure, timeout) made
// safe as a property value; "" for none.
func NormalStatus(status string) string { return safeWord(status) }

// safeWord lower-cases s and keeps letters, digits and '-' (others become
// '-'), at most 32 bytes: a status or reason from the platform's JSON ends up
// in a property value and a span attribute, and nothing there should be able
// to forge another field.
func safeWord(s string) string {
	if len(s) > 32 {
		s = s[:32]
	}
	ok := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			ok = false
			break
		}
	}
	if ok {
		return s
	}
	return strings.Map(func(r rune) rune {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-':
			return r
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, s)
}

// judge decides the verdict of an outcome with cause and detail, of which
// delivered payload chunks reached the caller (firstByte: a first byte is
// known to have been sent). It is the one place a class is decided.
func judge(cause Cause, detail string, firstByte bool) Verdict {
	v := Verdict{Cause: cause, Detail: detail}
	switch {
	case cause == Complete:
		v.Class = Good
	case cause == EndStatus && detail == "aborted":
		v.Class = Caller
	case cause == Shutdown && detail == "spindown":
		// The environment went away with the stream open and no failure
		// reported: its end was never sent (a stream the function left
		// open); nothing says the caller missed anything.
		v.Class = Unobserved
	case !firstByte:
		v.Class = BeforeFirstByte
	default:
		v.Class = Service
	}
	return v
}
