//go:build !linux

package wal

import "os"

func startWriteback(*os.File, int64, int64) {}

const writebackSupported = false

func releaseCache(*os.File, int64, int64) {}

const cacheReleaseSupported = false

// writeFrameAt writes hdr followed by parts at off (one WriteAt of a copy).
func writeFrameAt(f *os.File, off int64, hdr []byte, parts [][]byte) error {
	buf := append([]byte(nil), hdr...)
	for _, p := range parts {
		buf = append(buf, p...)
	}
	_, err := f.WriteAt(buf, off)
	return err
}

func syncData(f *os.File) error { return f.Sync() }
