// Command floorext is the floor under any extension's cost to a function's
// first byte: it registers, then asks event/next again as soon as an event
// comes, with blocking system calls on one thread (no HTTP library, no Go
// network poller) and, as streamlens does by default, under SCHED_IDLE.
// Nothing an extension registered for INVOKE does at invoke time can cost
// less. With FLOOREXT_EVENTS=SHUTDOWN it registers for SHUTDOWN only and is
// never woken by an invocation: what remains is the cost of one more
// process in the environment that is frozen and thawed with it.
package main

import (
	"bytes"
	"net"
	"os"
	"strconv"
	"syscall"

	"github.com/streamlens/streamlens/extension/sched"
)

func main() {
	if _, err := sched.Idle(); err != nil {
		os.Exit(9)
	}
	c, err := net.Dial("tcp", os.Getenv("AWS_LAMBDA_RUNTIME_API"))
	if err != nil {
		os.Exit(1)
	}
	f, err := c.(*net.TCPConn).File() // a blocking copy: no network poller from here on
	if err != nil {
		os.Exit(2)
	}
	fd := int(f.Fd())
	events := `"INVOKE","SHUTDOWN"`
	if os.Getenv("FLOOREXT_EVENTS") == "SHUTDOWN" {
		events = `"SHUTDOWN"`
	}
	body := `{"events":[` + events + `]}`
	send(fd, "POST /2020-01-01/extension/register HTTP/1.1\r\nHost: x\r\nLambda-Extension-Name: floorext\r\n"+
		"Content-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	buf := make([]byte, 64<<10)
	const idHeader = "lambda-extension-identifier: "
	resp := bytes.ToLower(read(fd, buf))
	i := bytes.Index(resp, []byte(idHeader))
	if i < 0 {
		os.Exit(3)
	}
	id := resp[i+len(idHeader):]
	id = id[:bytes.IndexByte(id, '\r')]
	next := "GET /2020-01-01/extension/event/next HTTP/1.1\r\nHost: x\r\nLambda-Extension-Identifier: " + string(id) + "\r\n\r\n"
	for {
		send(fd, next)
		if bytes.Contains(read(fd, buf), []byte(`"SHUTDOWN"`)) {
			return
		}
	}
}

func send(fd int, s string) {
	if _, err := syscall.Write(fd, []byte(s)); err != nil {
		os.Exit(4)
	}
}

// read reads one whole answer: its header and a Content-Length body.
func read(fd int, buf []byte) []byte {
	n := 0
	for {
		m, err := syscall.Read(fd, buf[n:])
		if err != nil || m <= 0 {
			os.Exit(5)
		}
		n += m
		h := bytes.Index(buf[:n], []byte("\r\n\r\n"))
		if h < 0 {
			continue
		}
		length := 0
		head := bytes.ToLower(buf[:h+2])
		if j := bytes.Index(head, []byte("content-length: ")); j >= 0 {
			e := bytes.IndexByte(head[j:], '\r')
			length, _ = strconv.Atoi(string(head[j+len("content-length: ") : j+e]))
		}
		if n >= h+4+length {
			return buf[:n]
		}
	}
}
