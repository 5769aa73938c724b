/* CRC-32C (Castagnoli), the checksum of every image section and page chunk.
 * Uses the SSE4.2 crc32 instruction when the CPU has it. Safe to call from
 * a signal handler: no allocation, no locks. */
#ifndef CKPT_CRC32C_H
#define CKPT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a running checksum; start with crc = 0. */
uint32_t crc32c_update(uint32_t crc, const void *data, size_t len);

/* The same checksum one byte at a time, without the instruction: the
 * reference the unit tests compare crc32c_update with. */
uint32_t crc32c_bytewise(uint32_t crc, const void *data, size_t len);

#endif
