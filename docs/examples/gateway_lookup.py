#!/usr/bin/python3
"""A gateway's side of inference-cache: ask LookupRoute which replica holds a prompt's prefix warm,
route there, fall back to your own choice on an empty answer. Two ways to send the prompt:

  tokens  token_ids: the server cuts them into --engine-block-size blocks and hashes them itself.
  chain   block_hashes + block_token_counts computed here (XXH3-64, seed 1337, chained, 8 bytes
          big-endian), so the prompt never leaves the gateway in any form but hashes.

Usage: gateway_lookup.py SERVER MODEL TENANT FIRST_TOKEN COUNT [--block-size=16] [--ca=ca.crt]
                         [--deadline-ms=50]
(the prompt is the COUNT token ids FIRST_TOKEN, FIRST_TOKEN+1, ...: what the quickstart's engine
simulator serves). Needs python3-grpcio, python3-grpc-tools and python3-xxhash; run from the
repository root (it compiles proto/ on the fly)."""
import argparse
import struct
import sys
import tempfile

import grpc
import xxhash
from grpc_tools import protoc

SEED = 1337


def block_chain(tokens, block_size):
    """The hash of every full block, each chained to the one before (a trailing partial block is
    not hashed): content_i = XXH3-64(block i's tokens as little-endian u32), prefix_0 = content_0,
    prefix_i = XXH3-64(LE64(prefix_{i-1}) || LE64(content_i)). Returned in the 8-byte big-endian
    wire form, with each block's token count."""
    hashes, counts, prev = [], [], None
    for i in range(len(tokens) // block_size):
        block = tokens[i * block_size:(i + 1) * block_size]
        content = xxhash.xxh3_64_intdigest(struct.pack("<%dI" % len(block), *block), seed=SEED)
        prev = content if prev is None else xxhash.xxh3_64_intdigest(
            struct.pack("<QQ", prev, content), seed=SEED)
        hashes.append(struct.pack(">Q", prev))
        counts.append(block_size)
    return hashes, counts


def stubs():
    out = tempfile.mkdtemp()
    if protoc.main(["protoc", "-Iproto", "--python_out=" + out, "--grpc_python_out=" + out,
                    "proto/inferencecache/v1alpha1/inferencecache.proto"]) != 0:
        sys.exit("cannot compile proto/ (run from the repository root)")
    sys.path.append(out)
    from inferencecache.v1alpha1 import inferencecache_pb2, inferencecache_pb2_grpc
    return inferencecache_pb2, inferencecache_pb2_grpc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("server")
    ap.add_argument("model")
    ap.add_argument("tenant")
    ap.add_argument("first_token", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--block-size", type=int, default=16)
    ap.add_argument("--ca", help="PEM CA of the server's TLS certificate (config/tls)")
    ap.add_argument("--deadline-ms", type=int, default=50,
                    help="routing must never wait on the cache plane: past this, fall back")
    a = ap.parse_args()
    pb, rpc = stubs()
    channel = (grpc.secure_channel(a.server, grpc.ssl_channel_credentials(open(a.ca, "rb").read()))
               if a.ca else grpc.insecure_channel(a.server))
    stub = rpc.InferenceCacheStub(channel)
    tokens = list(range(a.first_token, a.first_token + a.count))
    hashes, counts = block_chain(tokens, a.block_size)
    forms = {"tokens": dict(token_ids=tokens),
             "chain": dict(block_hashes=hashes, block_token_counts=counts)}
    for form, prompt in forms.items():
        try:
            r = stub.LookupRoute(pb.LookupRouteRequest(model_id=a.model, tenant_id=a.tenant,
                                                       hash_scheme="vllm", **prompt),
                                 timeout=a.deadline_ms / 1000)
        except grpc.RpcError as e:  # unreachable, overloaded: route as if there were no hint
            print("%-6s -> fallback (%s)" % (form, e.code().name))
            continue
        if r.replica_scores:
            best = r.replica_scores[0]
            print("%-6s -> %s: route to %s (matched_tokens=%d, score=%.3f)" %
                  (form, r.reason_code, best.replica_id, best.matched_tokens, best.score))
        else:
            print("%-6s -> %s: no hint, use the default balancer" % (form, r.reason_code))


if __name__ == "__main__":
    main()
