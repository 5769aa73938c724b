/* Recorded writer operations (writer.h, ckpt_writer_record): each is a
 * fixed header followed by its bytes, 8-aligned, one after the other in the
 * caller's buffer. Like the writer it allocates nothing and takes no locks:
 * it runs while the program is stopped. */
#include <string.h>

#include "image/writer.h"

enum { OP_BEGIN, OP_END, OP_WRITE, OP_CHUNK, OP_REF, OP_INDEX };

struct op {
	uint32_t kind;
	uint32_t arg;  /* section type or count; area */
	uint64_t addr; /* chunk address; index entries */
	uint64_t len;  /* bytes that follow; pages; index capacity */
};

static size_t round8(size_t n)
{
	return (n + 7) & ~(size_t)7;
}

/* Does one operation, not recording meanwhile. */
static void perform(struct ckpt_writer *w, const struct op *op, const void *data)
{
	struct ckpt_writer_record *rec = w->rec;
	w->rec = NULL;
	switch (op->kind) {
	case OP_BEGIN:
		ckpt_writer_begin_section(w, op->arg);
		break;
	case OP_END:
		ckpt_writer_end_section(w, op->arg);
		break;
	case OP_WRITE:
		ckpt_writer_write(w, data, op->len);
		break;
	case OP_CHUNK:
		ckpt_writer_chunk(w, op->arg, op->addr, data, (uint32_t)op->len);
		break;
	case OP_REF:
		ckpt_writer_ref(w, op->arg, op->addr, (uint32_t)op->len);
		break;
	case OP_INDEX:
		ckpt_writer_set_index(w, (struct ckpt_chunk_entry *)(uintptr_t)op->addr,
				      (uint32_t)op->len);
		break;
	}
	w->rec = rec;
}

/* Does everything recorded so far and empties the buffer. */
static void drain(struct ckpt_writer *w)
{
	struct ckpt_writer_record *rec = w->rec;
	for (size_t at = 0; at < rec->used;) {
		const struct op *op = (const struct op *)(rec->buf + at);
		size_t bytes = op->kind == OP_WRITE   ? op->len
			       : op->kind == OP_CHUNK ? op->len * CKPT_PAGE_SIZE
						      : 0;
		perform(w, op, op + 1);
		at += sizeof *op + round8(bytes);
	}
	rec->used = 0;
}

static void push(struct ckpt_writer *w, struct op op, const void *data, size_t bytes)
{
	struct ckpt_writer_record *rec = w->rec;
	size_t need = sizeof op + round8(bytes);
	if (rec->used + need > rec->cap) {
		rec->spilled += rec->used;
		drain(w);
		if (need > rec->cap) {
			rec->spilled += need;
			perform(w, &op, data);
			return;
		}
	}
	char *at = rec->buf + rec->used;
	memcpy(at, &op, sizeof op);
	if (bytes)
		memcpy(at + sizeof op, data, bytes);
	rec->used += need;
}

void ckpt_writer_record(struct ckpt_writer *w, struct ckpt_writer_record *rec)
{
	rec->used = 0;
	rec->spilled = 0;
	w->rec = rec;
}

int ckpt_writer_replay(struct ckpt_writer *w)
{
	if (w->rec) {
		drain(w);
		w->rec = NULL;
	}
	return w->error ? -1 : 0;
}

void ckpt_record_section(struct ckpt_writer *w, int begin, uint32_t type_or_count)
{
	push(w, (struct op){begin ? OP_BEGIN : OP_END, type_or_count, 0, 0}, NULL, 0);
}

void ckpt_record_bytes(struct ckpt_writer *w, const void *data, size_t len)
{
	push(w, (struct op){OP_WRITE, 0, 0, len}, data, len);
}

void ckpt_record_pages(struct ckpt_writer *w, int chunk, uint32_t area, uint64_t addr,
		       const void *data, uint32_t npages)
{
	if (chunk)
		push(w, (struct op){OP_CHUNK, area, addr, npages}, data,
		     (size_t)npages * CKPT_PAGE_SIZE);
	else
		push(w, (struct op){OP_REF, area, addr, npages}, NULL, 0);
}

void ckpt_record_index(struct ckpt_writer *w, struct ckpt_chunk_entry *entries, uint32_t cap)
{
	push(w, (struct op){OP_INDEX, 0, (uint64_t)(uintptr_t)entries, cap}, NULL, 0);
}
