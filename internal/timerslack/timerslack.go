// Package timerslack sets the Linux timer slack of every thread of
// Tandem's long-running processes (tandem-broker, tandem-sidecar):
// how late the kernel may wake a thread from a timed sleep, so that it can
// serve several wake-ups at once (prctl PR_SET_TIMERSLACK; the kernel's
// default is 50 µs).
//
// Why: Go's scheduler monitor thread (sysmon) sleeps 20 µs at a time for a
// while every time a goroutine makes a system call after the process was
// idle, and keeps doing so while it finds a thread blocked in a system call
// (golang/go#18236: the tick is hard-coded). A Tandem process that moves a
// few thousand messages a second is idle between most of them, so its
// sysmon never leaves that fast loop: on the 2-core test VM each broker and
// sidecar woke it about 3,700 times a second, a third of all their thread
// switches. On a VM every wake-up of an idle virtual CPU is work for the
// host, and the six processes of a three-node cluster at 1000 records/s
// used 115% of one CPU, mostly in the kernel. With a 1 ms slack the kernel
// wakes sysmon at most about once a millisecond; the same load took 77-80%,
// and one-at-a-time acks=-1 latency fell (docs/benchmarks.md, "Timer
// slack").
//
// The slack must be in place before the Go runtime starts sysmon, which
// happens before any package's init. A thread's slack is inherited by the
// threads it creates and kept across execve, so Apply sets it on the
// calling thread and re-executes the program (/proc/self/exe, same
// arguments and environment, same process id). The second start finds the
// slack in place and returns at once.
//
// The price: a Go timer (time.Sleep, time.After, a deadline) may fire up to
// the slack late, and sysmon hands a thread that is blocked in a long
// system call (an fsync) over to other goroutines up to about the slack
// later than it would. Tandem's own timers are milliseconds or longer.
package timerslack

import "time"

// Default is the slack the servers use unless --timer-slack says otherwise.
const Default = time.Millisecond

// execMarker is set in the environment of the re-executed process, so
// that a kernel that does not keep the slack across execve (or a real-time
// scheduling policy, under which the slack is always zero) cannot make the
// process re-execute itself forever.
const execMarker = "TANDEM_TIMER_SLACK_EXEC"
