/* zstd compression of page chunks, inside the checkpoint (no malloc: zstd
 * gets its memory from the checkpoint's scratch arena through a custom
 * allocator, and one context is reused for every chunk). */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "agent/agent.h"
#include "image/writer.h"

static void *arena_alloc(void *opaque, size_t size)
{
	return scratch_alloc(opaque, size);
}

static void arena_free(void *opaque, void *p)
{
	(void)opaque;
	(void)p; /* the whole arena goes when the checkpoint ends */
}

struct compressor {
	ZSTD_CCtx *cctx;
};

static size_t compress_chunk(void *ctx, void *dst, size_t cap, const void *src, size_t len)
{
	struct compressor *c = ctx;
	size_t n = ZSTD_compress2(c->cctx, dst, cap, src, len);
	/* below 3% saved, the cost of decompressing is not worth it */
	if (ZSTD_isError(n) || n > len - len / 32)
		return 0;
	return n;
}

int compress_setup(struct ckpt_writer *w, struct scratch *s, int level)
{
	static struct compressor c;
	if (level <= 0)
		return 0;
	ZSTD_customMem mem = {arena_alloc, arena_free, s};
	c.cctx = ZSTD_createCCtx_advanced(mem);
	if (!c.cctx)
		return -1;
	ZSTD_CCtx_setParameter(c.cctx, ZSTD_c_compressionLevel, level);
	/* the chunk crc covers the stored frame; the frame's content checksum
	 * covers what it decodes to (a compressor or memory fault) */
	ZSTD_CCtx_setParameter(c.cctx, ZSTD_c_checksumFlag, 1);
	size_t raw = CKPT_CHUNK_PAGES_MAX * CKPT_PAGE_SIZE, out = ZSTD_compressBound(raw);
	void *rb = scratch_alloc(s, raw), *ob = scratch_alloc(s, out);
	if (!rb || !ob)
		return -1;
	ckpt_writer_set_compressor(w, compress_chunk, &c, rb, raw, ob, out);
	return 0;
}
