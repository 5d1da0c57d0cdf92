// Transport anchor for bench_grpc: a minimal gRPC-Go server (the implementation the reference
// uses) with LookupRoute and LookupPDRoute answering fixed responses, so the latency of the
// transport and the VM can be told apart from ours under the same placement and load.
//
// Usage: grpc-anchor --addr 127.0.0.1:PORT
// Messages stay bytes (a pass-through codec): no protobuf code generation is needed, and each
// handler sends the timing trailer ic-server-timing (arrival, handler start, handler end in
// CLOCK_MONOTONIC ns) like inferencecache-server --grpc-timing-trailer.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = append((*(v.(*[]byte)))[:0], data...)
	return nil
}
func (rawCodec) String() string { return "raw" }

func monoNs() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Protobuf wire helpers: a length-delimited field and a varint field.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
func appendBytes(b []byte, field int, v []byte) []byte {
	b = appendVarint(b, uint64(field<<3|2))
	b = appendVarint(b, uint64(len(v)))
	return append(b, v...)
}

// LookupRouteResponse{replica_scores: [{replica_id, score 1, matched_tokens 2048}],
// reason_code: PREFIX_MATCH, lookup_latency_us: 3}: the shape of ours for a 128-block match.
func lookupResponse() []byte {
	var score []byte
	score = appendBytes(score, 1, []byte("replica-07"))
	score = append(score, 2<<3|5, 0, 0, 0x80, 0x3f) // float 1.0
	score = appendVarint(score, 3<<3|0)
	score = appendVarint(score, 2048)
	score = append(score, 4<<3|5, 0, 0, 0x80, 0x3f)
	var r []byte
	r = appendBytes(r, 1, score)
	r = appendBytes(r, 2, []byte("PREFIX_MATCH"))
	r = appendVarint(r, 3<<3|0)
	return appendVarint(r, 3)
}

func fixed(resp []byte) func(interface{}, context.Context, func(interface{}) error, grpc.UnaryServerInterceptor) (interface{}, error) {
	return func(_ interface{}, ctx context.Context, dec func(interface{}) error, _ grpc.UnaryServerInterceptor) (interface{}, error) {
		arrive := monoNs()
		var req []byte
		if err := dec(&req); err != nil {
			return nil, err
		}
		out := resp
		now := monoNs()
		_ = grpc.SetTrailer(ctx, metadata.Pairs("ic-server-timing", fmt.Sprintf("%d,%d,%d", arrive, arrive, now)))
		return &out, nil
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	flag.Parse()
	lis, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("grpc-anchor: listen %s: %v", *addr, err)
	}
	s := grpc.NewServer(grpc.CustomCodec(rawCodec{}))
	desc := grpc.ServiceDesc{
		ServiceName: "inferencecache.v1alpha1.InferenceCache",
		HandlerType: (*interface{})(nil),
		Methods: []grpc.MethodDesc{
			{MethodName: "LookupRoute", Handler: fixed(lookupResponse())},
			{MethodName: "LookupPDRoute", Handler: fixed([]byte{})},
		},
	}
	s.RegisterService(&desc, struct{}{})
	health := grpc.ServiceDesc{
		ServiceName: "grpc.health.v1.Health",
		HandlerType: (*interface{})(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: fixed([]byte{8, 1})}}, // SERVING
	}
	s.RegisterService(&health, struct{}{})
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		s.Stop()
	}()
	if err := s.Serve(lis); err != nil {
		log.Fatalf("grpc-anchor: serve: %v", err)
	}
}
