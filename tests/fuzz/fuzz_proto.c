/* libFuzzer target for the control-socket line protocol (src/coord/proto.c):
 * the input is what a peer could send on ctl.sock. ckpt_proto_fuzz_one
 * parses it as one line and as a stream fed in uneven chunks, and checks
 * that every parsed message formats and parses back to itself; it returns
 * -1 on such a mismatch, which is a bug. Seeds: tests/fuzz/corpus/proto
 * (one file per message kind of docs/protocol.md). */
#include <stdint.h>
#include <stdlib.h>

#include "coord/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (ckpt_proto_fuzz_one(data, size) != 0)
		abort();
	return 0;
}
