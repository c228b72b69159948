// Package testutil holds the helpers that Tandem's tests share: polling for a
// condition with a deadline (Eventually), finding free TCP ports and waiting
// for a listener (FreePort, WaitTCP), locating the repository and the built
// binaries (RepoRoot, Bin), and running a real process under a test (Start,
// Process) with its output kept in a log file whose tail is printed when the
// test fails.
//
// Tests never sleep to wait for something to happen: they poll with
// Eventually, which fails the test with the last observed error when the
// deadline passes.
package testutil
