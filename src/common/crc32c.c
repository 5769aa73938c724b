#include "crc32c.h"

#include <cpuid.h>

/* The crc32 instruction has a latency of three cycles and a throughput of
 * one per cycle, so a single running checksum uses a third of what the CPU
 * can do. Long buffers are therefore cut into three consecutive blocks
 * whose checksums are computed side by side and then joined: the CRC
 * register is linear, so the checksum of A then B is the checksum of A
 * advanced over len(B) zero bytes, xor the checksum of B started from 0.
 * Advancing over a fixed number of zero bytes is itself linear in the
 * 32-bit register, hence four table lookups (shift_*). */

#define LONG_BLOCK 8192 /* bytes per stream for buffers of 24 KiB and more */
#define SHORT_BLOCK 256 /* and for the rest down to 768 bytes */

static uint32_t crc_table[256];
static uint32_t shift_long[4][256], shift_short[4][256];
static int probed;     /* set (release) once the tables are filled */
static int have_sse42; /* valid once probed */

/* The register after feeding `n` zero bytes, starting from `crc` (raw:
 * no pre- or post-inversion). */
static uint32_t zeros_sw(uint32_t crc, size_t n)
{
	while (n--)
		crc = crc_table[crc & 0xff] ^ (crc >> 8);
	return crc;
}

static void fill_shift(uint32_t table[4][256], size_t n)
{
	uint32_t bit[32];
	for (int b = 0; b < 32; b++)
		bit[b] = zeros_sw(1u << b, n);
	for (int byte = 0; byte < 4; byte++)
		for (uint32_t v = 0; v < 256; v++) {
			uint32_t out = 0;
			for (int b = 0; b < 8; b++)
				if (v & (1u << b))
					out ^= bit[byte * 8 + b];
			table[byte][v] = out;
		}
}

static uint32_t shift(uint32_t table[4][256], uint32_t crc)
{
	return table[0][crc & 0xff] ^ table[1][(crc >> 8) & 0xff] ^ table[2][(crc >> 16) & 0xff] ^
	       table[3][crc >> 24];
}

/* Idempotent: two threads racing here write the same values. */
static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_table[i] = c;
	}
	fill_shift(shift_long, LONG_BLOCK);
	fill_shift(shift_short, SHORT_BLOCK);
	unsigned a, b, c, d;
	have_sse42 = __get_cpuid(1, &a, &b, &c, &d) && (c & bit_SSE4_2);
	__atomic_store_n(&probed, 1, __ATOMIC_RELEASE);
}

#define HW __attribute__((target("sse4.2")))

static HW inline uint64_t word_at(const unsigned char *p)
{
	uint64_t v;
	__builtin_memcpy(&v, p, 8);
	return v;
}

/* Three streams of `block` bytes each from p, joined into crc. */
static HW uint32_t crc_hw_3way(uint32_t crc, const unsigned char *p, size_t block,
			       uint32_t table[4][256])
{
	uint64_t a = crc, b = 0, c = 0;
	const unsigned char *end = p + block;
	for (; p < end; p += 8) {
		a = __builtin_ia32_crc32di(a, word_at(p));
		b = __builtin_ia32_crc32di(b, word_at(p + block));
		c = __builtin_ia32_crc32di(c, word_at(p + 2 * block));
	}
	a = shift(table, (uint32_t)a) ^ (uint32_t)b;
	return shift(table, (uint32_t)a) ^ (uint32_t)c;
}

static HW uint32_t crc_hw(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;
	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	for (; len >= 3 * LONG_BLOCK; len -= 3 * LONG_BLOCK, p += 3 * LONG_BLOCK)
		c = crc_hw_3way((uint32_t)c, p, LONG_BLOCK, shift_long);
	for (; len >= 3 * SHORT_BLOCK; len -= 3 * SHORT_BLOCK, p += 3 * SHORT_BLOCK)
		c = crc_hw_3way((uint32_t)c, p, SHORT_BLOCK, shift_short);
	for (; len >= 8; len -= 8, p += 8)
		c = __builtin_ia32_crc32di(c, word_at(p));
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}

static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

uint32_t crc32c_update(uint32_t crc, const void *data, size_t len)
{
	if (!__atomic_load_n(&probed, __ATOMIC_ACQUIRE))
		crc32c_init();
	crc = ~crc;
	crc = have_sse42 ? crc_hw(crc, data, len) : crc_sw(crc, data, len);
	return ~crc;
}

uint32_t crc32c_bytewise(uint32_t crc, const void *data, size_t len)
{
	if (!__atomic_load_n(&probed, __ATOMIC_ACQUIRE))
		crc32c_init();
	return ~crc_sw(~crc, data, len);
}
