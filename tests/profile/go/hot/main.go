// Command hot is the Go program the pprof tests profile: it serves
// net/http/pprof on a loopback address, burns CPU in main.hotLoop and keeps
// a known amount of memory that main.allocRetained allocated.
//
//	hot -addr 127.0.0.1:6060   (or HOT_ADDR=127.0.0.1:6060 hot)
//
// Only the standard library: it builds offline.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

// retained keeps allocRetained's memory alive, so it stays in the heap profile.
var retained [][]byte

// hotLoop is where the CPU time goes: a tight loop with no calls, never inlined,
// so every CPU sample taken in it has main.hotLoop as its leaf.
//
//go:noinline
func hotLoop(n int) uint64 {
	x := uint64(1)
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
		x ^= x >> 29
	}
	return x
}

// allocRetained allocates chunks*size bytes that stay reachable. Chunks of 4 MiB
// are each far above the heap profile's 512 KiB sampling interval, so every one
// is sampled and the profile's inuse_space for this function is all but exact.
//
//go:noinline
func allocRetained(chunks, size int) [][]byte {
	out := make([][]byte, chunks)
	for i := range out {
		b := make([]byte, size)
		b[size-1] = byte(i)
		out[i] = b
	}
	return out
}

// step is small enough for the compiler to inline into burn: the samples then
// pass through a location with two lines (main.step inlined in main.burn).
func step(acc uint64) uint64 {
	return acc + hotLoop(1<<22)
}

// sink keeps hotLoop's result, so its work is not dead code. Only burn writes it.
var sink uint64

func burn() {
	for {
		sink = step(sink)
	}
}

func main() {
	addr := flag.String("addr", os.Getenv("HOT_ADDR"), "listen address (default $HOT_ADDR, else 127.0.0.1:6060)")
	heapMB := flag.Int("heap-mb", 32, "MiB that main.allocRetained allocates and keeps (a multiple of 4)")
	flag.Parse()
	if *addr == "" {
		*addr = "127.0.0.1:6060"
	}

	retained = allocRetained(*heapMB/4, 4<<20)
	// The heap profile shows the state as of the last completed GC.
	runtime.GC()

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	go burn()
	fmt.Printf("listening on http://%s\n", ln.Addr())
	log.Fatal(http.Serve(ln, nil))
}
